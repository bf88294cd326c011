"""Summarization: columns ``document`` and ``summary``; encoder-decoder models, ROUGE, generation.

The base model is either a sequence-to-sequence model (T5, BART, a saved encoder-decoder), used
as it is, or a plain encoder such as BERT or MiniLM, warm-started into an encoder-decoder
(BERT2BERT): encoder and decoder both start from its weights and only the decoder's
cross-attention starts from scratch. The baseline is that untuned model, decoding with the
recipe's generation settings; the tuned model decodes the same way, and so does the export.
"""

from __future__ import annotations

import copy
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
from finetune_assets.tasks.base import Evaluation, TaskFamily, weights_options

if TYPE_CHECKING:
    from datasets import DatasetDict

    from finetune_assets.recipes import Recipe

ROUGE = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class Summarization(TaskFamily):
    """Writes a summary of a document; scored by ROUGE against the reference summary."""

    name = "summarization"
    text_columns = ("document", "summary")
    required_columns = ("document", "summary")
    pipeline_task = "summarization"
    primary_metric = "rougeL"
    peft_task_type = "SEQ_2_SEQ_LM"

    def canonical_rows(self, raw: pd.DataFrame, recipe: Recipe):
        frame = self.select_columns(raw, recipe)
        for column in self.text_columns:  # sentence lists and aspect objects become plain text
            frame[column] = frame[column].map(as_text)
        return frame, {}

    def schema(self, recipe: Recipe):
        length = self.text_length(recipe)

        class SummarizationRows(pa.DataFrameModel):
            """Cleaned summarization rows: a document and its reference summary, both within the
            recipe's length bounds."""

            document: Series[str] = pa.Field(str_length=length)
            summary: Series[str] = pa.Field(str_length=length)

        return SummarizationRows

    def load_model(self, location: str, recipe: Recipe, **options):
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        config = AutoConfig.from_pretrained(location, trust_remote_code=recipe.trust_remote_code)
        if config.is_encoder_decoder:
            return AutoModelForSeq2SeqLM.from_pretrained(location, **weights_options(recipe), **options)
        if options:
            raise ValueError(f"{location}: {sorted(options)} (e.g. method qlora) need a sequence-to-sequence "
                             "base model; an encoder is warm-started into an encoder-decoder in full precision")
        return _warm_start(location, recipe)

    def tokenize(self, splits: DatasetDict, tokenizer, recipe: Recipe) -> DatasetDict:
        """Inputs (prefixed) cut at ``max_length``, labels cut at ``max_target_length``.

        ``truncated`` marks rows that lost text on either side. A BERT-style tokenizer starts every
        sequence with [CLS], which the warm-started decoder already receives as its start token, so
        it is dropped from the labels.
        """
        from finetune_assets.training.tokenizer import tokenize_and_cut, tokenizing_processes

        spec = recipe.training
        skip = int(tokenizer.cls_token_id is not None and tokenizer.bos_token_id is None)

        def encode(batch):
            documents = [spec.input_prefix + text for text in batch["document"]]
            inputs = tokenize_and_cut(tokenizer, documents, spec.max_length)
            labels = tokenize_and_cut(tokenizer, batch["summary"], spec.max_target_length + skip, target=True)
            return {
                "input_ids": inputs["input_ids"],
                "attention_mask": inputs["attention_mask"],
                "labels": [ids[skip:] for ids in labels["input_ids"]],
                "length": [len(ids) for ids in inputs["input_ids"]],
                "truncated": [a or b for a, b in zip(inputs["truncated"], labels["truncated"])],
            }

        return splits.map(encode, batched=True, num_proc=tokenizing_processes(splits), desc="tokenizing")

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def trainer_class(self):
        from transformers import Seq2SeqTrainer

        return Seq2SeqTrainer

    def training_arguments_class(self):
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments

    def extra_training_arguments(self, recipe: Recipe) -> dict:
        return {"predict_with_generate": True}

    def evaluate(self, model, tokenizer, test, recipe: Recipe, workdir: Path) -> Evaluation:
        from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

        from finetune_assets.metrics import load_metric
        from finetune_assets.training import batching
        from finetune_assets.training.generation import apply_generation_settings

        apply_generation_settings(model, recipe)
        args = Seq2SeqTrainingArguments(output_dir=str(workdir), report_to=[], disable_tqdm=True,
                                        per_device_eval_batch_size=recipe.training.eval_batch_size,
                                        **self.extra_training_arguments(recipe))
        trainer = Seq2SeqTrainer(model=model, args=args, data_collator=self.collator(tokenizer, model),
                                 processing_class=tokenizer)
        # Labels stay in: DataCollatorForSeq2Seq always sets a "labels" key, and Seq2SeqTrainer then
        # runs a loss pass that fails on labels=None.
        ids = batching.predict_longest_first(trainer, test, ["input_ids", "attention_mask", "labels"])
        ids = np.where(ids == -100, tokenizer.pad_token_id, ids)  # -100 pads batches to one width
        predictions = [text.strip() for text in tokenizer.batch_decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)]
        references = list(test["summary"])
        metrics = load_metric("rouge").compute(predictions=predictions, references=references)
        metrics["gen_len"] = float(np.isin(ids, tokenizer.all_special_ids, invert=True).sum(axis=1).mean())
        # A model that ignores its input writes one summary for every document; ROUGE alone hides that.
        metrics["distinct_predictions"] = len(set(predictions)) / max(len(predictions), 1)
        if recipe.evaluation.bleu:
            metrics.update(load_metric("bleu").compute(predictions=predictions, references=references))
        shown = range(min(recipe.evaluation.num_examples, len(test)))
        samples = [{"text": test[i]["document"][:400], "reference": references[i], "prediction": predictions[i]}
                   for i in shown]
        return Evaluation(metrics=metrics, details={"predictions": predictions}, samples=samples)

    def report_plots(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe,
                     folder: Path) -> dict[str, Path]:
        from finetune_assets.report import plots

        return {"rouge_scores": plots.metric_bars(tuned.metrics, baseline.metrics, ROUGE,
                                                  "ROUGE F-measure on the test split", folder / "rouge.png")}

    def report_metadata(self, tuned: Evaluation, baseline: Evaluation, recipe: Recipe) -> dict:
        side_by_side = [{"document": t["text"], "reference": t["reference"], "base model": b["prediction"],
                         "fine-tuned": t["prediction"]} for t, b in zip(tuned.samples, baseline.samples)]
        gain = tuned.metrics[self.primary_metric] - baseline.metrics[self.primary_metric]
        return {
            "rougeL_points_over_baseline": round(100 * gain, 2),
            "side_by_side": Markdown(markdown_table(side_by_side)),
        }

    def describe_data(self, frame: pd.DataFrame, recipe: Recipe) -> dict[str, float | int]:
        words = {column: frame[column].str.split().str.len() for column in self.text_columns}
        return {
            "document_words_median": float(words["document"].median()),
            "summary_words_median": float(words["summary"].median()),
            "compression_ratio_median": float((words["document"] / words["summary"]).median()),
        }

    def prepare_export(self, model, tokenizer, recipe: Recipe, folder: Path) -> None:
        """Generation settings into generation_config.json, the input prefix and the summarization
        pipeline (removed from transformers 5) into config.json, and the pipeline's file alongside."""
        from finetune_assets.tasks.summarization import summarization_pipeline
        from finetune_assets.training.generation import apply_generation_settings

        apply_generation_settings(model, recipe)
        model.config.custom_pipelines = copy.deepcopy(summarization_pipeline.CUSTOM_PIPELINES)
        if recipe.training.input_prefix:
            model.config.prefix = recipe.training.input_prefix
        tokenizer.model_max_length = recipe.training.max_length  # inputs cut as in training
        shutil.copy(summarization_pipeline.__file__, folder / "summarization_pipeline.py")

    def load_pipeline(self, folder: Path):
        from transformers import pipeline

        from finetune_assets.tasks.summarization import summarization_pipeline

        return pipeline("summarization", model=str(folder), device="cpu", model_kwargs={"use_safetensors": True},
                        pipeline_class=summarization_pipeline.SummarizationPipeline)

    def usage_code(self) -> str:
        return """from transformers import pipeline
from finetune_assets.tasks.summarization.summarization_pipeline import SummarizationPipeline
summarize = pipeline("summarization", model="path/to/this/folder", pipeline_class=SummarizationPipeline)
# Without finetune_assets installed, trust_remote_code=True instead of pipeline_class runs
# this folder's summarization_pipeline.py (read it first).
print(summarize("A long document ...")[0]["summary_text"])"""


def _warm_start(location: str, recipe: Recipe):
    """An encoder-decoder whose encoder and decoder both start from the encoder at ``location``.

    Decoding starts at [CLS] and stops at [SEP] (BOS/EOS for tokenizers without them); the ids are
    set on both config and generation config, since training reads the one and generate the other.
    """
    from transformers import EncoderDecoderModel

    from finetune_assets.training.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(location, recipe)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise ValueError(f"{location}: the tokenizer needs start ([CLS]/BOS), end ([SEP]/EOS) and pad tokens "
                        "to warm-start an encoder-decoder from this encoder")
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(location, location, encoder_use_safetensors=True,
                                                                decoder_use_safetensors=True)
    ids = {"decoder_start_token_id": start, "eos_token_id": end, "pad_token_id": tokenizer.pad_token_id}
    for config in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(config, key, value)
    return model
