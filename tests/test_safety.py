"""Safetensors only: a base model with pickle weights fails in the first stage with a fix, and no
loader of the project ever unpickles one (a malicious pickle would run code while it loads)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dagster import DagsterInstance, materialize

from finetune_assets.defs import build_definitions
from finetune_assets.recipes import load_recipe
from finetune_assets.tasks import get_task


class RunsCode:
    """Unpickling this runs a shell command: what a malicious pytorch_model.bin can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pickle_only_copy(model: Path, folder: Path, marker: Path) -> Path:
    """``model`` with its weights in a pickle file that also carries :class:`RunsCode`."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(model, folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**weights, "payload": RunsCode(marker)}, folder / "pytorch_model.bin")
    return folder


def recipe_file(folder: Path, base_model: Path, task: str = "classification") -> Path:
    recipe = {
        "task": task,
        "base_model": str(base_model),
        "dataset": {
            "source": "reviews.csv",
            "columns": {"text": "review", "label": "sentiment"},
            "labels": ["negative", "positive"],
        },
    }
    (folder / "films.yaml").write_text(yaml.safe_dump(recipe))
    rows = [(f"I loved scene {i}", "positive") for i in range(30)] + [
        (f"I hated scene {i}", "negative") for i in range(30)
    ]
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(folder / "reviews.csv", index=False)
    return folder / "films.yaml"


def test_a_pickle_only_base_model_fails_in_the_first_stage_and_says_how_to_convert(tmp_path, tiny_bert):
    marker = tmp_path / "pickle-code-ran"
    base = pickle_only_copy(tiny_bert, tmp_path / "pickled_bert", marker)
    recipe_file(tmp_path, base)
    defs = build_definitions([tmp_path], str(tmp_path / "artifacts"))
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    assert not result.get_asset_materialization_events(), "nothing is read or written"
    [failure] = result.get_step_failure_events()
    assert failure.step_key.endswith("raw_dataset")
    message = failure.event_specific_data.error.to_string()
    for fragment in ("base_model", str(base), "pytorch_model.bin", "safetensors", "save_pretrained"):
        assert fragment in message, f"{fragment!r} not in {message}"
    assert not marker.exists()


@pytest.mark.parametrize(
    "family, model", [("classification", "tiny_bert"), ("instruction", "tiny_llama"), ("summarization", "tiny_t5")]
)
def test_no_loader_unpickles_weights(tmp_path, request, family, model):
    marker = tmp_path / "pickle-code-ran"
    folder = pickle_only_copy(request.getfixturevalue(model), tmp_path / "pickled", marker)
    recipe = load_recipe(recipe_file(tmp_path, folder, family))
    task = get_task(recipe)
    with pytest.raises(OSError, match=r"model\.safetensors"):
        task.load_model(str(folder))
    if family != "summarization":  # its pipeline needs an export's config; it passes the same option
        with pytest.raises((OSError, ValueError), match=r"model\.safetensors"):  # pipeline() wraps the OSError
            task.load_pipeline(folder)  # how an export is loaded for its smoke test
    assert not marker.exists()


def test_a_lora_checkpoint_without_safetensors_is_refused(tmp_path, make_recipe):
    import torch

    from finetune_assets.errors import MethodError
    from finetune_assets.models import methods

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text("{}")
    torch.save({"payload": RunsCode(tmp_path / "pickle-code-ran")}, checkpoint / "adapter_model.bin")
    with pytest.raises(MethodError, match=r"adapter_model\.safetensors"):
        methods.load_trained(checkpoint, get_task(make_recipe(method="lora")))
    assert not (tmp_path / "pickle-code-ran").exists()
