"""Logits only where a loss is taken: a causal LM's vocabulary projection (its LM head) and the
cross-entropy over the whole vocabulary, computed for the answer tokens alone.

Why: the loss of a chat or summary row covers its answer only (:mod:`.chat` labels the prompt
-100), yet a causal LM projects every position onto its vocabulary. For SmolLM2-135M that
projection is 28M of the 134M parameters a token passes through (49,152 words x 576), and in
``chatbot_sft``'s batches about four positions in five are prompt or padding: their logits are
computed, cast to float32 and thrown away, in the forward pass and again in the backward one.

Transformers already knows how to skip them. A causal LM's ``forward`` takes ``logits_to_keep``,
and a boolean ``(batch, length)`` mask there keeps only its true positions, flattened
(``modeling_utils.slice_logits_to_keep``); its loss (``ForCausalLMLoss``) takes ``shift_labels``,
the targets already shifted, in place of shifting ``labels`` itself. :class:`AnswerLogits` adds
both to every batch: the mask of positions whose next token is a target, and those targets. The
loss and its gradients are those of the full logits (the same terms, summed in the same order);
``labels`` stays in the batch, so the Trainer counts the targets as before.

Only where the model's own code reads both (:func:`supported`); any other model gets the batch
as it was, with every logit.
"""

from __future__ import annotations

import sys

from finetune_assets.tasks.causal_lm.chat import IGNORE


def positions(labels):
    """The mask of positions whose next token is a target, and those targets in row order: the
    token at position t+1 is predicted from position t."""
    import torch.nn.functional as F

    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    keep = shifted != IGNORE
    return keep, shifted[keep]


def supported(model) -> bool:
    """Whether ``model`` (or the model inside a peft wrapper) slices its hidden states with
    transformers' ``slice_logits_to_keep`` (which takes a boolean mask) and takes its loss from
    ``ForCausalLMLoss`` (which takes ``shift_labels``); a model with code of its own may do neither."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    module = sys.modules.get(type(inner).__module__)
    return hasattr(module, "slice_logits_to_keep") and getattr(inner, "loss_function", None) is ForCausalLMLoss


class AnswerLogits:
    """A collator's batches with ``logits_to_keep`` (the mask of :func:`positions`) and
    ``shift_labels`` (its targets) added."""

    logits_at_targets_only = True  # what the training figures record (``logits_at_targets_only``)

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.collate(rows)
        keep, targets = positions(batch["labels"])
        return {**batch, "logits_to_keep": keep, "shift_labels": targets}


def for_training(collate, model):
    """``collate`` wrapped in :class:`AnswerLogits` where ``model`` supports it, else as it is."""
    return AnswerLogits(collate) if supported(model) else collate
