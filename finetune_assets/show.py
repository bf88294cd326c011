"""``python -m finetune_assets.show <recipe>``: the latest evaluation, the gate's decision, the champion.

Exits 1 only when the recipe has no evaluation report yet or its champion file cannot be read; a
challenger that was not promoted (for example a CI run with overrides) is shown with the gate's
reason and exits 0.
"""

from __future__ import annotations

import json
import sys

from finetune_assets.errors import PromotionError
from finetune_assets.pipeline import champion as champion_store
from finetune_assets.pipeline.artifacts import ArtifactRef, default_artifacts_root


def main(recipe: str) -> int:
    root = default_artifacts_root()
    report_ref = root / "refs" / recipe / "evaluation_report.json"
    if not report_ref.exists():
        print(f"{recipe}: no evaluation report yet under {report_ref.parent}; materialize the group first")
        return 1
    report = ArtifactRef.from_json(report_ref.read_text())
    print(f"evaluation report: {report.path}")
    print("test metrics:      " + json.dumps({k: round(v, 4) for k, v in report.info["metrics"].items()})
          + (f" on {report.info['test_rows']} rows" if "test_rows" in report.info else ""))
    exports = champion_store.exports_dir(root, recipe)
    history = champion_store.history(exports)
    if history:
        latest = history[-1]
        print(f"latest export:     {exports / latest['fingerprint']}")
        print(f"gate decision:     {latest['decision']}")
    try:
        champion = champion_store.read(exports)
    except PromotionError as exc:
        print(f"champion:          unreadable: {exc}")
        return 1
    print(f"champion:          {champion.path if champion else 'none yet (no export has passed the gate)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tweet_sentiment"))
