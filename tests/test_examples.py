"""The examples run, write their PNG, and train nn.RNN and FusedRNN along the same loss trajectory.

Each example runs as a script (a subprocess, as a user would run it) for a few steps. Over a short
horizon the two models' per-step losses agree to float32 rounding; over hundreds of steps rounding
differences are amplified by training itself (nn.RNN run with 1 and 2 threads drifts apart the same
way), so the check stays within the first steps.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script, steps", [("sine_to_cosine.py", 40), ("sequence_classifier.py", 30)])
def test_example_runs_and_curves_match(script, steps, tmp_path):
    png, log = tmp_path / "curves.png", tmp_path / "curves.json"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--steps", str(steps), "--out", str(png), "--log", str(log)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert "nn.RNN" in proc.stdout and "FusedRNN" in proc.stdout and "final loss" in proc.stdout

    curves = json.loads(log.read_text())
    ref, ours = curves["nn.RNN"], curves["FusedRNN"]
    assert len(ref) == len(ours) == steps
    for step, (a, b) in enumerate(zip(ref, ours)):
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-7, f"step {step}: nn.RNN {a} vs FusedRNN {b}"
    assert min(ref) < ref[0]  # and it is training: the loss came down
