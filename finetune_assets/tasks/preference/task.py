"""Preference tuning of a chat model (DPO, ORPO, KTO through TRL): columns ``prompt``, ``chosen``,
``rejected``, ``system``, ``history`` (earlier turns, JSON) and ``paired``.

The forms the rows may come in are read by :mod:`.forms`. Cleaning is the generic one on the
prompt, both answers and every earlier turn, plus the family's own rules, each counted by reason:
a pair with an empty chosen or rejected answer, an unpaired row with no completion, a pair whose
two answers are the same (ignoring case, punctuation and spacing) teaches no preference. Rows with
the same input (all the user turns) share a split, so every pair of a test prompt is unseen.

Tokenized splits hold, per row, the conversation through its chosen answer (``input_ids``,
``labels``: loss on the answer only, from :mod:`finetune_assets.tasks.causal_lm.chat`) and for
pairs the same through the rejected one (``rejected_*``); evaluation scores both. Training hands
the rows to TRL's trainer (:mod:`.trainers`), which renders them with the same chat template.
The promotion metric is ``preference_accuracy``, the share of held-out pairs whose chosen answer
earns the higher implicit reward against the starting model (:mod:`.scoring`); the report adds the
plain-likelihood figures, answers of both models side by side, and the general-text probe (the
``forgetting`` check).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from finetune_assets.data.cleaning import comparison_key
from finetune_assets.errors import DataError
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Markdown
from finetune_assets.tasks.base import Evaluation
from finetune_assets.tasks.causal_lm import chat
from finetune_assets.tasks.causal_lm.chat_model import ChatModel
from finetune_assets.tasks.instruction import conversations
from finetune_assets.tasks.preference import forms, scoring, self_play, trainers

if TYPE_CHECKING:
    from datasets import DatasetDict


class Preference(ChatModel):
    """Prefers the chosen answer to the rejected one; baseline is the starting model, same pairs."""

    name = "preference"
    text_columns = ("prompt", "chosen", "rejected")
    conversation_columns = ("history",)
    required_columns = ("prompt", "chosen", "rejected")
    primary_metric = "preference_accuracy"
    trainer_applies_adapter = True

    def unpack_records(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Any form of :mod:`.forms` as canonical rows, the required columns under the recipe's
        source names (the generic column check and :meth:`select_columns` read them there)."""
        mapped = self.recipe.dataset.columns
        named = raw.rename(columns={source: column for column, source in mapped.items()})
        if self.writes_rejected:
            named = self._awaiting_rejected(named)
        form = forms.detect(named.columns)
        if form is None:
            raise DataError(
                f"{self.recipe.dataset.source}: no preference data found in columns {list(raw.columns)}; "
                "expected chosen and rejected (pairs) or completion and label (KTO), each mappable with "
                f"dataset.columns in {self.recipe.source_file.name}"
            )
        rows = forms.unpack(named, form, self.recipe.dataset.source)
        return rows.rename(columns={column: mapped.get(column, column) for column in self.required_columns})

    @property
    def writes_rejected(self) -> bool:
        """Whether the starting model writes the rejected answers (:mod:`.self_play`)."""
        return self.recipe.preference.rejected == "starting_model"

    def _awaiting_rejected(self, named: pd.DataFrame) -> pd.DataFrame:
        """Rows of prompts and good answers as pairs whose rejected answer is still to be written."""
        where = f"{self.recipe.source_file.name}: preference.rejected: starting_model"
        if "chosen" not in named.columns:
            raise DataError(
                f"{where} reads a prompt and a good answer per row, in a column 'chosen' (map yours with "
                f"dataset.columns.chosen); {self.recipe.dataset.source} has columns {list(named.columns)}"
            )
        if "rejected" in named.columns or "completion" in named.columns:
            raise DataError(
                f"{where} writes the rejected answers, but {self.recipe.dataset.source} has them already "
                "(a column 'rejected' or 'completion'); use preference.rejected: data for such rows"
            )
        return named.assign(rejected="")

    def cleaning_reads(self) -> tuple[str, ...]:
        """Self-play's cleaning asks the starting model, decoding as ``generation:`` says."""
        return ("base_model", "generation", "preference.rejected") if self.writes_rejected else ()

    def complete_rows(self, rows: pd.DataFrame, log) -> pd.DataFrame:
        return self_play.write_rejected(self, rows, log) if self.writes_rejected else rows

    def training_reads(self) -> tuple[str, ...]:
        return ("preference",)

    def canonical_rows(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        frame = self.select_columns(raw)
        frame[["system", "history", "paired"]] = raw[["system", "history", "paired"]]
        return frame, {}

    def may_be_empty(self, rows: pd.DataFrame) -> pd.DataFrame:
        """An unpaired (KTO) row holds its completion on one side only."""
        single = ~rows["paired"].astype(bool)
        return pd.DataFrame({"chosen": single, "rejected": single}, index=rows.index)

    def row_rules(self) -> list:
        def paired(f):
            return f["paired"].astype(bool)

        return [
            ("empty chosen", lambda f: paired(f) & (f["chosen"] == "")),
            ("empty rejected", lambda f: paired(f) & (f["rejected"] == "")),
            ("empty completion", lambda f: ~paired(f) & (f["chosen"] == "") & (f["rejected"] == "")),
            (
                "chosen equals rejected",
                lambda f: paired(f) & (f["chosen"].map(comparison_key) == f["rejected"].map(comparison_key)),
            ),
        ]

    def schema(self):
        length = self.text_length()
        # an answer may be empty (the missing side of an unpaired row): only the upper bound applies
        answer = {"str_length": {"max_value": length["max_value"]}} if "max_value" in length else {}

        class PreferenceRows(pa.DataFrameModel):
            """Cleaned preference rows: a prompt within the length bounds; a pair has two different
            answers, an unpaired row exactly one."""

            prompt: Series[str] = pa.Field(str_length=length)
            chosen: Series[str] = pa.Field(**answer, description="the preferred answer (empty: undesirable row)")
            rejected: Series[str] = pa.Field(**answer, description="the worse answer (empty: desirable row)")
            system: Series[str]
            history: Series[str] = pa.Field(description="earlier turns: a JSON list of user and assistant turns")
            paired: Series[bool] = pa.Field(description="true: a pair; false: one answer with a label (KTO)")

            @pa.check("history", name="alternating user and assistant turns", element_wise=True)
            def _turns(cls, value: str) -> bool:
                return conversations.is_history(value)

            @pa.dataframe_check(name="two different answers per pair, one per unpaired row")
            def _answers(cls, frame: pd.DataFrame) -> pd.Series:
                present = (frame["chosen"] != "").astype(int) + (frame["rejected"] != "").astype(int)
                pair_ok = (present == 2) & (frame["chosen"] != frame["rejected"])
                return pair_ok.where(frame["paired"].astype(bool), present == 1)

        return PreferenceRows

    def input_keys(self, rows: pd.DataFrame) -> pd.Series:
        """All the user turns of the conversation the answers reply to."""
        history = rows["history"] if "history" in rows.columns else pd.Series("[]", index=rows.index)
        return pd.Series(
            [comparison_key(conversations.user_text(prompt, turns)) for prompt, turns in zip(rows["prompt"], history)],
            index=rows.index,
        )

    def split_groups(self, rows: pd.DataFrame) -> pd.Series:
        return self.input_keys(rows)

    def describe_data(self, frame: pd.DataFrame) -> dict[str, float | int]:
        pairs = frame[frame["paired"]]
        return {
            "pairs": len(pairs),
            "desirable_rows": int(((~frame["paired"]) & (frame["chosen"] != "")).sum()),
            "undesirable_rows": int(((~frame["paired"]) & (frame["rejected"] != "")).sum()),
            "distinct_prompts": int(self.input_keys(frame).nunique()),
            "chosen_longer_share": float(chosen_longer_share(pairs)) if len(pairs) else 0.0,
            "chosen_words_median": float(pairs["chosen"].str.split().str.len().median()) if len(pairs) else 0.0,
            "rejected_words_median": float(pairs["rejected"].str.split().str.len().median()) if len(pairs) else 0.0,
        }

    def tokenize(self, splits: DatasetDict, tokenizer) -> DatasetDict:
        from finetune_assets.models.tokenizer import tokenizing_processes

        max_length = self.recipe.training.max_length
        chat.with_chat_template(tokenizer)

        def encode(row):
            history = conversations.turns_of(row.get("history") or "[]")
            answers = [a for a in (row["chosen"], row["rejected"]) if a]
            first, *second = (
                chat.encode(tokenizer, chat.conversation(row["prompt"], a, row["system"], history), max_length)
                for a in answers
            )
            other = second[0] if second else {"input_ids": [], "attention_mask": [], "labels": [], "length": 0}
            cut = first["truncated"] or bool(second and other["truncated"])
            return {**first, "truncated": cut, **{f"rejected_{c}": other[c] for c in scoring.ANSWER_COLUMNS}}

        return splits.map(encode, num_proc=tokenizing_processes(splits), desc="formatting and tokenizing")

    def collator(self, tokenizer, model):
        from finetune_assets.tasks.causal_lm.scoring import collator

        return collator(tokenizer)

    def trainer_class(self):
        return trainers.classes(self.recipe.preference.method)[0]

    def training_arguments_class(self):
        return trainers.classes(self.recipe.preference.method)[1]

    def extra_training_arguments(self) -> dict:
        return trainers.config_arguments(self.recipe)

    def trainer_options(self, tokenizer, model, rows: tuple, adapter) -> dict:
        """TRL's rows and collator; the LoRA config for TRL to apply (the reference is then the base
        with the adapter off)."""
        chat.with_chat_template(tokenizer)
        train, validation = (
            trainers.trl_rows(split, self.recipe, name) for split, name in zip(rows, ("train", "validation"))
        )
        return {"train_dataset": train, "eval_dataset": validation, **({"peft_config": adapter} if adapter else {})}

    def reload_cases(self, test, tuned: dict, rows: int) -> list[tuple]:
        """The pairs' prompts: the report generated answers for the first test pairs."""
        return super().reload_cases(pairs_of(test), tuned, rows)

    def evaluate(self, model, tokenizer, test, workdir: Path) -> Evaluation:
        from finetune_assets.inference.generation import generation_batch_size
        from finetune_assets.tasks.causal_lm import general_text
        from finetune_assets.tasks.causal_lm import scoring as causal_scoring

        self.ready_to_generate(model, tokenizer)
        batch = self.recipe.training.eval_batch_size
        pairs = pairs_of(test)
        if not len(pairs):
            raise DataError(
                f"{self.recipe.source_file.name}: the test split holds no pairs; preference accuracy ranks the "
                "two answers of held-out pairs, so the data needs pairs (KTO may train on unpaired rows besides)"
            )
        chosen, rejected = scoring.answer_logps(model, pairs, tokenizer, batch)
        reference = self._reference_logps(pairs, tokenizer)
        metrics = {
            **scoring.pair_metrics((chosen, rejected), reference, self.recipe.preference.beta),
            "general_text_perplexity": general_text.perplexity(model, tokenizer, batch),
        }
        shown = pairs.select(range(min(self.recipe.evaluation.num_examples, len(pairs))))
        answers = causal_scoring.generate(
            model,
            tokenizer,
            [chat.prompt_before_last_answer(row["input_ids"], row["labels"]) for row in shown],
            generation_batch_size(self.recipe),
        )
        samples = [
            {
                "text": row["prompt"],
                "reference": row["chosen"],
                "rejected": row["rejected"],
                "prediction": answer["text"],
                "stopped_at_eos": answer["stopped_at_eos"],
            }
            for row, answer in zip(shown, answers)
        ]
        details = {"chosen_logp": chosen.tolist(), "rejected_logp": rejected.tolist()}
        return Evaluation(metrics=metrics, details=details, samples=samples)

    def evaluation_reads(self) -> tuple[str, ...]:
        return ("preference.beta",)

    @cached_property
    def _reference_cache(self) -> dict:
        return {}

    def _reference_logps(self, pairs, tokenizer) -> tuple:
        """The starting model's log-probabilities of the pairs' answers, the implicit reward's
        reference; computed once per set of rows (the base, the tuned model and the champion of one
        evaluation share them), with the starting model loaded apart, in the weights' dtype the scored
        models hold (bf16 where native: a float32 reference gave the starting model, scored against
        itself, rewards of 1e-4 and an accuracy of 0.3 instead of 0.5), and freed after."""
        cache = self._reference_cache
        if pairs._fingerprint not in cache:
            reference = self.precision.for_inference(self.load_model(self.base_location))
            cache[pairs._fingerprint] = scoring.answer_logps(
                reference, pairs, tokenizer, self.recipe.training.eval_batch_size
            )
            del reference
        return cache[pairs._fingerprint]

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        return {
            "preference_plot": plots.metric_bars(
                tuned.metrics,
                baseline.metrics,
                ["preference_accuracy", "likelihood_accuracy"],
                "Held-out pairs ranked right: by implicit reward (0.5 = chance), by likelihood",
                folder / "preference.png",
            )
        }

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation) -> dict:
        side_by_side = [
            {
                "prompt": t["text"],
                "chosen": t["reference"],
                "base model": b["prediction"],
                "fine-tuned": t["prediction"],
            }
            for t, b in zip(tuned.samples, baseline.samples)
        ]
        return {"side_by_side": Markdown(markdown_table(side_by_side))}


def pairs_of(rows):
    """The paired rows of a tokenized split, in order (selected, not filtered: nothing is written
    next to the split's files)."""
    return rows.select([i for i, paired in enumerate(rows["paired"]) if paired])


def chosen_longer_share(pairs: pd.DataFrame) -> float:
    """The share of pairs whose chosen answer has more characters than the rejected one."""
    return float((pairs["chosen"].str.len() > pairs["rejected"].str.len()).mean())
