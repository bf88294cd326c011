"""Library progress bars off while a stage works: the run's own log lines say what is happening.

``datasets`` draws a tqdm bar for every ``map`` and ``save_to_disk``, transformers one for every
model it loads or saves. In a Dagster run they land in the CLI output and the captured logs as raw
carriage-return lines ("tokenizing: 100%|██████████| 48/48"), dozens per run, while the stage
already logs what it did (split sizes, progress every few percent of training).
"""

from __future__ import annotations


def no_progress_bars() -> None:
    """Turn off the progress bars of ``datasets`` and transformers in this process."""
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
