"""The benchmark command runs, leaves its results folder, and its figures join only controlled sweeps.

Speed is never asserted here (numbers are measured in bench/, side by side); this checks the
harness: --self-test puts nn.RNN on both sides, so it needs no particular speed.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from rnnbench.plot import sweeps  # noqa: E402


@pytest.mark.slow
def test_bench_writes_results_folder(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_rnn.py"), "--device", "cpu", "--self-test",
           "--shapes", "1,8,20", "1,16,20", "2,16,20", "--reps", "2", "--warmup", "0",
           "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.md", "results.csv", "results.json", "speedup.png", "memory.png"):
        assert (out / name).stat().st_size > 100, name
        assert str(out / name) in proc.stdout          # it says where
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6                               # 3 shapes x (fwd, fwd+bwd)
    for r in rows:
        assert r["acc"] == "ok"
        if r["mode"] == "fwd+bwd":   # nn.RNN on both sides: the same bytes saved for backward
            assert float(r["fused_saved_mb"]) > 0 and r["fused_saved_mb"] == r["ref_saved_mb"]
    report = (out / "report.md").read_text()
    assert "## Memory" in report and "![speedup](speedup.png)" in report


@pytest.mark.slow
def test_no_save_writes_nothing(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "bench_rnn.py"), "--device", "cpu", "--self-test",
           "--shapes", "1,8,10", "--reps", "1", "--warmup", "0", "--no-save", "--no-memory"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote:" not in proc.stdout and not list(tmp_path.iterdir())


def row(B, H, T, x, I=None, dtype="fp32", mode="fwd"):
    return dict(B=B, H=H, T=T, I=H if I is None else I, L=1, dir="uni", dtype=dtype, mode=mode, x_ref=x)


def test_sweeps_vary_one_dimension_only():
    rows = [row(1, 32, 1000, 5.0), row(1, 64, 1000, 4.0), row(1, 256, 1000, 2.0),   # H at B=1, T=1000
            row(8, 64, 1000, 3.0),                                                  # B=8: alone in H
            row(64, 256, 300, 1.2), row(256, 1024, 20, 1.0),                        # no sweep
            row(1, 64, 1000, 9.0, dtype="bf16")]                                    # other dtype
    by_h = sweeps(rows, "fwd", "H", "x_ref")
    assert len(by_h) == 1
    fixed, pts = by_h[0]
    assert dict(fixed)["B"] == 1 and dict(fixed)["T"] == 1000 and dict(fixed)["dtype"] == "fp32"
    assert pts == [(32, 5.0), (64, 4.0), (256, 2.0)]
    by_b = sweeps(rows, "fwd", "B", "x_ref")
    assert [p for _, p in by_b] == [[(1, 4.0), (8, 3.0)]]      # H=64, T=1000, fp32 only
    assert sweeps(rows, "fwd", "T", "x_ref") == []
    assert sweeps(rows, "fwd+bwd", "H", "x_ref") == []


@pytest.mark.slow
def test_stepping_bench_runs_and_checks_answers(tmp_path):
    """bench_stepping.py: every row runs, its answers agree with nn's, and the report is written."""
    report = tmp_path / "stepping.md"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_stepping.py"), "--reps", "1", "--steps", "2",
           "--warmup", "0", "--report", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert "- cpu_isa: " in text and "- device: cpu" in text
    n = text.count("| FusedRNN vs nn.RNN |") + text.count("| FusedRNNCell vs nn.RNNCell |")
    assert n == 44                                      # 22 rows x (fwd, fwd+bwd)
    assert f"answers: {n}/{n} rows agree" in text
