"""The project's metric modules load by local path with the hub switched off, from a fresh modules
cache (``evaluate`` copies each script there and imports the copy), and compute what scikit-learn,
rouge-score and sacreBLEU compute on the same hand-made inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import f1_score, precision_score, recall_score

LABELS = [0, 1, 2, 3]  # label 3 never occurs: it still gets its row, column and zeros
CASES = {
    "classification": {"predictions": [0, 2, 1, 1, 0, 2], "references": [0, 1, 1, 1, 2, 2], "num_labels": 4},
    "rouge": {
        "predictions": ["It sleeps. The cats are sitting on the mat.", "a quick brown fox"],
        "references": ["the cat sat on the mat. It sleeps!", "the quick brown dog jumps"],
    },
    "bleu": {
        "predictions": ["the cat sat on the mat today", "a quick brown fox jumps over the lazy dog"],
        "references": ["the cat sat on the mat", "the quick brown fox jumps over the lazy dog"],
    },
}
# ROUGE-Lsum wants one sentence per line: the same texts, split by hand (the sentences in another order
# make ROUGE-Lsum differ from ROUGE-L, so a metric that skipped the split would fail)
ROUGE_LINES = {
    "predictions": ["It sleeps.\nThe cats are sitting on the mat.", "a quick brown fox"],
    "references": ["the cat sat on the mat.\nIt sleeps!", "the quick brown dog jumps"],
}

LOAD_ALL = """
import json, sys
from finetune_assets.metrics import load_metric
cases = json.loads(sys.argv[1])
out = {}
for name, kwargs in cases.items():
    metric = load_metric(name)
    out[name] = {"scores": metric.compute(**kwargs), "module": type(metric).__module__}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def offline_scores(tmp_path_factory) -> dict:
    """Each metric computed in a fresh process with the hub off and empty caches."""
    home = tmp_path_factory.mktemp("hf_home")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(home),
        "HF_MODULES_CACHE": str(home / "modules"),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, json.dumps(CASES)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert list((home / "modules").rglob("classification.py")), "evaluate did not load through its modules cache"
    return out


def _classification() -> dict:
    case = CASES["classification"]
    truth, predicted = case["references"], case["predictions"]
    confusion = [
        [sum(t == row and p == column for t, p in zip(truth, predicted)) for column in LABELS] for row in LABELS
    ]
    averaged = {"labels": LABELS, "average": "macro", "zero_division": 0}
    return {
        "accuracy": sum(t == p for t, p in zip(truth, predicted)) / len(truth),
        "precision_macro": precision_score(truth, predicted, **averaged),
        "recall_macro": recall_score(truth, predicted, **averaged),
        "f1_macro": f1_score(truth, predicted, **averaged),
        "f1": list(f1_score(truth, predicted, labels=LABELS, average=None, zero_division=0)),
        "support": [truth.count(label) for label in LABELS],
        "confusion_matrix": confusion,
    }


def _rouge() -> dict:
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    pairs = list(zip(ROUGE_LINES["references"], ROUGE_LINES["predictions"]))
    return {name: sum(scorer.score(ref, pred)[name].fmeasure for ref, pred in pairs) / len(pairs) for name in types}


def _bleu() -> dict:
    case = CASES["bleu"]
    return {"bleu": sacrebleu.metrics.BLEU().corpus_score(case["predictions"], [case["references"]]).score}


@pytest.mark.parametrize("name, expected", [("classification", _classification), ("rouge", _rouge), ("bleu", _bleu)])
def test_metric_loads_offline_and_computes_the_reference_figures(offline_scores, name, expected):
    got = offline_scores[name]
    assert got["module"].startswith("evaluate_modules."), got["module"]  # the cached copy ran, not the package file
    for key, value in expected().items():
        exact = key == "confusion_matrix"  # counts, and approx takes no nested lists
        assert got["scores"][key] == (value if exact else pytest.approx(value)), key
