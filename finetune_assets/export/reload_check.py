"""Does the export answer as the report says? ``exported_model``'s ``export_reloads`` check, run before
the promotion gate decides.

The merge check (:mod:`.merge_check`) compares the exported weights with the trained model. This
one asks what a user gets: the folder is loaded through its ``transformers`` pipeline
(:meth:`TaskFamily.load_pipeline`, as the model card says to load it) and asked a few test rows,
as a user would ask them (:meth:`TaskFamily.reload_cases`: a classifier the rows the report was
surest of, a summarizer the documents, a chat model the conversations), in the precision the
report was scored in, and a generating model with the attention evaluation decoded with
(:func:`finetune_assets.models.attention.use_product_attention`). Each answer is compared with
the prediction the evaluation report recorded for that row. A changed weight file, a lost label
mapping, another tokenizer, chat template or decoding setting changes the answers.

A row counts as reproduced when :data:`AGREEMENT` of its words agree in order (a label: the same
label). Generated text is compared that leniently because the report decoded rows in padded
batches and the pipeline decodes one row at a time: in bf16 the two can take different words where
two were nearly tied, and the text then goes its own way (measured on the shipped
``paper_summaries``: 2 of the first 4 summaries differed, word agreement 0.75 and 0.93; and the
report's chat answers come from the adapter on its base, the export's from the merged weights, which
round differently in bf16: on the shipped ``chatbot_sft``, 2 of 4 short answers went their own way
after a near-tie, "I have." against "I have never been in love."), while an export that is not the
evaluated model differs on every row. The check passes when at least :data:`NEEDED` of the
:data:`ROWS` rows compared are reproduced: over 8 rows, a near-tie or two still pass.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

from finetune_assets.report.tables import markdown_table
from finetune_assets.tasks.base import TaskFamily

CHECK = "export_reloads"
ROWS = 8  # 4 until 2026-12-07, when 2 of 4 short chat answers took another word at a near-tie in bf16
AGREEMENT = 0.6  # share of a row's words that must agree, in order (difflib's ratio)
NEEDED = 0.75  # share of the compared rows that must be reproduced (6 of 8)


def agreement(answer: str, expected: str) -> float:
    """How much of two answers agrees, word by word in order: 1.0 for the same words, 0.0 for none."""
    return difflib.SequenceMatcher(None, answer.split(), expected.split(), autojunk=False).ratio()


def verify(task: TaskFamily, export: Path, report: dict, test, final: Path | None = None) -> dict:
    """The check's outcome (``passed``, ``description``, ``figures``) and, under ``answers``, the rows
    compared as a markdown table. ``final``: the folder ``export`` becomes, named in the description."""
    cases = task.reload_cases(test, report["tuned"], ROWS)
    if not cases:
        return {
            "passed": True,
            "figures": {"rows_compared": 0},
            "answers": "(none)",
            "description": (
                "not judged: the evaluation report holds no prediction the pipeline could repeat (decoding samples, "
                "generation.do_sample: true; or, for instruction recipes, evaluation.num_examples is 0)"
            ),
        }
    pipeline = task.load_pipeline(export)
    with task.precision.inference():
        answers = [task.answer(pipeline, asked) for asked, _ in cases]
    shares = [agreement(answer, expected) for answer, (_, expected) in zip(answers, cases)]
    reproduced = sum(share >= AGREEMENT for share in shares)
    needed = math.ceil(NEEDED * len(cases))
    figures = {
        "rows_compared": len(cases),
        "rows_reproduced": reproduced,
        "rows_needed": needed,
        "mean_word_agreement": round(sum(shares) / len(shares), 4),
    }
    table = markdown_table(
        [
            {
                "asked": _shown(asked),
                "report": expected[:200],
                "export's pipeline": answer[:200],
                "agreement": round(share, 3),
            }
            for (asked, expected), answer, share in zip(cases, answers, shares)
        ]
    )
    said = (
        f"the export at {final or export}, loaded through its {task.pipeline_task} pipeline, gave the report's "
        f"prediction on {reproduced} of {len(cases)} test rows (needed {needed}; a row counts when "
        f"{AGREEMENT:.0%} of its words agree in order)"
    )
    if reproduced >= needed:
        return {"passed": True, "figures": figures, "answers": table, "description": said}
    return {
        "passed": False,
        "figures": figures,
        "answers": table,
        "description": (
            f"{said}: what users load is not what was evaluated. It is not promoted. Compare the export's "
            "files (weights, tokenizer, config.json labels, generation_config.json) with the checkpoint, then "
            "export again."
        ),
    }


def _shown(asked) -> str:
    """A pipeline input as one short line: a text, or a conversation's last user turn."""
    text = asked if isinstance(asked, str) else asked[-1]["content"]
    return text[:120]
