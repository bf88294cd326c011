"""The summarization task family: ``task.py`` (the family, metrics, report, export), one module per
kind of base model (``encoder_decoder.py``: T5, BART, a warm-started BERT2BERT; ``decoder_only.py``:
a causal LM prompted with the document), and ``summarization_pipeline.py``, the pipeline class
every export ships (transformers 5 removed its own ``summarization`` pipeline)."""

from finetune_assets.tasks.summarization.task import Summarization

__all__ = ["Summarization"]
