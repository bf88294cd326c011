"""What a recipe needs of a machine, shown on every asset of its group before anything runs.

A person choosing a group in the UI should see that it needs a CUDA GPU or network access before
pressing *Materialize*, not learn it from a failed run. Each asset of a recipe's group carries

- tags (short values Dagster filters on; keys under ``finetune_assets/``): the task, the method, and
  ``finetune_assets/cuda-gpu`` or ``finetune_assets/network`` set to ``required`` when the recipe
  needs them. ``dagster asset list --select 'tag:finetune_assets/network'`` lists what needs a network;
- definition metadata (free text): the base model, the data source, the recipe file, and ``needs``,
  a sentence saying what the recipe needs and why (``runs offline on a CPU`` when nothing).

``method: qlora`` needs no GPU: bitsandbytes trains 4-bit weights on the CPU too. Whether they train
on the machine that runs is decided there, before any data is read, by one real 4-bit step
(:mod:`finetune_assets.models.quantization`), not by a tag fixed when the definitions load.
"""

from __future__ import annotations

from finetune_assets.data.sources import resolve
from finetune_assets.recipes import Recipe
from finetune_assets.recipes.schema import RECIPE_PREFIX

TAG_PREFIX = "finetune_assets/"


def needs(recipe: Recipe) -> dict[str, str]:
    """Each requirement (``cuda-gpu``, ``network``) the recipe has, with the reason in words."""
    found = {}
    gpu = []
    if recipe.compute.kubernetes.gpus:
        gpu.append(f"compute.kubernetes.gpus asks for {recipe.compute.kubernetes.gpus}")
    if gpu:
        found["cuda-gpu"] = "a CUDA GPU (" + "; ".join(gpu) + ")"
    hub = [
        f"{setting} {ref}"
        for setting, ref in (("base_model", recipe.base_model), ("dataset.source", recipe.dataset.source))
        if _on_the_hub(ref, recipe)
    ]
    if hub:
        found["network"] = "network access to the Hugging Face Hub (or a copy in its local cache) for " + " and ".join(
            hub
        )
    return found


def _on_the_hub(ref: str, recipe: Recipe) -> bool:
    return not ref.startswith(("package:", RECIPE_PREFIX)) and resolve(ref, recipe.source_file.parent).kind == "hub"


def requirement_tags(recipe: Recipe) -> dict[str, str]:
    return {
        f"{TAG_PREFIX}task": recipe.task,
        f"{TAG_PREFIX}method": recipe.method,
        **{f"{TAG_PREFIX}{need}": "required" for need in needs(recipe)},
    }


def requirement_metadata(recipe: Recipe) -> dict[str, str]:
    found = needs(recipe)
    return {
        "needs": "; ".join(found.values()) if found else "nothing beyond this machine: runs offline on a CPU",
        "base_model": recipe.base_model,
        "data_source": recipe.dataset.source,
        "task": recipe.task,
        "method": recipe.method,
        "recipe_file": str(recipe.source_file),
    }
