"""The data checks: are the rows fit to train on? Judged by Dagster after ``clean_dataset`` and
``tokenized_splits`` materialized, from the artifact and the recipe's ``checks:`` thresholds.

An ERROR check that fails stops the run before ``finetuned_model`` starts; a WARN check shows in
the UI without stopping anything (the promotion gate still refuses an export made from data that
failed one, unless ``promotion.allow_warnings``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune_assets.checks.declaration import Check, Outcome, Severity, always, has_labels
from finetune_assets.data.validation import describe_failures, schema_failures
from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.pipeline.stage_names import CLEAN_DATASET, TOKENIZED_SPLITS
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import Json, Markdown
from finetune_assets.tasks import get_task


def schema_valid(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    schema = get_task(recipe).schema()
    cases = schema_failures(schema, pd.read_parquet(ref.path))
    if cases.empty:
        return Outcome(True, "every row satisfies the task's pandera schema")
    sample = cases.head(10)[["column", "check", "index", "failure_case"]].astype(str).to_dict("records")
    return Outcome(
        False, describe_failures(cases), {"failures": len(cases), "failure_sample": Markdown(markdown_table(sample))}
    )


def duplicate_rate(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    dropped = ref.info.get("dropped", {})
    duplicates = sum(n for reason, n in dropped.items() if "duplicate" in reason)
    rate = duplicates / max(ref.info.get("rows_in", 1), 1)
    limit = recipe.checks.max_duplicate_rate
    return Outcome(
        rate <= limit,
        f"{rate:.1%} of the rows read were duplicates (limit {limit:.0%})",
        {"duplicate_rate": rate, "duplicates": duplicates, "limit": limit},
    )


def class_balance(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    names = get_task(recipe).label_names()
    counts = pd.read_parquet(ref.path)["label"].value_counts()
    ratio = counts.max() / counts.min()
    limit = recipe.checks.max_class_ratio
    return Outcome(
        ratio <= limit,
        f"largest class / smallest class = {ratio:.2f} (limit {limit})",
        {"class_ratio": float(ratio), "limit": limit, **{f"rows_{names[i]}": int(n) for i, n in counts.items()}},
    )


def length_bias(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """Preference pairs whose chosen answer is longer than the rejected one: if nearly all are, the
    model can learn that longer is better instead of what makes the chosen answer better."""
    from finetune_assets.tasks.preference.task import chosen_longer_share

    rows = pd.read_parquet(ref.path)
    pairs = rows[rows["paired"]]
    share = chosen_longer_share(pairs) if len(pairs) else 0.0
    limit = recipe.checks.max_chosen_longer_share
    return Outcome(
        share <= limit,
        f"the chosen answer is the longer one in {share:.1%} of {len(pairs)} pairs (limit {limit:.0%})",
        {"chosen_longer_share": share, "pairs": len(pairs), "limit": limit},
    )


def is_preference(recipe: Recipe) -> bool:
    return recipe.task == "preference"


def _splits(ref: ArtifactRef):
    from datasets import load_from_disk  # heavy; only when a check runs

    return load_from_disk(ref.path)


def min_rows_per_split(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    sizes = {name: len(split) for name, split in _splits(ref).items()}
    limit = recipe.checks.min_rows_per_split
    small = [name for name, n in sizes.items() if n < limit]
    text = (
        f"splits {small} have fewer than {limit} rows; add data or raise splits fractions"
        if small
        else f"every split has at least {limit} rows"
    )
    return Outcome(not small, text, {**{f"rows_{n}": s for n, s in sizes.items()}, "limit": limit})


def labels_in_every_split(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    names = get_task(recipe).label_names()
    missing = {
        name: sorted(names[i] for i in set(range(len(names))) - set(split["label"]))
        for name, split in _splits(ref).items()
    }
    missing = {name: labels for name, labels in missing.items() if labels}
    text = (
        f"labels missing from splits: {missing}; add rows of those labels or drop them from dataset.labels"
        if missing
        else "every label occurs in every split"
    )
    return Outcome(not missing, text, {"missing": Json(missing)})


def no_train_test_leakage(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    """The task says what a row's input is (``TaskFamily.input_keys``: a text, or all the user
    turns of a conversation); an input of validation or test that training also has leaked."""
    task = get_task(recipe)
    splits = _splits(ref)
    column = task.text_columns[0]
    keyed = [column, *task.text_columns[1:], *task.conversation_columns]
    keys = {
        name: task.input_keys(split.select_columns([c for c in keyed if c in split.column_names]).to_pandas())
        for name, split in splits.items()
    }
    train = set(keys["train"])
    leaked = {
        name: [text for text, key in zip(splits[name][column], keys[name]) if key in train]
        for name in ("validation", "test")
    }
    count = sum(map(len, leaked.values()))
    examples = [{"split": name, column: text[:120]} for name, texts in leaked.items() for text in texts[:3]]
    text = (
        f"{count} {column} value(s) of validation/test also occur in train (ignoring case and "
        "punctuation); turn on cleaning.drop_near_duplicates"
        if count
        else "no train/test overlap"
    )
    return Outcome(count == 0, text, {"leaked_rows": count, "examples": Markdown(markdown_table(examples))})


def truncation_rate(recipe: Recipe, ref: ArtifactRef) -> Outcome:
    truncated = np.concatenate([np.asarray(split["truncated"]) for split in _splits(ref).values()])
    rate = float(truncated.mean())
    limit = recipe.checks.max_truncation_rate
    return Outcome(
        rate <= limit,
        f"{rate:.1%} of rows are cut at max_length {recipe.training.max_length} "
        f"(limit {limit:.0%}); raise training.max_length if that loses content",
        {"truncation_rate": rate, "limit": limit},
    )


def leakage_severity(recipe: Recipe) -> Severity:
    return Severity.ERROR if recipe.checks.leakage == "error" else Severity.WARN


DATA_CHECKS = (
    Check(
        "schema_valid",
        CLEAN_DATASET,
        "The cleaned rows satisfy the task's pandera schema: column types, non-empty text within the cleaning "
        "length bounds, label ids from dataset.labels. Failing lists column, check and rows; nothing trains on "
        "them. Fix the data or the column and label mapping in the recipe.",
        schema_valid,
    ),
    Check(
        "duplicate_rate",
        CLEAN_DATASET,
        "The share of rows read that were exact, near or conflicting duplicates stays at or below "
        "checks.max_duplicate_rate. Cleaning already dropped them; many duplicates mean the source repeats "
        "itself, so the data is smaller than it looks. Deduplicate the source or raise the limit.",
        duplicate_rate,
        always(Severity.WARN),
    ),
    Check(
        "class_balance",
        CLEAN_DATASET,
        "The largest class has at most checks.max_class_ratio times the rows of the smallest. Failing means a "
        "model can score well by favouring the big class; add rows of the rare labels, drop a label "
        "(dataset.drop_labels) or raise the limit.",
        class_balance,
        always(Severity.WARN),
        has_labels,
    ),
    Check(
        "length_bias",
        CLEAN_DATASET,
        "Preference pairs: the chosen answer is the longer one in at most checks.max_chosen_longer_share of "
        "the pairs. Failing means length alone separates chosen from rejected, so the model may learn to "
        "answer at length rather than well; add pairs whose better answer is the shorter one, or raise the "
        "limit if length is what you prefer.",
        length_bias,
        always(Severity.WARN),
        is_preference,
    ),
    Check(
        "min_rows_per_split",
        TOKENIZED_SPLITS,
        "Train, validation and test each hold at least checks.min_rows_per_split rows. Failing means a split is "
        "too small to train on or to measure with; add data or change the splits fractions.",
        min_rows_per_split,
    ),
    Check(
        "labels_in_every_split",
        TOKENIZED_SPLITS,
        "Every label of dataset.labels occurs in train, validation and test. Failing means a label can be neither "
        "learned nor measured; add rows of it or drop it from dataset.labels.",
        labels_in_every_split,
        applies=has_labels,
    ),
    Check(
        "no_train_test_leakage",
        TOKENIZED_SPLITS,
        "No validation or test input also occurs in train (compared ignoring case, punctuation and spacing). "
        "Failing means the test figures reward memorising; turn on cleaning.drop_near_duplicates "
        "(checks.leakage: warn only reports it).",
        no_train_test_leakage,
        leakage_severity,
    ),
    Check(
        "truncation_rate",
        TOKENIZED_SPLITS,
        "At most checks.max_truncation_rate of the rows are longer than training.max_length tokens and cut. "
        "Failing means the model never sees the end of many texts; raise training.max_length if the cut part "
        "matters.",
        truncation_rate,
        always(Severity.WARN),
    ),
)
