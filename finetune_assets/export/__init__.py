"""The export: the self-contained folder users load, and the proof that it is the model evaluated.

``write.py`` writes the folder ``transformers.pipeline`` loads (LoRA merged, tokenizer, model card);
``merge_check.py`` verifies that folder is the model that was trained (``merge_verified``) and
``reload_check.py`` that, loaded through its pipeline as a user would, it answers as the evaluation
report says (``export_reloads``). Both run before the promotion gate decides; the gate itself is
``promotion/``'s.
"""
