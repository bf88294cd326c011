"""What a family that tunes a chat model shares beyond the rows: the model, its export and answers.

Instruction tuning and preference tuning both start from a causal LM, train it (or a LoRA adapter
on it) and ship a ``text-generation`` pipeline that answers a conversation with the chat template
training rendered. :class:`ChatModel` holds that once: loading, the generation settings written
into the export, the exported pipeline's answer, the rows the ``export_reloads`` check asks it and
the model card's usage code. A family subclasses it and brings its rows, tokenization and metrics.
Test rows handed to :meth:`ChatModel.reload_cases` carry ``prompt``, ``system``, ``history`` and
``truncated``; the report's samples carry the answer the model generated as ``prediction``.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune_assets.tasks.base import TaskFamily, weights_options
from finetune_assets.tasks.causal_lm import chat


class ChatModel(TaskFamily):
    """A chat model: loaded as a causal LM, exported as a ``text-generation`` pipeline."""

    pipeline_task = "text-generation"
    general_text_probe = True

    def peft_task_type(self, model) -> str:
        return "CAUSAL_LM"

    def load_model(self, location: str, **options):
        import torch
        from transformers import AutoModelForCausalLM

        options.setdefault("dtype", torch.float32)  # "auto" would train bf16 hub weights in bf16
        return AutoModelForCausalLM.from_pretrained(location, **weights_options(self.recipe), **options)

    def ready_to_generate(self, model, tokenizer) -> None:
        """The chat template (or the plain one) into the tokenizer, the recipe's decoding with EOS as
        the stop token into the model's generation config: the same for evaluation and export."""
        from finetune_assets.inference.generation import apply_generation_settings
        from finetune_assets.tasks.causal_lm.scoring import stop_at_eos

        chat.with_chat_template(tokenizer)
        stop_at_eos(model, tokenizer)
        apply_generation_settings(model, self.recipe)

    def prepare_export(self, model, tokenizer, folder: Path) -> None:
        """The export's tokenizer and generation_config.json as evaluation generated with."""
        self.ready_to_generate(model, tokenizer)

    def load_pipeline(self, folder: Path):
        """The export's text-generation pipeline, asked a question (text) or a whole conversation
        (turns); returns the answer's text. It decodes with the attention evaluation decoded with."""
        from finetune_assets.models.attention import use_product_attention

        generator = super().load_pipeline(folder)
        use_product_attention(generator.model)

        def reply(asked) -> str:
            turns = chat.conversation(asked) if isinstance(asked, str) else asked
            return generator(turns)[0]["generated_text"][-1]["content"]

        return reply

    def reload_cases(self, test, tuned: dict, rows: int) -> list[tuple]:
        """The test conversations the report generated answers for, ending with the question; rows
        cut to fit ``max_length`` are left out (the pipeline would read them whole), and sampled
        answers are never the same twice."""
        if self.recipe.generation.do_sample:
            return []
        cases = [
            (
                chat.conversation(row["prompt"], None, row.get("system", ""), json.loads(row.get("history") or "[]")),
                sample["prediction"],
            )
            for row, sample in zip(test, tuned["samples"])
            if not row["truncated"]
        ]
        return cases[:rows]

    def usage_code(self, folder: str) -> str:
        return f"""from transformers import pipeline
chat = pipeline("text-generation", model="{folder}")
reply = chat([{{"role": "user", "content": "Hello, who are you?"}}])
print(reply[0]["generated_text"][-1]["content"])"""
