"""The names of the chain's stages, for code that names a stage without reading the table.

The table (:mod:`finetune_assets.pipeline.chain`) is built from these names, and so are the check
declarations (:mod:`finetune_assets.checks`), which cannot import the table: it imports the stages'
work and the promotion gate, and those ask the checks which apply. Plain strings, not an ``Enum``:
the names go into Dagster asset keys, whose serializer accepts only registered enums.
"""

RAW_DATASET = "raw_dataset"
CLEAN_DATASET = "clean_dataset"
TOKENIZED_SPLITS = "tokenized_splits"
FINETUNED_MODEL = "finetuned_model"
EVALUATION_REPORT = "evaluation_report"
SWEEP_REPORT = "sweep_report"
EXPORTED_MODEL = "exported_model"
PUBLISHED_MODEL = "published_model"
