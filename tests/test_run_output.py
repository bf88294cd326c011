"""What a person reads while and after a run: training progress often enough, a CLI output without
library warnings or progress bars, inputs named after their assets, figures rounded for display
(files keep every digit), and TensorBoard event files next to the trained model when asked for."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FILMS
from dagster import AssetKey, DagsterInstance, FloatMetadataValue

from finetune_assets.defs.metadata import to_dagster
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Json, rounded
from finetune_assets.training.progress import RunLogProgress

VENV_BIN = Path(sys.executable).parent
ROWS = [(f"I really loved moment number {i} of this film", "positive") for i in range(40)] + [
    (f"I truly hated scene number {i} of this film", "negative") for i in range(40)
]


# --- figures rounded for display ------------------------------------------------------------------


def test_floats_are_rounded_to_four_significant_digits_for_display_only():
    assert rounded(0.8837761519702221) == 0.8838
    assert rounded(1234.5678) == 1235.0 and rounded(0.000123456) == 0.0001235
    assert rounded(3) == 3 and rounded(True) is True and rounded("0.8837761519702221") == "0.8837761519702221"
    converted = to_dagster(
        {"f1_macro": 0.8837761519702221, "rows": 1000, "probe": Json([{"label": "positive", "score": 0.9712345678}])}
    )
    assert converted["f1_macro"] == 0.8838 and converted["rows"] == 1000
    assert converted["probe"].value == [{"label": "positive", "score": 0.9712}]
    assert markdown_table([{"metric": "accuracy", "tuned": 0.91234567}]).endswith("| accuracy | 0.9123 |")


# --- progress at least every 5 % of the steps or 30 seconds ---------------------------------------


class Log(list):
    def info(self, message: str) -> None:
        self.append(message)


def train_tiny(model_dir: Path, out: Path, steps: int, logging_steps: int, clock=None) -> list[str]:
    """A real Trainer run of ``steps`` optimizer steps on the tiny BERT (one row per step), logged by
    :class:`RunLogProgress`; returns its progress lines."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = Dataset.from_dict(
        {"text": [text for text, _ in ROWS[:steps]], "label": [int(label == "positive") for _, label in ROWS[:steps]]}
    )
    rows = rows.map(lambda row: tokenizer(row["text"], truncation=True, max_length=16), remove_columns=["text"])
    log = Log()
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=1,
        num_train_epochs=1,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    progress = RunLogProgress(log, **({"clock": clock} if clock else {}))
    Trainer(
        model=AutoModelForSequenceClassification.from_pretrained(model_dir),
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        callbacks=[progress],
    ).train()
    return [line for line in log if line.startswith("step ")]


def steps(lines: list[str]) -> list[int]:
    return [int(re.match(r"step (\d+)/", line).group(1)) for line in lines]


def test_a_short_run_reports_every_step(tiny_bert, tmp_path):
    seven = train_tiny(tiny_bert, tmp_path, steps=7, logging_steps=10)
    assert steps(seven) == [1, 2, 3, 4, 5, 6, 7], "7 steps: 5 % is less than a step, so every step"
    assert re.fullmatch(r"step 3/7 \(43%, \d+s elapsed, ETA \d+s\)", seven[2])


def test_a_longer_run_reports_every_five_percent_or_thirty_seconds(tiny_bert, tmp_path):
    calls = []

    def clock() -> float:  # the first 20 steps take 0.1 s each, the next 31 s each
        step = len(calls)
        calls.append(step)
        return 0.1 * step if step <= 20 else 2 + 31 * (step - 20)

    lines = train_tiny(tiny_bert, tmp_path, steps=40, logging_steps=4, clock=clock)
    assert steps(lines) == [*range(2, 21, 2), *range(21, 41)], "every 2 steps (5 % of 40), then every slow step"
    # When the Trainer logs the loss at a step a line is due, the line carries it; otherwise the last one.
    assert re.search(r"step 4/40 .*\): loss=[\d.]+", lines[1]) and "last loss=" in lines[2] and "at step 4" in lines[2]


# --- one CLI materialization, as a person runs it ---------------------------------------------------


def read_scalars(event_file: Path) -> set[str]:
    """The scalar names in a TensorBoard event file (TFRecord framing: length, its CRC, the
    serialized ``Event``, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    data, names, at = event_file.read_bytes(), set(), 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        names |= {value.tag for value in event.summary.value if value.HasField("simple_value")}
        at += 12 + length + 4
    return names


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_bert):
    """``dagster asset materialize --select 'group:films'`` on the tiny BERT, reporting to TensorBoard."""
    root = tmp_path_factory.mktemp("cli")
    (root / "bert").symlink_to(tiny_bert)
    (root / "recipes" / "data").mkdir(parents=True)
    pd.DataFrame(ROWS, columns=["review", "sentiment"]).to_csv(root / "recipes" / "data" / "reviews.csv", index=False)
    recipe = {**FILMS, "training": {**FILMS["training"], "report_to": "tensorboard"}}
    (root / "recipes" / "films.yaml").write_text(yaml.safe_dump(recipe))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "home"),
        "FINETUNE_RECIPES": str(root / "recipes"),
        "FINETUNE_ARTIFACTS_DIR": str(root / "artifacts"),
    }
    (root / "home").mkdir()
    done = subprocess.run(
        [
            str(VENV_BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "finetune_assets.definitions",
            "--select",
            "group:films",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    return root, done, done.stdout + done.stderr


def test_the_cli_output_has_no_library_warnings_or_progress_bars(cli_run):
    _, done, output = cli_run
    assert done.returncode == 0, output[-3000:]
    assert "BetaWarning" not in output and "PreviewWarning" not in output
    bars = [line for line in output.splitlines() if re.search(r"\d+%\|[^|]*\||it/s\]|examples/s\]", line)]
    assert not bars, bars[:3]
    assert not [line for line in output.splitlines() if line.startswith("{'")], "the Trainer's raw log dicts"
    for step in (1, 2, 3):  # FILMS trains 3 steps, logging_steps 10: progress anyway
        assert re.search(rf"films__finetuned_model - step {step}/3 \(", output)


def test_inputs_are_named_after_their_upstream_assets(cli_run):
    _, _, output = cli_run
    assert 'Loaded input "clean_dataset"' in output and 'Loaded input "finetuned_model"' in output
    assert "up_0" not in output


def test_metadata_figures_are_rounded_and_tensorboard_files_sit_with_the_model(cli_run):
    root, _, _ = cli_run
    with DagsterInstance.from_config(str(root / "home")) as instance:
        metadata = {
            name: instance.get_latest_materialization_event(AssetKey(["films", name])).asset_materialization.metadata
            for name in ("finetuned_model", "evaluation_report", "exported_model")
        }
    floats = [
        value.value
        for entries in metadata.values()
        for value in entries.values()
        if isinstance(value, FloatMetadataValue)
    ]
    assert len(floats) > 10 and all(value == rounded(value) for value in floats)
    events = list(Path(metadata["finetuned_model"]["path"].value).glob("tensorboard/events.out.tfevents.*"))
    assert len(events) == 1, "training.report_to: tensorboard writes its event files into the model's folder"
    assert {"train/train_loss", "eval/loss"} <= read_scalars(events[0])
