"""The benchmark scripts work: the cheapest one runs end to end in ``--quick`` mode and ends its
output with its figures. Benchmarks are not timed tests: no figure is compared with a target here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def figures_at_the_end(stdout: str, script: str) -> dict[str, str]:
    """The ``name: value`` lines after the script's figures header, which must close the output."""
    lines = stdout.strip().splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith(f"== figures: {script} (quick;")]
    assert headers, f"no figures header in the output:\n{stdout[-2000:]}"
    block = lines[headers[-1] + 1 :]
    assert block and all(": " in line for line in block), f"figures are not the last lines:\n{block}"
    return dict(line.split(": ", 1) for line in block)


def test_compute_efficiency_quick_prints_its_ratio_last():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "compute_efficiency.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # a hang guard, not a target: two models train, on a machine that may be busy
    assert done.returncode == 0, done.stderr[-3000:]
    figures = figures_at_the_end(done.stdout, "compute_efficiency")
    emulated = "bf16 is emulated" in figures["matmul"]  # a CPU without AVX-512 BF16 or AMX
    peak = {dtype: float(figures[f"matmul_{dtype}_flops_per_s"]) for dtype in ("fp32", "bf16")}
    # Training in bf16 may pass the fp32 peak (up to the bf16 one), never twice the machine's fastest.
    ceiling = {dtype: 2 * max(peak.values()) / peak[dtype] for dtype in peak}
    for dtype in ("fp32", "bf16"):  # training set against both peaks of this machine
        assert peak[dtype] > 0
        if dtype == "bf16" and emulated:
            assert f"ratio_training_to_{dtype}_matmul" not in figures
        else:
            assert 0 < float(figures[f"ratio_training_to_{dtype}_matmul"]) < ceiling[dtype]
    assert float(figures["training_flops_per_s"]) > 0
    ratio = float(figures["training_flops_per_s"]) / float(figures["matmul_fp32_flops_per_s"])
    assert float(figures["ratio_training_to_fp32_matmul"]) == pytest.approx(ratio, abs=0.001)
    assert int(figures["non_embedding_parameters"]) < 22_713_986  # MiniLM's total: embeddings left out
    assert figures["cpu"] and "SmolLM2-135M LoRA" in figures["causal_lm_training"]
    for prefix in ("", "causal_lm_"):  # the classification and the causal-LM recipe, side by side
        assert 0 < float(figures[f"{prefix}ratio_training_to_fp32_matmul"]) < ceiling["fp32"]
        assert (f"{prefix}ratio_training_to_bf16_matmul" in figures) is not emulated
        fused, plain = (float(figures[f"{prefix}step_seconds_{kind}_adamw"]) for kind in ("fused", "plain"))
        assert min(fused, plain) > 0
    # the profiled MiniLM step (on a CPU: the profiler counts CPU time): op groups' shares of its wall
    # time, the time outside the ops last; the bf16 profile and its Amdahl bound where bf16 is native
    on_cpu = "== figures: compute_efficiency (quick; cpu:" in done.stdout  # the header names the device
    for precision in ("fp32", "bf16"):
        profiled = on_cpu and (precision == "fp32" or not emulated)
        assert (f"step_time_shares_{precision}" in figures) is profiled
    assert ("best_step_time_ratio_if_only_matmuls_sped_up" in figures) is (on_cpu and not emulated)
    if on_cpu:
        shares = dict(part.rsplit(" ", 1) for part in figures["step_time_shares_fp32"].split(", "))
        names = list(shares)
        assert names[0] == "matrix products" and names[-1] == "outside the ops"
        assert all(0 <= float(share) < 1 for name, share in shares.items() if name != "outside the ops")
        assert 0 < float(figures["ratio_model_matmuls_to_fp32_matmul"]) < 2
    # LoRA's frozen base counted at 4 FLOPs a parameter a token, its LM head only where logits are
    # computed (the answers: under half of ChatterBot's tokens): the figure follows from the others
    share = float(figures["causal_lm_share_of_tokens_with_logits"])
    assert 0 < share < 0.5
    counted = int(figures["causal_lm_counted_parameters"]) + share * int(figures["causal_lm_head_parameters"])
    lora = 4 * counted * float(figures["causal_lm_training_tokens_per_s"])
    assert float(figures["causal_lm_training_flops_per_s"]) == pytest.approx(lora, rel=0.02)  # tokens/s rounded
    every_logit, targets_only = (
        float(figures[f"causal_lm_step_seconds_{kind}"]) for kind in ("every_logit", "fused_adamw")
    )
    assert float(figures["causal_lm_ratio_step_targets_only_to_every_logit"]) == pytest.approx(
        targets_only / every_logit, abs=0.001
    )
