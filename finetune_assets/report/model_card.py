"""The model card (README.md) of an export: what it is, how it was trained, how well it does.

It records the metrics of tuned and base model on the test split, the method and its trainable
share, the base model, the data, the fingerprints of everything upstream and the recipe as it was
written, then how to load the folder from where it was written and, for a recipe whose ``publish:``
names targets, how to get the champion from each of them (the MLflow registry's ``champion`` alias,
the Hub repository). YAML front matter at the top lets
the Hugging Face hub index the folder when a user uploads it; :func:`without_front_matter` is the
card as a page shows it (the Dagster UI would render the front matter as one bold heading).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune_assets.recipes import Recipe
    from finetune_assets.tasks.base import TaskFamily


def without_front_matter(card: str) -> str:
    """The card's Markdown after its ``---`` YAML front matter, if it has one."""
    if card.startswith("---\n"):
        end = card.find("\n---\n", 4)
        if end != -1:
            return card[end + len("\n---\n") :].lstrip("\n")
    return card


def model_card(task: TaskFamily, report: dict, lineage: dict, figures: dict, weights_dtype: str, folder: str) -> str:
    """The card of the export written to ``folder``; its usage code loads the model from there."""
    recipe = task.recipe
    tuned, baseline = report["tuned"]["metrics"], report["baseline"]["metrics"]
    rows = "\n".join(f"| {name} | {tuned[name]:.4f} | {baseline.get(name, float('nan')):.4f} |" for name in tuned)
    upstream = "\n".join(
        f"- `{name}`: fingerprint `{ref['fingerprint']}` at `{ref['path']}`" for name, ref in sorted(lineage.items())
    )
    return f"""---
library_name: transformers
pipeline_tag: {task.pipeline_task}
{_front_matter_base(recipe)}tags: [finetune_assets, {recipe.task}, {recipe.method}]
---
# {recipe.name}

{recipe.description.strip() or f"A {recipe.task} model fine-tuned by finetune_assets."}

- base model: {_base_line(recipe)}
{_method_lines(recipe, figures)}
{_precision_line(figures, report, weights_dtype)}
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
{task.usage_code(folder)}
```
{_published_where(recipe)}"""


def _front_matter_base(recipe: Recipe) -> str:
    """The hub's ``base_model`` key names a hub id: a ``recipe:<name>`` base is in the card's text only."""
    return "" if recipe.base_recipe else f"base_model: {recipe.base_model}\n"


def _base_line(recipe: Recipe) -> str:
    """The base model as written, and for ``recipe:<name>`` the champion the run started from."""
    pinned = recipe.base_champion
    if pinned is None:
        return f"`{recipe.base_model}`"
    return f"`{recipe.base_model}`: the champion `{pinned.fingerprint}` of recipe {pinned.recipe} (`{pinned.path}`)"


def _method_lines(recipe: Recipe, figures: dict) -> str:
    """How the model was trained: method, LoRA and quantization settings, trainable share."""
    lines = [f"- method: `{recipe.method}`"]
    if figures.get("qlora_cpu_fallback"):
        lines.append(
            f"- trained as plain LoRA: 4-bit weights do not train on {figures['device']} here "
            "(quantization.cpu_fallback: true)"
        )
    elif figures["method_trained"] == "qlora":
        spec = recipe.quantization
        lines.append(
            f"- base loaded in 4 bits for training on {figures['four_bit_device']} "
            f"({figures['four_bit_layers']} bitsandbytes Linear4bit layers): {spec.quant_type}, double "
            f"quantization {spec.double_quant}, compute dtype {figures['four_bit_compute_dtype']}"
        )
    if recipe.method != "full":
        lines.append(
            f"- LoRA: r={recipe.lora.r}, alpha={recipe.lora.alpha}, dropout={recipe.lora.dropout}, "
            f"target modules {', '.join(figures['lora_target_modules'])}; merged into an "
            "unquantized copy of the base here, the adapter alone is in `adapter/` (load it onto "
            'the base with `peft.PeftModel.from_pretrained(base, "adapter")`)'
        )
    lines.append(
        f"- trainable parameters: {figures['trainable_parameters']:,} of {figures['total_parameters']:,} "
        f"({figures['trainable_fraction']:.4%})"
    )
    return "\n".join(lines)


def _precision_line(figures: dict, report: dict, weights_dtype: str) -> str:
    """The precision training and evaluation ran in and why (what the machine had), and the dtype
    of the weights in this folder."""

    def named(name: str) -> str:
        return "float32" if name == "fp32" else f"{name} mixed precision"

    line = (
        f"- precision: trained in {named(figures['precision'])} ({figures['precision_reason']}); "
        f"weights saved in {weights_dtype}"
    )
    weights = report.get("inference_precision", "fp32 weights")  # reports before it was recorded
    held = "" if weights == "fp32 weights" else f", {weights}"
    if report["precision"] != figures["precision"]:
        return line + f"; evaluated in {named(report['precision'])} ({report['precision_reason']}){held}"
    return line + f"; evaluated in the same precision{held}"


def _published_where(recipe: Recipe) -> str:
    """How to get the champion from each target of the recipe's ``publish:`` ("" when it names none).
    The card is written before the gate decides: these name where the champion is, once promoted."""
    spec, ways = recipe.publish, []
    if spec.mlflow is not None:
        name = spec.mlflow.model_name or recipe.name
        ways.append(
            f"- MLflow Model Registry: the registered model `{name}`, alias `champion`:\n\n"
            f'  ```python\n  import mlflow\n  model = mlflow.pyfunc.load_model("models:/{name}@champion")\n'
            '  print(model.predict(["A text"]))  # the export\'s pipeline, from the registry\n  ```'
        )
    if spec.hub is not None:
        ways.append(
            f"- Hugging Face Hub: `{spec.hub.repo_id}` "
            f"({'private' if spec.hub.private else 'public'}), the commit named after this model's fingerprint:\n\n"
            f'  ```python\n  from transformers import pipeline\n  model = pipeline(model="{spec.hub.repo_id}")\n  ```'
        )
    if spec.gguf is not None and spec.gguf.ollama:
        ways.append(
            "- Ollama and llama.cpp: the GGUF files in this folder and its `Modelfile`:\n\n"
            f"  ```bash\n  ollama create {recipe.name} -f Modelfile  # in this folder\n  ollama run {recipe.name}\n  ```"
        )
    if not ways:
        return ""
    joined = "\n".join(ways)
    return (
        f"\n## Where the champion is published\n\nWhen this export is the champion, it is published to:\n\n{joined}\n"
    )
