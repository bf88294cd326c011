"""Is the export the model that was trained? ``exported_model``'s own check, run before the promotion
gate decides.

Merging LoRA adapters into the base and saving the result can go wrong without an error: the merged
model answers differently from the adapter on its base (peft#1035, peft#2502: a merge into other
weights than the adapter was trained on, adapted embeddings, a lost or changed tokenizer and chat
template). So the export folder is loaded back from disk, as a user would load it, and compared on
a few test rows with the trained model as it was before merging (the adapter on its unquantized
base; the checkpoint itself for full fine-tuning):

- the logits on the same inputs agree within :data:`ATOL` + :data:`RTOL` times their largest size;
- greedy decoding gives the same :data:`GREEDY_TOKENS` tokens (for a classifier: the same classes);
- the exported tokenizer turns the rows' text into exactly the input ids and labels training used
  (its chat template renders them as training did).

A failed check never becomes the champion: the gate reads the outcome from the export's record.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from datasets import DatasetDict
from peft import PeftModel

from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.tasks.base import TaskFamily
from finetune_assets.tasks.causal_lm.chat import prompt_before_last_answer

CHECK = "merge_verified"
PROBE_ROWS = 4
GREEDY_TOKENS = 16
ATOL, RTOL = 1e-3, 1e-4  # float32 merge arithmetic stays far below; a wrong merge or weight does not


def verify(task: TaskFamily, checkpoint: Path, export: Path, rows) -> dict:
    """The check's outcome: ``passed``, a ``description`` naming what differs and what to do, and
    its ``figures``. ``rows``: tokenized test rows (a few are probed)."""
    recipe = task.recipe
    rows = rows.select(range(min(PROBE_ROWS, len(rows))))
    tokenizer = load_tokenizer(str(export), recipe)
    exported = task.load_model(str(export)).eval()
    trained = _as_trained(checkpoint, task).eval()
    renders = same_tokens(task, tokenizer, rows)
    features = [
        {key: row[key] for key in ("input_ids", "attention_mask", "labels", "label") if key in row} for row in rows
    ]
    batch = task.collator(tokenizer, exported)(features)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    if exported.config.is_encoder_decoder:
        inputs["labels"] = batch["labels"]  # the decoder reads the reference summary, shifted
    with torch.inference_mode():
        expected, found = trained(**inputs).logits.float(), exported(**inputs).logits.float()
    difference = float((expected - found).abs().max())
    tolerance = ATOL + RTOL * float(expected.abs().max())
    agreeing = same_answers(trained, exported, rows, expected, found)
    figures = {
        "probe_rows": len(rows),
        "logits_max_abs_difference": difference,
        "logits_tolerance": tolerance,
        "same_greedy_answers": f"{sum(agreeing)} of {len(rows)}",
        "same_tokenization": f"{sum(renders)} of {len(rows)}",
    }
    return _outcome(recipe.method, figures, _problems(difference, tolerance, agreeing, renders), len(rows))


def _problems(difference: float, tolerance: float, same_answers: list[bool], renders: list[bool]) -> list[str]:
    """What differs between the export and the model as trained, in words."""
    rows = len(same_answers)
    problems = []
    if difference > tolerance:
        problems.append(
            f"its logits differ from the trained model's by up to {difference:.3g} (tolerance {tolerance:.3g})"
        )
    if not all(same_answers):
        problems.append(f"greedy decoding differs on {rows - sum(same_answers)} of {rows} test rows")
    if not all(renders):
        problems.append(
            f"its tokenizer (chat template included) turns {rows - sum(renders)} of {rows} "
            "test rows into other tokens than training used"
        )
    return problems


def _outcome(method: str, figures: dict, problems: list[str], rows: int) -> dict:
    """The outcome, with a description that says what was compared and, on failure, what to do."""
    """The outcome, with a description that says what was compared and, on failure, what to do."""
    what = "merged model" if method != "full" else "saved model"
    reference = "the adapter on its base" if method != "full" else "the trained checkpoint"
    difference, tolerance = figures["logits_max_abs_difference"], figures["logits_tolerance"]
    if problems:
        return {
            "passed": False,
            "figures": figures,
            "description": (
                f"the export's {what} is not the model that was trained and evaluated: "
                + "; ".join(problems)
                + f" (compared with {reference} on {rows} test rows). It is not promoted. Check the adapter "
                "and the base model it was trained on, and what changed the tokenizer, then export again."
            ),
        }
    return {
        "passed": True,
        "figures": figures,
        "description": (
            f"the export's {what}, loaded back from disk, matches {reference} on {rows} test rows: logits "
            f"within {difference:.2g} (tolerance {tolerance:.2g}), the same greedy answers, and its tokenizer "
            "renders the rows exactly as training did"
        ),
    }


def _as_trained(checkpoint: Path, task: TaskFamily):
    """The trained model before any merge: the adapter on its (unquantized) base, or the checkpoint."""
    if task.recipe.method == "full":
        return task.load_model(str(checkpoint))
    return PeftModel.from_pretrained(task.load_model(task.base_location), str(checkpoint))


def same_tokens(task: TaskFamily, tokenizer, rows) -> list[bool]:
    """Per row: the exported tokenizer gives the input ids and labels that training used."""
    clean_columns = [c for c in task.schema().to_schema().columns if c in rows.column_names]
    again = task.tokenize(DatasetDict({"probe": rows.select_columns(clean_columns)}), tokenizer)["probe"]
    compared = [key for key in ("input_ids", "labels") if key in rows.column_names]
    return [all(old[key] == new[key] for key in compared) for old, new in zip(rows, again)]


def same_answers(trained, exported, rows, expected, found) -> list[bool]:
    """Per row: the same greedy tokens (generative models, from the row's prompt) or class."""
    if not exported.can_generate():
        return (expected.argmax(-1) == found.argmax(-1)).tolist()
    # Both decode as the export does (its generation_config: start and stop tokens, no-repeat rule),
    # greedily and for GREEDY_TOKENS tokens. Each model's own config is replaced, since generate()
    # fills in whatever a config passed to it leaves unset from the model's.
    greedy = copy.deepcopy(exported.generation_config)
    greedy.update(max_new_tokens=GREEDY_TOKENS, do_sample=False, num_beams=1, length_penalty=1.0)
    for model in (trained, exported):
        model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft's wrapper
        model.generation_config = copy.deepcopy(greedy)
    same = []
    for row in rows:
        # an encoder-decoder's input, and a row with no answer (task: reward: the prompt alone), are
        # what generation starts from; a chat row ends with its answer, which is cut off
        answered = not exported.config.is_encoder_decoder and "labels" in row
        prompt = prompt_before_last_answer(row["input_ids"], row["labels"]) if answered else row["input_ids"]
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            answers = [
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids)) for model in (trained, exported)
            ]
        same.append(torch.equal(*answers))
    return same
