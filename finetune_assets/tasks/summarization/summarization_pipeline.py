"""A ``summarization`` pipeline for transformers 5, which removed its own (5.3 and later), for
encoder-decoder models and for decoder-only (causal) language models prompted with the document.

``pipeline("summarization", ...)`` still works for a model folder whose config names this class in
``custom_pipelines``: pass ``pipeline_class=SummarizationPipeline`` (no remote code), or
``trust_remote_code=True`` to let transformers load this file from the folder, where every
summarization export keeps a copy. It therefore imports nothing but transformers.

The input is ``config.prefix`` followed by the document, cut to ``config.max_input_tokens`` tokens
(the tokenizer's ``model_max_length`` when the config has none), as in training. An
encoder-decoder reads it as is (e.g. "summarize: " + document for T5). A decoder-only model reads
it as the user's turn of its chat template, the prefix being the instruction, and the summary is
what it writes after the assistant header: only those new tokens are returned. Decoding follows
the model's ``generation_config`` unless the call overrides it. Returns ``[{"summary_text": ...}]``.
:func:`user_turn` and :func:`prompt_ids` are also what training and evaluation use, so the three
ask the model the same way.
"""

import torch
from transformers import Pipeline


def custom_pipelines(decoder_only: bool) -> dict:
    """The ``config.custom_pipelines`` entry that names this class, with the model class it loads."""
    model_class = "AutoModelForCausalLM" if decoder_only else "AutoModelForSeq2SeqLM"
    return {
        "summarization": {"impl": "summarization_pipeline.SummarizationPipeline", "pt": [model_class], "type": "text"}
    }


def cut(tokenizer, text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``text`` cut to its first ``max_tokens`` tokens (special tokens left out), and whether it was."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_tokens is None or len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]), True


def user_turn(tokenizer, document: str, prefix: str, max_tokens: int | None) -> tuple[list[dict], bool]:
    """The conversation that asks a decoder-only model to summarize ``document``, and whether the
    prefixed document was cut to ``max_tokens`` to fit."""
    text, was_cut = cut(tokenizer, prefix + document, max_tokens)
    return [{"role": "user", "content": text}], was_cut


def prompt_ids(tokenizer, turns: list[dict]) -> list[int]:
    """``turns`` through the chat template, up to the assistant header where the summary starts (the
    template writes the special tokens itself)."""
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class SummarizationPipeline(Pipeline):
    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.model.config.is_encoder_decoder:
            # Batched prompts are padded on the left, so that every summary follows its own prompt's
            # last token (right padding would put pad tokens between prompt and summary).
            self.tokenizer.padding_side = "left"

    def _sanitize_parameters(self, truncation=True, **generate_kwargs):
        return {"truncation": truncation}, generate_kwargs, {}

    def _input_limit(self, truncation: bool) -> int | None:
        if not truncation:
            return None
        return getattr(self.model.config, "max_input_tokens", None) or self.tokenizer.model_max_length

    def preprocess(self, document: str, truncation=True):
        limit = self._input_limit(truncation)
        if self.model.config.is_encoder_decoder:
            return dict(
                self.tokenizer(
                    (self.prefix or "") + document, truncation=limit is not None, max_length=limit, return_tensors="pt"
                )
            )
        turns, _ = user_turn(self.tokenizer, document, self.prefix or "", limit)
        ids = torch.tensor([prompt_ids(self.tokenizer, turns)])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def _forward(self, model_inputs, **generate_kwargs):
        output = self.model.generate(**model_inputs, **self._prepare_generate_kwargs(generate_kwargs))
        if not self.model.config.is_encoder_decoder:  # a causal LM returns the prompt before the summary
            output = output[:, model_inputs["input_ids"].shape[1] :]
        return {"output_ids": output}

    def postprocess(self, model_outputs):
        return [
            {
                "summary_text": self.tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=True
                ).strip()
            }
            for ids in model_outputs["output_ids"]
        ]
