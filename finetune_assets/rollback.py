"""``python -m finetune_assets.rollback <recipe> [--to <fingerprint>] --reason "..."``: the champion back
to an earlier export of its promotion history (:mod:`finetune_assets.publishing.rollback`).

It moves ``current``, ``champion.json``, the MLflow ``champion`` alias (when the recipe publishes
there) and writes a history row with the reason and the OS user. The recipe is read from the
configured recipe folders (or ``--recipes``), the artifacts from ``$FINETUNE_ARTIFACTS_DIR`` (or
``--artifacts``). Exits 1, saying why, when the export is refused (never promoted, files gone).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from finetune_assets.errors import PromotionError, PublishError, RecipeError
from finetune_assets.pipeline.artifacts import default_artifacts_root


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m finetune_assets.rollback", description=__doc__.splitlines()[0])
    cli.add_argument("recipe")
    cli.add_argument("--to", default="", help="the export's fingerprint; default: the previous champion")
    cli.add_argument("--reason", required=True, help="why, recorded in the history")
    cli.add_argument("--recipes", action="append", default=[], help="a recipe folder (default: the configured ones)")
    cli.add_argument("--artifacts", default="", help="the artifacts root (default: $FINETUNE_ARTIFACTS_DIR)")
    cli.add_argument("--tracking-uri", default="", help="the MLflow server (default: recipe, MLFLOW_TRACKING_URI)")
    args = cli.parse_args(argv)
    from finetune_assets.publishing.rollback import rollback
    from finetune_assets.recipes import scan

    found = scan(*args.recipes)
    recipe = next((recipe for recipe in found.recipes if recipe.name == args.recipe), None)
    try:
        if recipe is None:
            raise RecipeError(f"{args.recipe}: no recipe of that name loads from the recipe folders")
        root = Path(args.artifacts) if args.artifacts else default_artifacts_root()
        entry = rollback(recipe, root, args.reason, getpass.getuser(), args.to, args.tracking_uri)
    except (PromotionError, PublishError, RecipeError) as error:
        print(error, file=sys.stderr)
        return 1
    version = f", registry version {entry['registry_version']}" if entry["registry_version"] else ""
    print(f"{args.recipe}: champion is {entry['fingerprint']} again (was {entry['champion']}{version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
