"""Summarization: columns ``document`` and ``summary``; ROUGE against the untuned base, both
decoding with the recipe's generation settings, and so does the export.

Three kinds of base model, told apart by their config (:func:`is_decoder_only`):
- a sequence-to-sequence model (T5, BART, a saved encoder-decoder), used as it is;
- a plain encoder such as BERT or MiniLM, warm-started into an encoder-decoder (BERT2BERT);
  both in :mod:`.encoder_decoder`;
- a decoder-only language model (Llama, SmolLM2, GPT-2: its architecture is ``...ForCausalLM`` or
  ``...LMHeadModel``), prompted with the document through its chat template, loss on the summary
  only (:mod:`.decoder_only`).
Metrics, report and export are the same for all three; the export loads through the project's
summarization pipeline (``summarization_pipeline.py``), which handles both architectures.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from finetune_assets.data.formats.nested import as_text
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Markdown
from finetune_assets.tasks.base import Evaluation, TaskFamily
from finetune_assets.tasks.summarization import decoder_only, encoder_decoder

if TYPE_CHECKING:
    from datasets import DatasetDict

ROUGE = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class Summarization(TaskFamily):
    """Writes a summary of a document; scored by ROUGE against the reference summary."""

    name = "summarization"
    text_columns = ("document", "summary")
    required_columns = ("document", "summary")
    pipeline_task = "summarization"
    primary_metric = "rougeL"

    def peft_task_type(self, model) -> str:
        return "SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else "CAUSAL_LM"

    def canonical_rows(self, raw: pd.DataFrame):
        frame = self.select_columns(raw)
        for column in self.text_columns:  # sentence lists and aspect objects become plain text
            frame[column] = frame[column].map(as_text)
        return frame, {}

    def schema(self):
        length = self.text_length()

        class SummarizationRows(pa.DataFrameModel):
            """Cleaned summarization rows: a document and its reference summary, both within the
            recipe's length bounds."""

            document: Series[str] = pa.Field(str_length=length)
            summary: Series[str] = pa.Field(str_length=length)

        return SummarizationRows

    def load_model(self, location: str, **options):
        config = model_config(location, self.recipe.trust_remote_code)
        if is_decoder_only(config):
            return decoder_only.load(location, self.recipe, **options)
        return encoder_decoder.load(location, config, self.recipe, **options)

    def tokenize(self, splits: DatasetDict, tokenizer) -> DatasetDict:
        """Encoder inputs and decoder labels, or one prompted sequence for a decoder-only model: the
        tokenizer's own folder says which model it belongs to."""
        if is_decoder_only(model_config(tokenizer.name_or_path, self.recipe.trust_remote_code)):
            return decoder_only.tokenize(splits, tokenizer, self.recipe)
        return encoder_decoder.tokenize(splits, tokenizer, self.recipe)

    def collator(self, tokenizer, model):
        if model.config.is_encoder_decoder:
            return encoder_decoder.collator(tokenizer, model)
        from finetune_assets.tasks.causal_lm import answer_logits
        from finetune_assets.tasks.causal_lm.scoring import collator

        return answer_logits.for_training(collator(tokenizer), model)

    def evaluate(self, model, tokenizer, test, workdir: Path) -> Evaluation:
        from finetune_assets.inference.generation import apply_generation_settings
        from finetune_assets.metrics import load_metric

        apply_generation_settings(model, self.recipe)
        if model.config.is_encoder_decoder:
            predictions, gen_len = encoder_decoder.predict(model, tokenizer, test, self.recipe, workdir)
        else:
            predictions, gen_len = decoder_only.predict(model, tokenizer, test, self.recipe)
        references = list(test["summary"])
        metrics = load_metric("rouge").compute(predictions=predictions, references=references)
        metrics["gen_len"] = gen_len
        # A model that ignores its input writes one summary for every document; ROUGE alone hides that.
        metrics["distinct_predictions"] = len(set(predictions)) / max(len(predictions), 1)
        metrics["own_document_overlap"], metrics["other_document_overlap"] = document_overlap(
            predictions, list(test["document"])
        )
        if self.recipe.evaluation.bleu:
            metrics.update(load_metric("bleu").compute(predictions=predictions, references=references))
        shown = range(min(self.recipe.evaluation.num_examples, len(test)))
        samples = [
            {"text": test[i]["document"][:400], "reference": references[i], "prediction": predictions[i]} for i in shown
        ]
        return Evaluation(metrics=metrics, details={"predictions": predictions}, samples=samples)

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        return {
            "rouge_scores": plots.metric_bars(
                tuned.metrics, baseline.metrics, ROUGE, "ROUGE F-measure on the test split", folder / "rouge.png"
            )
        }

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation) -> dict:
        side_by_side = [
            {
                "document": t["text"],
                "reference": t["reference"],
                "base model": b["prediction"],
                "fine-tuned": t["prediction"],
            }
            for t, b in zip(tuned.samples, baseline.samples)
        ]
        gain = tuned.metrics[self.primary_metric] - baseline.metrics[self.primary_metric]
        return {
            "rougeL_points_over_baseline": round(100 * gain, 2),
            "side_by_side": Markdown(markdown_table(side_by_side)),
        }

    def describe_data(self, frame: pd.DataFrame) -> dict[str, float | int]:
        words = {column: frame[column].str.split().str.len() for column in self.text_columns}
        return {
            "document_words_median": float(words["document"].median()),
            "summary_words_median": float(words["summary"].median()),
            "compression_ratio_median": float((words["document"] / words["summary"]).median()),
        }

    def prepare_export(self, model, tokenizer, folder: Path) -> None:
        """Generation settings into generation_config.json, the input prefix and the summarization
        pipeline (removed from transformers 5) into config.json, and the pipeline's file alongside;
        a decoder-only model also gets its chat template, EOS as the stop token and its input budget."""
        from finetune_assets.inference.generation import apply_generation_settings
        from finetune_assets.tasks.summarization import summarization_pipeline

        apply_generation_settings(model, self.recipe)
        causal = not model.config.is_encoder_decoder
        model.config.custom_pipelines = summarization_pipeline.custom_pipelines(decoder_only=causal)
        if self.recipe.training.input_prefix:
            model.config.prefix = self.recipe.training.input_prefix
        if causal:
            decoder_only.prepare_export(model, tokenizer, self.recipe)
        else:
            tokenizer.model_max_length = self.recipe.training.max_length  # inputs cut as in training
        shutil.copy(summarization_pipeline.__file__, folder / "summarization_pipeline.py")

    def load_pipeline(self, folder: Path):
        """The export's summarization pipeline; a decoder-only model decodes with the attention
        evaluation decoded with."""
        from transformers import pipeline

        from finetune_assets.models.attention import use_product_attention
        from finetune_assets.tasks.summarization import summarization_pipeline

        summarizer = pipeline(
            "summarization",
            model=str(folder),
            device="cpu",
            model_kwargs=self.pipeline_model_options(),
            pipeline_class=summarization_pipeline.SummarizationPipeline,
        )
        use_product_attention(summarizer.model)
        return summarizer

    def reload_cases(self, test, tuned: dict, rows: int) -> list[tuple]:
        """The first test documents, with the summaries the report generated for them (none when
        decoding samples: a sampled summary is never the same twice)."""
        if self.recipe.generation.do_sample:
            return []
        predictions = tuned["details"]["predictions"]
        return [(test[i]["document"], predictions[i]) for i in range(min(rows, len(predictions)))]

    def answer(self, pipeline, asked) -> str:
        return pipeline(asked)[0]["summary_text"]

    def usage_code(self, folder: str) -> str:
        return f"""from transformers import pipeline
from finetune_assets.tasks.summarization.summarization_pipeline import SummarizationPipeline
summarize = pipeline("summarization", model="{folder}", pipeline_class=SummarizationPipeline)
# Without finetune_assets installed, trust_remote_code=True instead of pipeline_class runs
# this folder's summarization_pipeline.py (read it first).
print(summarize("A long document ...")[0]["summary_text"])
# A decoder-only export (config.json names AutoModelForCausalLM) also answers a chat:
# pipeline("text-generation", model=...)([{{"role": "user", "content": config.prefix + document}}])"""


def content_words(text: str) -> set[str]:
    """Lower-case words of four letters or more that are not English stop words (scikit-learn's list)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {word for word in re.findall(r"[a-z]{4,}", text.lower()) if word not in ENGLISH_STOP_WORDS}


def document_overlap(predictions: list[str], documents: list[str], others: int = 50) -> tuple[float, float]:
    """How much the summaries draw on their own document: the mean share of a summary's content
    words found in its own document, and the same share in other test documents (up to ``others``
    of them, the next ones in order) — what a summary that ignores its input also reaches."""
    words = [content_words(document) for document in documents]
    own, other = [], []
    for i, prediction in enumerate(predictions):
        said = content_words(prediction)
        own.append(_share(said, words[i]))
        neighbours = [words[(i + k) % len(words)] for k in range(1, min(others, len(words) - 1) + 1)]
        other.append(float(np.mean([_share(said, found) for found in neighbours])) if neighbours else 0.0)
    return float(np.mean(own)) if own else 0.0, float(np.mean(other)) if other else 0.0


def _share(said: set[str], found: set[str]) -> float:
    """The share of the words ``said`` that are ``found`` (0.0 when nothing was said)."""
    return len(said & found) / len(said) if said else 0.0


def model_config(location: str, trust_remote_code: bool):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)


def is_decoder_only(config) -> bool:
    """A causal LM (``LlamaForCausalLM``, ``GPT2LMHeadModel``), not an encoder-decoder nor a plain
    encoder (``BertModel``; a BERT trained as a decoder says so with ``is_decoder``)."""
    if config.is_encoder_decoder or getattr(config, "is_decoder", False):
        return False
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in config.architectures or [])
