"""The exported model: one self-contained folder that ``transformers.pipeline`` loads.

LoRA (and QLoRA) adapters are merged into an unquantized copy of the base, and also kept alone in
``adapter/``; weights are safetensors, and the model card (README.md) records the metrics, the
method and its trainable share, the recipe as written, the base model and the fingerprints of
everything upstream.
Before the folder is put in place it is loaded once through ``pipeline`` as a smoke test.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.models import methods
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.report.model_card import model_card
from finetune_assets.tasks.base import TaskFamily


def export_model(
    task: TaskFamily, checkpoint: Path, report: dict, lineage: dict, out_dir: Path, probe_text: str, final: Path
) -> dict:
    """Write the export into ``out_dir`` (renamed to ``final`` once complete, the folder its model
    card tells users to load); return the smoke test's output."""
    recipe = task.recipe
    model = methods.load_trained(checkpoint, task)
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    task.prepare_export(model, tokenizer, out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if recipe.method != "full":
        methods.save_adapter(checkpoint, out_dir / "adapter")
        tokenizer.save_pretrained(out_dir / "adapter")
    figures = json.loads((checkpoint / "training_figures.json").read_text())
    (out_dir / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True))
    dtype = str(model.dtype).removeprefix("torch.")
    (out_dir / "README.md").write_text(model_card(task, report, lineage, figures, dtype, str(final)))
    probe = task.load_pipeline(out_dir)(probe_text)
    return {"probe_input": probe_text, "probe_output": probe}
