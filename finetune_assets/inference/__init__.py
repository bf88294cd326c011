"""Running a model on the test rows: scoring and generating, the same way for every task family.

``evaluation.py`` scores the tuned and the base model on the same test rows (and is what the
champion is re-scored with); ``batching.py`` gives batches of similar length so little padding is
computed; ``generation.py`` applies the recipe's decoding settings everywhere text is generated;
``prefill.py`` reads a batch's prompts into the KV cache, ``kv_cache.py`` is the cache decoding
grows and ``decoding.py`` decodes from it in rounds.
What a task measures is the task family's (``tasks/``); which model is kept is ``promotion/``'s.
"""
