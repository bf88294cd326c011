"""Summaries from a decoder-only (causal) language model prompted with the document.

The document, after the recipe's ``training.input_prefix`` (the instruction, e.g. "Summarize this
abstract in three sentences."), is the user's turn of the tokenizer's chat template (a plain
template when it has none), cut to ``training.max_length`` tokens; the summary, cut to
``training.max_target_length`` tokens with its EOS, is the assistant's answer and the only part
that carries loss. Formatting, masking and generation are the ones instruction tuning uses
(:mod:`finetune_assets.tasks.causal_lm`); the prompt is built by the exported pipeline's own
functions, so training, evaluation and the export ask alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune_assets.tasks.base import weights_options
from finetune_assets.tasks.causal_lm import chat

if TYPE_CHECKING:
    from datasets import DatasetDict

    from finetune_assets.recipes import Recipe


def load(location: str, recipe: Recipe, **options):
    import torch
    from transformers import AutoModelForCausalLM

    options.setdefault("dtype", torch.float32)  # "auto" would train bf16 hub weights in bf16
    return AutoModelForCausalLM.from_pretrained(location, **weights_options(recipe), **options)


def tokenize(splits: DatasetDict, tokenizer, recipe: Recipe) -> DatasetDict:
    """Prompt and summary as one sequence, labels on the summary and its EOS; ``truncated`` marks
    rows whose document or summary was cut."""
    from finetune_assets.models.tokenizer import tokenizing_processes
    from finetune_assets.tasks.summarization.summarization_pipeline import cut, user_turn

    spec = recipe.training
    chat.with_chat_template(tokenizer)

    def encode(row):
        turns, document_cut = user_turn(tokenizer, row["document"], spec.input_prefix, spec.max_length)
        summary, summary_cut = cut(tokenizer, row["summary"], spec.max_target_length - 1)  # EOS ends it
        encoded = chat.encode(tokenizer, [*turns, {"role": "assistant", "content": summary}], max_length=None)
        return {key: encoded[key] for key in ("input_ids", "attention_mask", "labels", "length")} | {
            "truncated": document_cut or summary_cut
        }

    return splits.map(encode, num_proc=tokenizing_processes(splits), desc="formatting and tokenizing")


def predict(model, tokenizer, test, recipe: Recipe) -> tuple[list[str], float]:
    """Summaries generated after each test row's prompt (as training rendered it), in row order,
    and their mean length in tokens."""
    from finetune_assets.inference.generation import generation_batch_size
    from finetune_assets.tasks.causal_lm import scoring

    scoring.stop_at_eos(model, tokenizer)
    prompts = [chat.prompt_before_last_answer(row["input_ids"], row["labels"]) for row in test]
    answers = scoring.generate(model, tokenizer, prompts, generation_batch_size(recipe))
    tokens = [answer["tokens"] for answer in answers]
    return [answer["text"] for answer in answers], sum(tokens) / max(len(tokens), 1)


def prepare_export(model, tokenizer, recipe: Recipe) -> None:
    """The chat template and EOS as the stop token, and the input budget the pipeline cuts at."""
    from finetune_assets.tasks.causal_lm.scoring import stop_at_eos

    chat.with_chat_template(tokenizer)
    stop_at_eos(model, tokenizer)
    model.config.max_input_tokens = recipe.training.max_length
