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


class _Con:
    def __init__(self, key, label):
        self.key, self.label = key, label


def _figures(monkeypatch, tmp_path, rows, contenders):
    """Draw both figures from rows; returns {"speedup": Figure, "memory": Figure} (kept open)."""
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rnnbench import plot
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    info = {"device": "cpu (test)", "threads": 1, "torch": "x"}
    assert plot.write_plot(str(tmp_path / "s.png"), info, rows, contenders)
    assert plot.write_memory_plot(str(tmp_path / "m.png"), info, rows, contenders)
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "m.png").stat().st_size > 1000
    return dict(zip(("speedup", "memory"), kept))


def test_figures_show_every_contender_on_one_meaning_per_panel(monkeypatch, tmp_path):
    cons = [_Con("fused", "fused"), _Con("ref", "native"), _Con("ort", "onnxruntime")]
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        for H in (32, 64, 128, 256, 512):
            r = row(1, H, 1000, 40.0 / H ** 0.5, mode=mode)
            r.update(x_ref_q1=r["x_ref"] * 0.9, x_ref_q3=r["x_ref"] * 1.1)
            if mode == "fwd+bwd":
                r.update(fused_saved_mb=H / 10, ref_saved_mb=H / 10)    # equal bytes: the lines coincide
            else:
                r.update(x_ort=2.0, x_ort_q1=1.8, x_ort_q3=2.3)
            rows.append(r)
    figs = _figures(monkeypatch, tmp_path, rows, cons)

    panels = [ax for ax in figs["speedup"].axes if ax.get_visible() and ax.lines]
    assert len(panels) == 3            # (nn.RNN: fwd, fwd+bwd) + (onnxruntime: fwd), along H
    for ax in panels:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(labels) == 1
        other = "nn.RNN (native)" if "nn.RNN" in labels[0] else "onnxruntime"
        assert labels[0] == f"FusedRNN vs {other}"
        assert other in ax.get_ylabel() and other in ax.get_title()   # the y meaning names its contender
        assert ax.get_yscale() == "log"
        assert ax.collections, "no spread band"                    # interquartile range drawn
        ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert ticks and all("\\times" not in t and "^" not in t for t in ticks), ticks
        line = [ln for ln in ax.lines if ln.get_label() == labels[0]][0]
        assert len(line.get_xdata()) == 5

    mem = [ax for ax in figs["memory"].axes if ax.lines]
    assert len(mem) == 1               # fwd+bwd along H (the forward saves nothing)
    lines = {ln.get_label(): ln for ln in mem[0].lines}
    fused, ref = lines["FusedRNN"], lines["nn.RNN (native)"]
    assert list(fused.get_ydata()) == list(ref.get_ydata())        # they coincide, and yet:
    assert fused.get_color() != ref.get_color()
    assert fused.get_linestyle() != ref.get_linestyle()
    assert ref.get_markersize() > fused.get_markersize() and ref.get_markerfacecolor() == "none"
    assert ref.get_zorder() < fused.get_zorder()                   # the larger hollow markers sit under


def test_quick_presets_sweep_five_points():
    from rnnbench.config import preset
    from rnnbench.plot import AXES
    for device in ("cpu", "cuda"):
        rows = [dict(B=c.B, H=c.H, T=c.T, I=c.I, L=c.layers, dir="uni", dtype=str(c.dtype), mode="fwd", x=1.0)
                for c in preset(device, False)]
        found = [pts for var in AXES for _, pts in sweeps(rows, "fwd", var, "x")]
        assert found and all(len(p) >= 5 for p in found), (device, [len(p) for p in found])
