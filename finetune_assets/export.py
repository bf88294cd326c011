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

from finetune_assets import methods
from finetune_assets.recipe import Recipe
from finetune_assets.tasks.base import TaskFamily
from finetune_assets.tokenizer import load_tokenizer


def export_model(recipe: Recipe, task: TaskFamily, checkpoint: Path, base_location: str,
                 report: dict, lineage: dict, out_dir: Path, probe_text: str) -> dict:
    """Write the export into ``out_dir``; return the smoke test's output."""
    model = methods.load_trained(checkpoint, base_location, recipe, task)
    tokenizer = load_tokenizer(str(checkpoint), recipe)
    task.prepare_export(model, tokenizer, recipe, out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if recipe.method != "full":
        methods.save_adapter(checkpoint, out_dir / "adapter")
        tokenizer.save_pretrained(out_dir / "adapter")
    figures = json.loads((checkpoint / "training_figures.json").read_text())
    (out_dir / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True))
    (out_dir / "README.md").write_text(model_card(recipe, task, report, lineage, figures))
    probe = task.load_pipeline(out_dir)(probe_text)
    return {"probe_input": probe_text, "probe_output": probe}


def model_card(recipe: Recipe, task: TaskFamily, report: dict, lineage: dict, figures: dict) -> str:
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
{_method_lines(recipe, figures)}
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
{task.usage_code()}
```
"""


def _method_lines(recipe: Recipe, figures: dict) -> str:
    """How the model was trained: method, LoRA and quantization settings, trainable share."""
    lines = [f"- method: `{recipe.method}`"]
    if figures.get("qlora_cpu_fallback"):
        lines.append("- trained as plain LoRA: no CUDA GPU for 4-bit weights (quantization.cpu_fallback: true)")
    elif figures["method_trained"] == "qlora":
        spec = recipe.quantization
        lines.append(f"- base loaded in 4 bits for training: {spec.quant_type}, double quantization "
                     f"{spec.double_quant}, compute dtype {spec.compute_dtype}")
    if recipe.method != "full":
        lines.append(f"- LoRA: r={recipe.lora.r}, alpha={recipe.lora.alpha}, dropout={recipe.lora.dropout}, "
                     f"target modules {', '.join(figures['lora_target_modules'])}; merged into an "
                     "unquantized copy of the base here, the adapter alone is in `adapter/` (load it onto "
                     "the base with `peft.PeftModel.from_pretrained(base, \"adapter\")`)")
    lines.append(f"- trainable parameters: {figures['trainable_parameters']:,} of {figures['total_parameters']:,} "
                 f"({figures['trainable_fraction']:.4%})")
    return "\n".join(lines)
