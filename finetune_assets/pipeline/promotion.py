"""The promotion gate: a new export replaces the current one only if it is measurably better.

Every export is written to its own fingerprinted folder and stays on disk. The *champion* is the
one users get: ``<recipe>/exported_model/champion.json`` names it and the ``current`` link points
to it. A challenger becomes champion when its primary metric beats the champion's by at least
``promotion.min_improvement`` (direction from the task: accuracy up, perplexity down). Every
decision is appended to ``evaluation_history.jsonl``, shown as a table and a plot.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from finetune_assets.pipeline.artifacts import ArtifactRef
from finetune_assets.recipes import Recipe
from finetune_assets.report.tables import markdown_table
from finetune_assets.report.values import FilePath, Markdown
from finetune_assets.tasks import get_task


@dataclass(frozen=True)
class Rule:
    metric: str
    higher_is_better: bool
    min_improvement: float

    def beats(self, challenger: float, champion: float) -> bool:
        gain = challenger - champion if self.higher_is_better else champion - challenger
        return gain > 0 and gain >= self.min_improvement


def gate(recipe: Recipe, root: Path, log, challenger: ArtifactRef) -> tuple[ArtifactRef, dict]:
    """The gate with the recipe's rule (``promotion:``, else the task's primary metric and direction)."""
    task = get_task(recipe.task)
    spec = recipe.promotion
    rule = Rule(metric=spec.metric or task.primary_metric,
                higher_is_better=task.primary_metric_higher_is_better if spec.higher_is_better is None
                else spec.higher_is_better,
                min_improvement=spec.min_improvement)
    return decide(challenger, root / recipe.name / "exported_model", rule, log)


def decide(challenger: ArtifactRef, exports_dir: Path, rule: Rule, log) -> tuple[ArtifactRef, dict]:
    """Promote or keep; return the champion's ref and the metadata that explains the decision."""
    champion_file = exports_dir / "champion.json"
    champion = _read_champion(champion_file)
    value = float(challenger.info["metrics"][rule.metric])
    if champion is None:
        decision = "promoted (first export)"
    elif champion.fingerprint == challenger.fingerprint:
        decision = "already champion"
    elif rule.beats(value, float(champion.info["metrics"][rule.metric])):
        decision = "promoted"
    else:
        decision = "kept champion"
    previous = champion
    if decision.startswith("promoted"):
        _write_champion(champion_file, challenger)
        _point_current(exports_dir, Path(challenger.path))
        champion = challenger
    champion_value = float(champion.info["metrics"][rule.metric])
    entry = None if decision == "already champion" else {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"), "fingerprint": challenger.fingerprint,
        rule.metric: round(value, 6), "decision": decision}
    history = _history(exports_dir / "evaluation_history.jsonl", entry)
    log.info(f"promotion gate: {decision}; challenger {rule.metric}={value:.4f}, "
             f"champion {rule.metric}={champion_value:.4f}")
    from finetune_assets.report import plots  # matplotlib: only when a decision is drawn

    plot = plots.metric_history(history, rule.metric, exports_dir / "evaluation_history.png")
    return champion, {
        "decision": decision,
        "path": FilePath(champion.path),
        "challenger_path": FilePath(challenger.path),
        "previous_champion_path": FilePath(previous.path if previous else "none"),
        f"challenger_{rule.metric}": value,
        f"champion_{rule.metric}": champion_value,
        "min_improvement": rule.min_improvement,
        "evaluation_history": Markdown(markdown_table(history[-20:])),
        "evaluation_history_plot": plots.as_markdown(plot, "evaluation history"),
    }


def _read_champion(path: Path) -> ArtifactRef | None:
    if not path.exists():
        return None
    champion = ArtifactRef.from_json(path.read_text())
    return champion if Path(champion.path).exists() else None


def _write_champion(path: Path, ref: ArtifactRef) -> None:
    staging = path.with_suffix(".json.tmp")
    staging.write_text(ref.to_json())
    staging.replace(path)


def _point_current(exports_dir: Path, target: Path) -> None:
    """Swap the ``current`` link in one rename, so readers see the old or the new export, never none."""
    link = exports_dir / "current"
    staging = exports_dir / ".current.tmp"
    staging.unlink(missing_ok=True)
    os.symlink(target.name, staging)
    staging.replace(link)


def _history(path: Path, entry: dict | None) -> list[dict]:
    """Every evaluation that went through the gate, after appending ``entry`` if given."""
    if entry is not None:
        with path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
