"""Data in and out of shape: where rows and models come from, and how rows are made fit to train on.

``sources.py`` resolves a hub id, a local path or a ``package:`` reference and reads rows exactly
as they are (and refuses a base model without safetensors weights); ``formats/`` reads the file
formats that need more than pandas (strict CSV and JSON Lines, ChatterBot YAML, nested JSON
fields, GGUF model files); ``cleaning.py`` applies the recipe's cleaning rules with a
receipt for every dropped row; ``validation.py`` checks rows against a task's pandera schema;
``splitting.py`` makes the seeded train/validation/test split. No tokenization, no models, no
Dagster: what a task does with the rows lives in ``tasks/``.
"""
