"""A ``summarization`` pipeline for transformers 5, which removed its own (5.3 and later).

``pipeline("summarization", ...)`` still works for a model folder whose config names this class in
``custom_pipelines``: pass ``pipeline_class=SummarizationPipeline`` (no remote code), or
``trust_remote_code=True`` to let transformers load this file from the folder, where every
summarization export keeps a copy. It therefore imports nothing but transformers.

Like the removed pipeline it prepends ``config.prefix`` (e.g. "summarize: "), truncates the input
to the tokenizer's ``model_max_length``, decodes with the model's ``generation_config`` unless the
call overrides it, and returns ``[{"summary_text": ...}]`` per input.
"""

from transformers import Pipeline

CUSTOM_PIPELINES = {
    "summarization": {
        "impl": "summarization_pipeline.SummarizationPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    }
}


class SummarizationPipeline(Pipeline):
    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, truncation=True, **generate_kwargs):
        return {"truncation": truncation}, generate_kwargs, {}

    def preprocess(self, document: str, truncation=True):
        encoded = self.tokenizer((self.prefix or "") + document, truncation=truncation, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(self, model_inputs, **generate_kwargs):
        return {"output_ids": self.model.generate(**model_inputs, **self._prepare_generate_kwargs(generate_kwargs))}

    def postprocess(self, model_outputs):
        return [{"summary_text": self.tokenizer.decode(ids, skip_special_tokens=True,
                                                       clean_up_tokenization_spaces=True).strip()}
                for ids in model_outputs["output_ids"]]
