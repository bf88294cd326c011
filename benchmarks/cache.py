"""First materialization of ``tweet_sentiment`` against an unchanged second one.

Why: every artifact folder is named by its fingerprint (``finetune_assets/caching.py``), so a
second run with nothing changed should reuse all six artifacts and cost a small fraction of the
first. What a cached run still does, by design: reads the CSV and hashes every row (that is how it
knows the data did not change), re-runs the asset checks, and writes Dagster's events.

In process (default): two ``dagster.materialize`` calls back to back on one fresh artifacts root,
ephemeral instance, no ``force``. With ``--cli``: the same pair through
``dagster asset materialize -m finetune_assets.definitions --select group:tweet_sentiment`` in subprocesses
with a fixed temporary ``DAGSTER_HOME`` (the repository's ``dagster.yaml``) and artifacts root;
each CLI figure includes starting Python and loading every packaged recipe's Definitions, and
``cli_import_finetune_assets_seconds`` times that import alone in a fresh process.

    .venv/bin/python benchmarks/cache.py --quick          # 256 training rows, 200 test rows
    .venv/bin/python benchmarks/cache.py                  # the recipe as shipped
    .venv/bin/python benchmarks/cache.py --quick --cli    # also through the CLI (about twice as long)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import yaml

RECIPE = "tweet_sentiment"
QUICK = {"max_train_samples": 256, "max_eval_samples": 200}
TARGET = 0.05
DAGSTER = Path(sys.executable).with_name("dagster")


def in_process(work: Path, settings: dict) -> dict:
    recipes = common.recipe_folder([RECIPE], work / "recipes")
    first, first_seconds = common.materialize(recipes, work / "artifacts", **settings)
    second, second_seconds = common.materialize(recipes, work / "artifacts", **settings)
    return {
        "first": first_seconds,
        "second": second_seconds,
        "first_hits": [n for n, m in first.items() if common.meta(m, "cache_hit")],
        "second_misses": [n for n, m in second.items() if not common.meta(m, "cache_hit")],
        "assets": len(second),
    }


def cli(work: Path, settings: dict) -> dict:
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(common.REPO / "dagster_home" / "dagster.yaml", home)
    env = {**os.environ, "DAGSTER_HOME": str(home), "FINETUNE_ARTIFACTS_DIR": str(work / "cli_artifacts")}
    command = [str(DAGSTER), "asset", "materialize", "-m", "finetune_assets", "--select", f"group:{RECIPE}"]
    if settings:  # the run config CI uses: a small training slice
        config = work / "run_config.yaml"
        config.write_text(yaml.safe_dump({"resources": {"run_settings": {"config": settings}}}))
        command += ["-c", str(config)]
    seconds, logs = [], []
    for _ in range(2):
        with common.stopwatch() as elapsed:
            done = subprocess.run(command, cwd=common.REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        seconds.append(elapsed())
        logs.append(done.stdout + done.stderr)
    with common.stopwatch() as imports:  # the part of every CLI run spent loading the code location
        subprocess.run(
            [sys.executable, "-c", "import finetune_assets.definitions as d; d.defs()"],
            cwd=common.REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    return {
        "first": seconds[0],
        "second": seconds[1],
        "second_hits": logs[1].count(": cache hit, reusing "),
        "import": imports(),
    }


def main() -> None:
    cli_args = common.parser(__doc__)
    cli_args.add_argument("--cli", action="store_true", help="also time the pair through the dagster CLI")
    args = cli_args.parse_args()
    settings = QUICK if args.quick else {}
    import finetune_assets  # noqa: F401  (the libraries a run process has loaded before it starts)

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        ours = in_process(Path(tmp), settings)
        through_cli = cli(Path(tmp), settings) if args.cli else None
    assert not ours["first_hits"], f"a fresh artifacts root reused {ours['first_hits']}"
    figures = {
        "recipe": f"{RECIPE}" + (f" with {settings}" if settings else " as shipped"),
        "first_seconds": round(ours["first"], 1),
        "second_seconds": round(ours["second"], 2),
        "every_asset_cache_hit": f"{not ours['second_misses']} ({ours['assets'] - len(ours['second_misses'])}"
        f" of {ours['assets']} assets reported cache_hit)",
        "ratio_second_to_first": round(ours["second"] / ours["first"], 4),
    }
    if through_cli:
        figures.update(
            {
                "cli_first_seconds": round(through_cli["first"], 1),
                "cli_second_seconds": round(through_cli["second"], 2),
                "cli_second_cache_hits_logged": f"{through_cli['second_hits']} of {ours['assets']}",
                "cli_import_finetune_assets_seconds": round(through_cli["import"], 2),
                "cli_ratio_second_to_first": round(through_cli["second"] / through_cli["first"], 4),
            }
        )
    figures["target_ratio"] = f"<= {TARGET}"
    common.print_figures("cache", figures, args.quick)


if __name__ == "__main__":
    main()
