"""Reward-driven tuning of a chat model (GRPO through TRL): rows hold a ``prompt`` and the fields the
reward functions read (``answer`` for ``exact_answer``).

The model samples ``reward.generations`` completions to each training prompt, the recipe's reward
functions (:mod:`.rewards`) score them, and TRL's ``GRPOTrainer`` moves the policy toward the
completions that scored above their group's mean, held near the starting model by a KL term of
weight ``reward.beta``. There are no target answers to imitate, so nothing is tokenized for a loss:
the tokenized splits hold each prompt as the chat template renders it (its length, and whether it
exceeds ``training.max_length``, for the data checks).

Every column of the data besides ``prompt`` (after ``dataset.columns``) is kept and reaches the
reward functions as text; a row whose field an ``exact_answer`` reads is empty is dropped and
counted (``empty <field>``), a ``kind: number`` answer that is not a number stops the run naming
the row. Conflicting duplicates (one prompt with two answers) are dropped, as in classification.
Rows with the same prompt share a split, so the test prompts are unseen.

Evaluation (:mod:`.scoring`) samples completions to the held-out prompts as training samples them
and decodes one answer as the export does, from the tuned and the starting model alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from finetune_assets.errors import DataError
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Markdown
from finetune_assets.tasks.base import Evaluation
from finetune_assets.tasks.causal_lm import chat
from finetune_assets.tasks.causal_lm.chat_model import ChatModel
from finetune_assets.tasks.reward import rewards
from finetune_assets.tasks.reward.functions import number_in

if TYPE_CHECKING:
    from datasets import DatasetDict


# What tokenize() adds to each row: the prompt as the model reads it, not a field for the rewards.
TOKEN_COLUMNS = ("input_ids", "attention_mask", "length", "truncated")


class Reward(ChatModel):
    """Samples answers to prompts and learns from the rewards programs give them (GRPO)."""

    name = "reward"
    text_columns = ("prompt",)
    primary_metric = "mean_reward"
    trainer_applies_adapter = True
    loss_shows_learning = False  # GRPO's loss hovers near 0 whatever it learns: the rewards show it

    @property
    def required_columns(self) -> tuple[str, ...]:
        return ("prompt", *rewards.row_fields(self.recipe))

    def canonical_rows(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """The prompt and the reward fields renamed by ``dataset.columns``; every other column kept;
        all as text."""
        renamed = {self.recipe.dataset.columns.get(c, c): c for c in self.required_columns}
        frame = raw.rename(columns=renamed)
        frame = frame.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else _text(v))
        self._numbers_where_needed(frame)
        return frame, {}

    def _numbers_where_needed(self, frame: pd.DataFrame) -> None:
        for field in rewards.row_fields(self.recipe, numbers_only=True):
            bad = frame[(frame[field] != "") & frame[field].map(lambda v: number_in(v) is None)]
            if len(bad):
                row = bad.index[0]
                raise DataError(
                    f"{self.recipe.dataset.source}: row {row + 1}, field '{field}': {bad.iloc[0][field]!r} holds no "
                    f"number, and exact_answer (kind: number) compares numbers; {len(bad)} row(s) like it. Fix the "
                    f"data or set kind: text in {self.recipe.source_file.name}"
                )

    def row_rules(self) -> list:
        return [(f"empty {field}", lambda f, c=field: f[c].str.strip() == "") for field in self.required_columns[1:]]

    def schema(self):
        length, fields = self.text_length(), list(self.required_columns[1:])

        class RewardRows(pa.DataFrameModel):
            """Cleaned reward rows: a prompt within the length bounds, the reward functions' fields filled."""

            prompt: Series[str] = pa.Field(str_length=length)

            @pa.dataframe_check(name="the fields the reward functions read are filled")
            def _fields(cls, frame: pd.DataFrame) -> pd.Series | bool:
                return frame[fields].apply(lambda c: c.astype(str).str.strip() != "").all(axis=1) if fields else True

        return RewardRows

    def split_groups(self, rows: pd.DataFrame) -> pd.Series:
        return self.input_keys(rows)

    def describe_data(self, frame: pd.DataFrame) -> dict[str, float | int]:
        return {
            "prompt_words_median": float(frame["prompt"].str.split().str.len().median()),
            "distinct_prompts": int(self.input_keys(frame).nunique()),
        }

    def tokenize(self, splits: DatasetDict, tokenizer) -> DatasetDict:
        """Each prompt as generation starts from it (the chat template and the assistant header)."""
        max_length = self.recipe.training.max_length

        def encode(row):
            ids = chat.prompt_ids(tokenizer, chat.conversation(row["prompt"]))
            return {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "length": len(ids),
                "truncated": len(ids) > max_length,
            }

        return splits.map(encode, desc="rendering prompts")

    def collator(self, tokenizer, model):
        from finetune_assets.tasks.causal_lm.scoring import collator

        return collator(tokenizer)

    def trainer_class(self):
        from trl import GRPOTrainer

        return GRPOTrainer

    def training_arguments_class(self):
        from trl import GRPOConfig

        return GRPOConfig

    def extra_training_arguments(self) -> dict:
        """GRPO's settings from ``reward``. A log (the rewards, their spread, KL, completion length) at
        every step: each progress line (every 5 % of the steps) carries its step's figures, and the
        reward curve has every step (a ratio of 0.05 would round up to a longer interval). No
        validation pass: it would sample again, for figures the evaluation measures on the test prompts."""
        spec = self.recipe.reward
        return {
            "num_generations": spec.generations,
            "max_completion_length": spec.max_completion_length,
            "beta": spec.beta,
            "loss_type": spec.loss_type,
            "temperature": spec.temperature,
            "reward_weights": [function.weight for function in spec.functions],
            "logging_steps": 1,
            "eval_strategy": "no",
            "train_sampling_strategy": "random",
            "log_completions": False,
        }

    def training_reads(self) -> tuple[str, ...]:
        return ("reward",)

    def training_code(self) -> dict[str, str]:
        return rewards.source_hashes(self.recipe)

    def evaluation_reads(self) -> tuple[str, ...]:
        return ("reward",)  # the functions and weights score the test prompts, sampled as the keys say

    def trainer_options(self, tokenizer, model, rows: tuple, adapter) -> dict:
        """The training prompts as chat messages with their fields, the reward functions, and the LoRA
        config for TRL to apply (the reference is then the base with the adapter off)."""
        chat.with_chat_template(tokenizer)
        train = rows[0].remove_columns(list(TOKEN_COLUMNS))
        train = train.map(lambda row: {"prompt": chat.conversation(row["prompt"])})
        return {
            "train_dataset": train,
            "reward_funcs": rewards.load(self.recipe),
            **({"peft_config": adapter} if adapter else {}),
        }

    def evaluate(self, model, tokenizer, test, workdir: Path) -> Evaluation:
        from finetune_assets.inference.generation import generation_batch_size
        from finetune_assets.tasks.causal_lm import general_text
        from finetune_assets.tasks.causal_lm.scoring import generate
        from finetune_assets.tasks.reward import scoring

        self.ready_to_generate(model, tokenizer)
        functions, batch = rewards.load(self.recipe), self.recipe.training.eval_batch_size
        rows = [{k: v for k, v in row.items() if k not in TOKEN_COLUMNS} for row in test]
        prompts, decoded_together = list(test["input_ids"]), generation_batch_size(self.recipe)
        samples = scoring.sample(
            model, tokenizer, prompts, self.recipe.reward, self.recipe.training.seed, decoded_together
        )
        greedy = generate(model, tokenizer, prompts, decoded_together)
        k = self.recipe.reward.generations
        sampled = scoring.rewards_of(
            functions, [a["text"] for s in samples for a in s], [r for r in rows for _ in range(k)]
        )
        decoded = scoring.rewards_of(functions, [a["text"] for a in greedy], rows)
        lengths = [a["tokens"] for s in samples for a in s]
        metrics = {
            **scoring.figures(functions, sampled.reshape(len(rows), k, -1), decoded, lengths),
            "general_text_perplexity": general_text.perplexity(model, tokenizer, batch),
        }
        shown = min(self.recipe.evaluation.num_examples, len(rows))
        examples = [
            {
                "text": rows[i]["prompt"],
                "reference": rows[i].get("answer", ""),
                "prediction": greedy[i]["text"],
                "stopped_at_eos": greedy[i]["stopped_at_eos"],
                "greedy_reward": float(decoded[i] @ [f.weight for f in functions]),
                "a_sample": samples[i][0]["text"],
            }
            for i in range(shown)
        ]
        # Per prompt, so that a comparison can take the standard error over prompts (tuned and
        # starting model answer the same prompts with the same seed: the differences pair up).
        per_prompt = sampled.reshape(len(rows), k, -1).mean(axis=1)
        details = {"greedy_rewards": decoded.tolist(), "sampled_rewards": per_prompt.tolist()}
        return Evaluation(metrics=metrics, details=details, samples=examples)

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        names = ["mean_reward", *(f"reward_{spec}" for spec in self._names()), "pass_at_k", "greedy_accuracy"]
        return {
            "reward_plot": plots.metric_bars(
                tuned.metrics, baseline.metrics, names, "Rewards on held-out prompts", folder / "rewards.png"
            )
        }

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation) -> dict:
        side_by_side = [
            {
                "prompt": t["text"],
                "answer": t["reference"],
                "base model": b["prediction"],
                "base reward": round(b["greedy_reward"], 3),
                "fine-tuned": t["prediction"],
                "fine-tuned reward": round(t["greedy_reward"], 3),
            }
            for t, b in zip(tuned.samples, baseline.samples)
        ]
        return {"side_by_side": Markdown(markdown_table(side_by_side))}

    def _names(self) -> list[str]:
        return [function.__name__ for function in rewards.load(self.recipe)]


def _text(value) -> str:
    """A cell as text: numbers as written (12, not 12.0, where whole), lists and mappings as JSON."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
