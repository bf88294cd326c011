"""Data-quality asset checks on ``clean_dataset`` and ``tokenized_splits``.

Each check is a plain function from (recipe, task, artifact ref) to a :class:`Finding`; the
table :data:`CHECKS` names it, its asset and its severity, and :func:`build_checks` turns each row
into a Dagster ``@asset_check``. Only checks with ERROR severity are blocking: a failure stops the
run before ``finetuned_model`` starts, and the check's description says why. WARN checks show up
in the UI without stopping anything (the promotion gate still refuses an export made from data
that failed one, unless ``promotion.allow_warnings``). Thresholds live in the recipe's ``checks:``
section. The model's own quality gates are the stages' checks (:mod:`finetune_assets.pipeline.quality_gates`).
"""


from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, AssetKey, asset_check

from finetune_assets.data.validation import describe_failures, schema_failures
from finetune_assets.defs.metadata import to_dagster
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Json, Markdown
from finetune_assets.tasks import get_task
from finetune_assets.tasks.base import TaskFamily

ERROR, WARN = AssetCheckSeverity.ERROR, AssetCheckSeverity.WARN


@dataclass
class Finding:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    asset: str
    severity: Callable[[Recipe], AssetCheckSeverity]
    run: Callable[[Recipe, TaskFamily, ArtifactRef], Finding]
    needs_labels: bool = False  # only where the task's rows carry a class label (TaskFamily.label_names)
    doc: str = ""


def _schema_valid(recipe, task, ref) -> Finding:
    cases = schema_failures(task.schema(), pd.read_parquet(ref.path))
    if cases.empty:
        return Finding(True, "every row satisfies the task's pandera schema")
    sample = cases.head(10)[["column", "check", "index", "failure_case"]].astype(str).to_dict("records")
    return Finding(False, describe_failures(cases),
                   {"failures": len(cases), "failure_sample": Markdown(markdown_table(sample))})


def _duplicate_rate(recipe, task, ref) -> Finding:
    dropped = ref.info.get("dropped", {})
    duplicates = sum(n for reason, n in dropped.items() if "duplicate" in reason)
    rate = duplicates / max(ref.info.get("rows_in", 1), 1)
    limit = recipe.checks.max_duplicate_rate
    return Finding(rate <= limit, f"{rate:.1%} of the rows read were duplicates (limit {limit:.0%})",
                   {"duplicate_rate": rate, "duplicates": duplicates, "limit": limit})


def _class_balance(recipe, task, ref) -> Finding:
    counts = pd.read_parquet(ref.path)["label"].value_counts()
    names = task.label_names()
    ratio = counts.max() / counts.min()
    limit = recipe.checks.max_class_ratio
    return Finding(ratio <= limit, f"largest class / smallest class = {ratio:.2f} (limit {limit})",
                   {"class_ratio": float(ratio), "limit": limit,
                    **{f"rows_{names[i]}": int(n) for i, n in counts.items()}})


def _splits(ref: ArtifactRef):
    from datasets import load_from_disk  # heavy; only when a check runs

    return load_from_disk(ref.path)


def _min_rows_per_split(recipe, task, ref) -> Finding:
    sizes = {name: len(split) for name, split in _splits(ref).items()}
    limit = recipe.checks.min_rows_per_split
    small = [name for name, n in sizes.items() if n < limit]
    text = (f"splits {small} have fewer than {limit} rows; add data or raise splits fractions"
            if small else f"every split has at least {limit} rows")
    return Finding(not small, text, {**{f"rows_{n}": s for n, s in sizes.items()}, "limit": limit})


def _labels_in_every_split(recipe, task, ref) -> Finding:
    names = task.label_names()
    missing = {name: sorted(names[i] for i in set(range(len(names))) - set(split["label"]))
               for name, split in _splits(ref).items()}
    missing = {name: labels for name, labels in missing.items() if labels}
    text = (f"labels missing from splits: {missing}; add rows of those labels or drop them from "
            "dataset.labels" if missing else "every label occurs in every split")
    return Finding(not missing, text, {"missing": Json(missing)})


def _no_leakage(recipe, task, ref) -> Finding:
    """The task says what a row's input is (``TaskFamily.input_keys``: a text, or all the user
    turns of a conversation); an input of validation or test that training also has leaked."""
    splits = _splits(ref)
    column = task.text_columns[0]
    keyed = [column, *task.text_columns[1:], *task.conversation_columns]
    keys = {name: task.input_keys(split.select_columns([c for c in keyed if c in split.column_names]).to_pandas())
            for name, split in splits.items()}
    train = set(keys["train"])
    leaked = {name: [text for text, key in zip(splits[name][column], keys[name]) if key in train]
              for name in ("validation", "test")}
    count = sum(map(len, leaked.values()))
    examples = [{"split": name, column: text[:120]} for name, texts in leaked.items() for text in texts[:3]]
    text = (f"{count} {column} value(s) of validation/test also occur in train (ignoring case and "
            "punctuation); turn on cleaning.drop_near_duplicates" if count else "no train/test overlap")
    return Finding(count == 0, text, {"leaked_rows": count,
                                      "examples": Markdown(markdown_table(examples))})


def _truncation_rate(recipe, task, ref) -> Finding:
    truncated = np.concatenate([np.asarray(split["truncated"]) for split in _splits(ref).values()])
    rate = float(truncated.mean())
    limit = recipe.checks.max_truncation_rate
    return Finding(rate <= limit, f"{rate:.1%} of rows are cut at max_length {recipe.training.max_length} "
                   f"(limit {limit:.0%}); raise training.max_length if that loses content",
                   {"truncation_rate": rate, "limit": limit})


CHECKS = [
    Check("schema_valid", "clean_dataset", lambda r: ERROR, _schema_valid,
          doc="The cleaned rows satisfy the task's pandera schema: column types, non-empty text within the "
              "cleaning length bounds, label ids from dataset.labels. Failing lists column, check and rows; nothing "
              "trains on them. Fix the data or the column and label mapping in the recipe."),
    Check("duplicate_rate", "clean_dataset", lambda r: WARN, _duplicate_rate,
          doc="The share of rows read that were exact, near or conflicting duplicates stays at or below "
              "checks.max_duplicate_rate. Cleaning already dropped them; many duplicates mean the source repeats "
              "itself, so the data is smaller than it looks. Deduplicate the source or raise the limit."),
    Check("class_balance", "clean_dataset", lambda r: WARN, _class_balance, needs_labels=True,
          doc="The largest class has at most checks.max_class_ratio times the rows of the smallest. Failing means "
              "a model can score well by favouring the big class; add rows of the rare labels, drop a label "
              "(dataset.drop_labels) or raise the limit."),
    Check("min_rows_per_split", "tokenized_splits", lambda r: ERROR, _min_rows_per_split,
          doc="Train, validation and test each hold at least checks.min_rows_per_split rows. Failing means a split "
              "is too small to train on or to measure with; add data or change the splits fractions."),
    Check("labels_in_every_split", "tokenized_splits", lambda r: ERROR, _labels_in_every_split,
          needs_labels=True, doc="Every label of dataset.labels occurs in train, validation and test. Failing "
                                 "means a label can be neither learned nor measured; add rows of it or drop it from "
                                 "dataset.labels."),
    Check("no_train_test_leakage", "tokenized_splits",
          lambda r: ERROR if r.checks.leakage == "error" else WARN, _no_leakage,
          doc="No validation or test input also occurs in train (compared ignoring case, punctuation and "
              "spacing). Failing means the test figures reward memorising; turn on cleaning.drop_near_duplicates "
              "(checks.leakage: warn only reports it)."),
    Check("truncation_rate", "tokenized_splits", lambda r: WARN, _truncation_rate,
          doc="At most checks.max_truncation_rate of the rows are longer than training.max_length tokens and cut. "
              "Failing means the model never sees the end of many texts; raise training.max_length if the cut part "
              "matters."),
]


def recipe_checks(recipe: Recipe) -> list[Check]:
    """The checks that apply to the recipe: label checks only where its task's rows carry labels."""
    labelled = bool(get_task(recipe).label_names())
    return [check for check in CHECKS if labelled or not check.needs_labels]


def build_checks(recipe: Recipe) -> list[AssetChecksDefinition]:
    return [_asset_check(recipe, check) for check in recipe_checks(recipe)]


def _asset_check(recipe: Recipe, check: Check) -> AssetChecksDefinition:
    severity = check.severity(recipe)

    @asset_check(asset=AssetKey([recipe.name, check.asset]), name=check.name, blocking=severity == ERROR,
                 description=f"{check.doc} Severity {severity.value}.")
    def _run(context, ref: ArtifactRef) -> AssetCheckResult:
        finding = check.run(recipe, get_task(recipe), ref)
        if not finding.passed:
            log = context.log.error if severity == ERROR else context.log.warning
            log(f"check {check.name} on {recipe.name}/{check.asset} failed: {finding.description}")
        return AssetCheckResult(passed=bool(finding.passed), severity=severity, description=finding.description,
                                metadata=to_dagster({"finding": finding.description, **finding.metadata}))

    return _run
