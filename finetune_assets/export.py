"""The exported model: one self-contained folder that ``transformers.pipeline`` loads.

LoRA adapters are merged first, weights are safetensors, and the model card (README.md) records
the metrics, the recipe as written, the base model and the fingerprints of everything upstream.
Before the folder is put in place it is loaded once through ``pipeline`` as a smoke test.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import pipeline

from finetune_assets import methods
from finetune_assets.recipe import Recipe
from finetune_assets.tasks.base import TaskFamily
from finetune_assets.tokenizer import load_tokenizer


def export_model(recipe: Recipe, task: TaskFamily, checkpoint: Path, base_location: str,
                 report: dict, lineage: dict, out_dir: Path, probe_text: str) -> dict:
    """Write the export into ``out_dir``; return the smoke test's output."""
    model = methods.load_trained(checkpoint, base_location, recipe, task)
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True))
    (out_dir / "README.md").write_text(model_card(recipe, task, report, lineage))
    probe = pipeline(task.pipeline_task, model=str(out_dir), device="cpu")(probe_text)
    return {"probe_input": probe_text, "probe_output": probe}


def model_card(recipe: Recipe, task: TaskFamily, report: dict, lineage: dict) -> str:
    tuned, baseline = report["tuned"]["metrics"], report["baseline"]["metrics"]
    rows = "\n".join(f"| {name} | {tuned[name]:.4f} | {baseline.get(name, float('nan')):.4f} |"
                     for name in tuned)
    upstream = "\n".join(f"- `{name}`: fingerprint `{ref['fingerprint']}` at `{ref['path']}`"
                         for name, ref in sorted(lineage.items()))
    return f"""---
library_name: transformers
pipeline_tag: {task.pipeline_task}
base_model: {recipe.base_model}
tags: [finetune_assets, {recipe.task}, {recipe.method}]
---
# {recipe.name}

{recipe.description.strip() or f"A {recipe.task} model fine-tuned by finetune_assets."}

- base model: `{recipe.base_model}`
- method: `{recipe.method}`{f" (LoRA r={recipe.lora.r}, alpha={recipe.lora.alpha}, merged)" if recipe.method != "full" else ""}
- data: `{recipe.dataset.source}`
- test rows: {report["test_rows"]}

## Metrics on the held-out test split

| metric | fine-tuned | base model |
| --- | --- | --- |
{rows}

## Lineage

{upstream}

## Recipe as written (`{recipe.source_file.name}`)

```yaml
{recipe.source_file.read_text(encoding="utf-8").strip()}
```

## Use

```python
from transformers import pipeline
model = pipeline("{task.pipeline_task}", model="path/to/this/folder")
```
"""
