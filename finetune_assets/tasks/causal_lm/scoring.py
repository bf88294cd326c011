"""Scoring a causal LM on rows encoded by :mod:`.chat`: loss on the answer tokens, and greedy or
sampled answers to prompts.

Perplexity here is exp(mean negative log-likelihood) over the answer tokens and the EOS that ends
each answer, exactly the tokens training puts loss on; prompt tokens never count, so base and tuned
models are compared on the answers alone. Generation stops at the tokenizer's EOS, the token
training appends to every answer (:func:`stop_at_eos`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from finetune_assets.inference import batching
from finetune_assets.inference.decoding import generate_in_rounds
from finetune_assets.tasks.causal_lm import answer_logits
from finetune_assets.tasks.causal_lm.chat import IGNORE


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def collator(tokenizer):
    """Pads inputs with the pad id (often EOS) under attention mask 0, and labels with -100. The
    labels come from :mod:`.chat`, never from input ids, so a real EOS keeps its label."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE)


def stop_at_eos(model, tokenizer) -> None:
    """Generation stops at the tokenizer's EOS (the token training appends), pads with its pad."""
    config = model.generation_config
    stops = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    stops = [token for token in stops if token is not None]
    stops = stops if tokenizer.eos_token_id in stops else [tokenizer.eos_token_id, *stops]
    config.eos_token_id = stops[0] if len(stops) == 1 else stops
    config.pad_token_id = tokenizer.pad_token_id


@torch.inference_mode()
def response_nll(model, rows, collator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: summed negative log-likelihood of its labelled tokens, and how many there are.
    Rows are scored in batches of similar length (``rows["length"]``), the logits computed at the
    labelled positions only where the model allows it (:mod:`.answer_logits`)."""
    model.eval().to(device())
    features = rows.select_columns(["input_ids", "attention_mask", "labels"])
    only_answers = answer_logits.supported(model)

    def score(indices: list[int]) -> list[tuple[float, int]]:
        batch = {key: value.to(device()) for key, value in collator([features[i] for i in indices]).items()}
        keep, targets = answer_logits.positions(batch["labels"])
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits = model(**inputs, logits_to_keep=keep).logits if only_answers else model(**inputs).logits[keep]
        nll = F.cross_entropy(logits.float(), targets, reduction="none")
        sums = torch.zeros(len(indices), device=nll.device).index_add_(0, keep.nonzero()[:, 0], nll)
        return list(zip(sums.tolist(), keep.sum(dim=1).tolist()))

    sums, counts = zip(*batching.map_batches(rows["length"], batch_size, score))
    return np.asarray(sums), np.asarray(counts)


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[list[int]], batch_size: int) -> list[dict]:
    """Answers to prompt token ids with the model's ``generation_config``: text, and whether the
    model ended it with EOS (rather than running into ``max_new_tokens``). Prompts of similar
    length share a batch, laid out so that every answer starts at the same position
    (:mod:`finetune_assets.inference.prefill`); answers that have ended leave the batch between
    rounds (:mod:`finetune_assets.inference.decoding`)."""
    model.eval().to(device())
    stops = model.generation_config.eos_token_id
    stops = set(stops) if isinstance(stops, list) else {stops}

    def answer(indices: list[int]) -> list[dict]:
        answers = []
        for ids in generate_in_rounds(model, [prompts[i] for i in indices], tokenizer.pad_token_id, stops):
            stopped = bool(ids) and ids[-1] in stops
            ids = ids[:-1] if stopped else ids
            answers.append(
                {
                    "text": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                    "tokens": len(ids),
                    "stopped_at_eos": stopped,
                }
            )
        return answers

    return batching.map_batches([len(prompt) for prompt in prompts], batch_size, answer)
