"""``python -m finetune_assets.show <recipe>``: where a recipe's report and exported model are."""

from __future__ import annotations

import json
import sys

from finetune_assets.pipeline.artifacts import ArtifactRef, default_artifacts_root


def main(recipe: str) -> int:
    refs = default_artifacts_root() / "refs" / recipe
    report, export = refs / "evaluation_report.json", refs / "exported_model.json"
    if not export.exists():
        print(f"{recipe}: no exported model yet under {refs}; materialize the group first")
        return 1
    metrics = ArtifactRef.from_json(report.read_text()).info["metrics"]
    print(f"evaluation report: {ArtifactRef.from_json(report.read_text()).path}")
    print(f"exported model:    {ArtifactRef.from_json(export.read_text()).path}")
    print("test metrics:      " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tweet_sentiment"))
