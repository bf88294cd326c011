"""``python -m finetune_assets.show <recipe>``: the latest evaluation, the gate's decision, the champion.

Exits 1 only when the recipe has no evaluation report yet or its champion file cannot be read; a
challenger that was not promoted (for example a CI run with overrides) is shown with the gate's
reason and exits 0. For a recipe with a sweep it shows the sweep report's choice and that
variant's evaluation; ``--variants`` prints the sweep's variant names (its partition keys), one per
line, for a shell loop over ``dagster asset materialize --partition``.
"""

from __future__ import annotations

import argparse
import json
import sys

from finetune_assets.errors import PromotionError
from finetune_assets.pipeline.artifacts import ArtifactRef, default_artifacts_root
from finetune_assets.pipeline.stage_names import EVALUATION_REPORT
from finetune_assets.promotion import champion as champion_store


def main(recipe: str) -> int:
    root = default_artifacts_root()
    refs = root / "refs" / recipe
    report_ref = refs / "evaluation_report.json"
    if (refs / "sweep_report.json").exists():
        sweep = ArtifactRef.from_json((refs / "sweep_report.json").read_text())
        print(f"sweep report:      {sweep.path}")
        print(
            f"chosen variant:    {sweep.info['chosen']} (best {sweep.info['metric']} of "
            f"{len(sweep.info['evaluated'])} evaluated; not evaluated yet: "
            f"{', '.join(sweep.info['not_evaluated']) or 'none'})"
        )
        report = ArtifactRef(**sweep.info["refs"][EVALUATION_REPORT])
    elif report_ref.exists():
        report = ArtifactRef.from_json(report_ref.read_text())
    else:
        print(f"{recipe}: no evaluation report yet under {refs}; materialize the group first")
        return 1
    print(f"evaluation report: {report.path}")
    print(
        "test metrics:      "
        + json.dumps({k: round(v, 4) for k, v in report.info["metrics"].items()})
        + (f" on {report.info['test_rows']} rows" if "test_rows" in report.info else "")
    )
    exports = champion_store.exports_dir(root, recipe)
    history = champion_store.history(exports)
    if history:
        latest = history[-1]
        print(f"latest export:     {exports / latest['fingerprint']}")
        print(f"gate decision:     {latest['decision']}")
    try:
        champion = champion_store.read(exports)
    except PromotionError as exc:
        print(f"champion:          unreadable: {exc}")
        return 1
    print(f"champion:          {champion.path if champion else 'none yet (no export has passed the gate)'}")
    return 0


def print_variants(name: str) -> int:
    """The sweep's variant names, read from the configured recipe folders (as Dagster reads them)."""
    from finetune_assets.recipes import scan
    from finetune_assets.recipes.sweep import variants

    found = scan()
    recipe = next((recipe for recipe in found.recipes if recipe.name == name), None)
    for path, error in found.broken:
        if path.stem == name:
            print(error, file=sys.stderr)
            return 1
    if recipe is None or recipe.sweep is None:
        print(f"{name}: no recipe of that name with a sweep in the recipe folders", file=sys.stderr)
        return 1
    print("\n".join(made.name for made in variants(recipe)))
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m finetune_assets.show", description=__doc__.splitlines()[0])
    cli.add_argument("recipe", nargs="?", default="tweet_sentiment")
    cli.add_argument("--variants", action="store_true", help="print the sweep's variant names, one per line")
    args = cli.parse_args()
    sys.exit(print_variants(args.recipe) if args.variants else main(args.recipe))
