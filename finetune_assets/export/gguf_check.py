"""Are the GGUF files and the Modelfile the model that was evaluated? ``exported_model``'s
``gguf_verified`` check, run before the promotion gate decides (only with ``publish.gguf``).

The GGUF files are written by llama.cpp's converter; they are read back by another program,
transformers' GGUF loader (which dequantizes them), and compared on a few test rows with the merged
export (which ``merge_verified`` compares with the trained model):

- greedy decoding gives the same :data:`GREEDY_TOKENS` tokens on at least :data:`MIN_SAME` of the
  rows (f16/bf16: all of them; q8_0: 3 of 4, since 8-bit weights may flip a near tie);
- the logits on the rows agree within :data:`TOLERANCE` times their largest size;
- the tokenizer built from the GGUF's vocabulary and chat template turns the rows into exactly the
  input ids and labels training used;
- the Modelfile's TEMPLATE, rendered as Ollama renders it (:mod:`.go_template`), gives the Hugging
  Face chat template's prompt on test conversations, and its FROM file exists.

A failed check never becomes the champion: the gate reads the outcome from the export's record.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from finetune_assets.export import gguf, merge_check, modelfile
from finetune_assets.models.tokenizer import load_tokenizer
from finetune_assets.tasks.base import TaskFamily

CHECK = "gguf_verified"
PROBE_ROWS = 4
MIN_SAME = {"f16": 4, "bf16": 4, "q8_0": 3}
# Largest logit difference allowed, as a share of the largest logit: f16 rounding stays far below
# the first, 8-bit blocks below the second; a changed tensor moves logits by far more.
TOLERANCE = {"f16": 0.01, "bf16": 0.02, "q8_0": 0.05}
CONVERSATIONS = (
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Hello, who are you?"},
        {"role": "assistant", "content": "A small assistant."},
        {"role": "user", "content": "What is 2 plus 2?"},
    ],
    [{"role": "user", "content": "Tell me a fact about the sea."}],
)


def verify(task: TaskFamily, export: Path, rows) -> dict:
    """The check's outcome: ``passed``, a ``description`` naming what differs and what to do, and
    its ``figures``. ``rows``: tokenized test rows (a few are probed)."""
    recipe = task.recipe
    rows = rows.select(range(min(PROBE_ROWS, len(rows))))
    merged = task.load_model(str(export)).eval()
    tokenizer = load_tokenizer(str(export), recipe)
    figures, problems = {"probe_rows": len(rows)}, []
    for weight_type in recipe.publish.gguf.types:
        with _each_file_parsed_once():
            found, trouble = _compare(task, export, gguf.file_name(recipe, weight_type), merged, tokenizer, rows)
        figures.update({f"{weight_type}_{key}": value for key, value in found.items()})
        problems += [f"{weight_type}: {problem}" for problem in trouble]
    if recipe.publish.gguf.ollama:
        matches, trouble = _same_prompts(export, tokenizer)
        figures["modelfile_template_matches"] = f"{matches} of {len(CONVERSATIONS)}"
        problems += trouble
    return _outcome(figures, problems, len(rows))


@contextlib.contextmanager
def _each_file_parsed_once() -> Iterator[None]:
    """transformers parses a GGUF file's header anew for its config, its weights and its tokenizer:
    three times, each ~6 s for a 49k-token vocabulary on 2 cores, two thirds of the check. Meanwhile
    the ``gguf`` package's reader (which transformers imports at each call) is made once per file.
    The reader maps the file read-only, so sharing it changes nothing that is read."""
    import gguf as gguf_package

    original, made = gguf_package.GGUFReader, {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in made:
            made[key] = original(path, mode)
        return made[key]

    gguf_package.GGUFReader = shared
    try:
        yield
    finally:
        gguf_package.GGUFReader = original


def _compare(task: TaskFamily, export: Path, name: str, merged, tokenizer, rows) -> tuple[dict, list[str]]:
    """One GGUF file read back and compared with the merged model: figures and problems."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weight_type = name.removesuffix(".gguf").rsplit("-", 1)[-1]
    with tempfile.TemporaryDirectory() as alone:  # the GGUF file only: the export's tokenizer files would be read too
        (Path(alone) / name).symlink_to((export / name).resolve())
        read = AutoModelForCausalLM.from_pretrained(alone, gguf_file=name, dtype=torch.float32).eval()
        read_tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=name)
    if read_tokenizer.pad_token is None:
        read_tokenizer.pad_token = tokenizer.pad_token
    renders = merge_check.same_tokens(task, read_tokenizer, rows)
    features = [{key: row[key] for key in ("input_ids", "attention_mask", "labels") if key in row} for row in rows]
    batch = task.collator(tokenizer, merged)(features)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        expected, found = merged(**inputs).logits.float(), read(**inputs).logits.float()
    difference = float((expected - found).abs().max())
    tolerance = TOLERANCE[weight_type] * float(expected.abs().max())
    same = merge_check.same_answers(read, merged, rows, expected, found)
    problems = []
    if difference > tolerance:
        problems.append(
            f"its logits differ from the merged model's by up to {difference:.3g} (tolerance {tolerance:.3g})"
        )
    if sum(same) < MIN_SAME[weight_type] * len(rows) // PROBE_ROWS:
        problems.append(
            f"greedy decoding differs on {len(rows) - sum(same)} of {len(rows)} test rows "
            f"(at least {MIN_SAME[weight_type]} of {PROBE_ROWS} must agree)"
        )
    if not all(renders):
        problems.append(
            f"the tokenizer in {name} (vocabulary and chat template) turns {len(rows) - sum(renders)} of "
            f"{len(rows)} test rows into other tokens than training used"
        )
    figures = {
        "logits_max_abs_difference": difference,
        "logits_tolerance": tolerance,
        "same_greedy_answers": f"{sum(same)} of {len(rows)}",
        "same_tokenization": f"{sum(renders)} of {len(rows)}",
    }
    return figures, problems


def _same_prompts(export: Path, tokenizer) -> tuple[int, list[str]]:
    """How many test conversations the Modelfile renders as the chat template does, and problems."""
    path = export / modelfile.NAME
    if not path.is_file():
        return 0, [f"the Modelfile is missing from {export}"]
    served = modelfile.served_from(path)
    problems = (
        [] if (export / served).is_file() else [f"the Modelfile's FROM names {served}, which is not in the export"]
    )
    matches = 0
    for turns in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        try:
            found = modelfile.render(path, turns)
        except (ValueError, KeyError, IndexError) as error:
            return matches, [*problems, f"the Modelfile's TEMPLATE cannot be rendered: {error}"]
        if found == expected:
            matches += 1
            continue
        at = next((i for i, (a, b) in enumerate(zip(expected, found)) if a != b), min(len(expected), len(found)))
        problems.append(
            f"the Modelfile's TEMPLATE renders a {len(turns)}-turn conversation differently from the chat "
            f"template from character {at}: {found[at : at + 40]!r} instead of {expected[at : at + 40]!r}"
        )
    return matches, problems


def _outcome(figures: dict, problems: list[str], rows: int) -> dict:
    """The outcome, with a description that says what was compared and, on failure, what to do."""
    if problems:
        return {
            "passed": False,
            "figures": figures,
            "description": (
                "the export's GGUF files or Modelfile are not the model that was evaluated: "
                + "; ".join(problems)
                + f" (read back by transformers' GGUF loader, compared with the merged model on {rows} test rows). "
                "It is not promoted. Check the llama.cpp converter's version and the chat template, then export again."
            ),
        }
    return {
        "passed": True,
        "figures": figures,
        "description": (
            f"the GGUF files, read back by transformers' GGUF loader, answer as the merged model on {rows} test "
            "rows (greedy tokens, logits within tolerance), tokenize them as training did, and the Modelfile's "
            "TEMPLATE renders the test conversations exactly as the chat template does"
        ),
    }
