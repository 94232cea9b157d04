"""The examples run, show that nn.RNN and FusedRNN agree, write their PNG, and train both along the
same loss trajectory.

Each example runs as a script (a subprocess, as a user would run it) in --quick mode: its agreement
check (same weights, same batch: outputs and every gradient) and a few training steps. Over a short
horizon the two models' per-step losses agree to float32 rounding; over hundreds of steps rounding
differences are amplified by training itself (the examples' control, nn.RNN from weights nudged by
1 ulp, drifts from nn.RNN the same way), so the check stays within the first steps.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sine_to_cosine.py", "sequence_classifier.py"])
def test_example_agrees_runs_and_curves_match(script, tmp_path):
    png, log = tmp_path / "curves.png", tmp_path / "curves.json"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--quick", "--out", str(png), "--log", str(log)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    out = proc.stdout
    assert "nn.RNN" in out and "FusedRNN" in out and "nn.RNN, 1 ulp" in out

    report = json.loads(log.read_text())
    # the agreement check: same weights, same batch -> outputs and every gradient within rounding
    agreement = report["agreement"]
    assert "Agreement check" in out and "they agree to float rounding" in out
    assert agreement["ok"] is True
    assert agreement["n_grads"] >= 4                       # the RNN's four tensors and the head's
    assert 0 <= agreement["out_diff"] <= 1e-5 * max(1.0, agreement["out_scale"])
    assert 0 <= agreement["grad_diff"] <= 1e-5 * max(1.0, agreement["grad_scale"])
    assert f"{agreement['out_diff']:.2e}" in out             # the max difference is printed
    assert agreement["out_scale"] > 0.1 and agreement["grad_scale"] > 1e-3   # not a check on zeros

    curves = report["losses"]
    ref, ours, control = curves["nn.RNN"], curves["FusedRNN"], curves["nn.RNN, 1 ulp"]
    steps = 30                                             # --quick
    assert len(ref) == len(ours) == len(control) == steps
    for step, (a, b) in enumerate(zip(ref, ours)):
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-7, f"step {step}: nn.RNN {a} vs FusedRNN {b}"
    assert min(ref) < ref[0]  # and it is training: the loss came down


def test_agreement_check_catches_a_difference(monkeypatch):
    """The examples' agreement check fails for two models that really differ (same weights,
    another nonlinearity) and passes for nn.RNN against FusedRNN."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import torch
    from _common import check_agreement

    from rnnfused import FusedRNN

    torch.manual_seed(0)
    ref = torch.nn.RNN(3, 8, num_layers=2)
    other = torch.nn.RNN(3, 8, num_layers=2, nonlinearity="relu")
    other.load_state_dict(ref.state_dict())
    fused = FusedRNN(3, 8, num_layers=2)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(11, 4, 3)

    def run(model):
        out, h = model(x)
        return (out, h), out.square().mean() + h.sum()

    bad = check_agreement(ref, other, run)
    assert not bad["ok"] and bad["out_diff"] > 1e-3
    good = check_agreement(ref, fused, run)
    assert good["ok"] and good["n_grads"] == 8
