"""The benchmark command runs, leaves its results folder, and its figures join only controlled sweeps.

Speed is never asserted here (numbers are measured in bench/, side by side); this checks the
harness: --self-test puts nn.RNN (nn.LSTM with --cell lstm) on both sides, so it needs no
particular speed.
"""
import csv
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from rnnbench.cells import CELLS  # noqa: E402
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


def _figures(monkeypatch, tmp_path, rows, contenders, cell=CELLS["rnn"]):
    """Draw both figures from rows; returns {"speedup": Figure, "memory": Figure} (kept open)."""
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rnnbench import plot
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    info = {"device": "cpu (test)", "threads": 1, "torch": "x"}
    assert plot.write_plot(str(tmp_path / "s.png"), info, rows, contenders, cell)
    assert plot.write_memory_plot(str(tmp_path / "m.png"), info, rows, contenders, cell)
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "m.png").stat().st_size > 1000
    return dict(zip(("speedup", "memory"), kept))


@pytest.mark.parametrize("cell, ref_name", [("rnn", "nn.RNN (native)"), ("lstm", "nn.LSTM")])
def test_figures_show_every_contender_on_one_meaning_per_panel(monkeypatch, tmp_path, cell, ref_name):
    cell = CELLS[cell]
    cons = [_Con("fused", "fused"), _Con("ref", cell.ref_label["cpu"]), _Con("ort", "onnxruntime")]
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
    figs = _figures(monkeypatch, tmp_path, rows, cons, cell)
    assert f"> 1: {cell.fused_name} faster" in figs["speedup"]._suptitle.get_text()

    panels = [ax for ax in figs["speedup"].axes if ax.get_visible() and ax.lines]
    assert len(panels) == 3            # (nn.RNN: fwd, fwd+bwd) + (onnxruntime: fwd), along H
    for ax in panels:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(labels) == 1
        other = ref_name if cell.torch_name in labels[0] else "onnxruntime"
        assert labels[0] == f"{cell.fused_name} vs {other}"
        assert other in ax.get_ylabel() and other in ax.get_title()   # the y meaning names its contender
        assert f"({other} time / {cell.fused_name} time)" in ax.get_ylabel()
        assert ax.get_yscale() == "log"
        assert ax.collections, "no spread band"                    # interquartile range drawn
        ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert ticks and all("\\times" not in t and "^" not in t for t in ticks), ticks
        line = [ln for ln in ax.lines if ln.get_label() == labels[0]][0]
        assert len(line.get_xdata()) == 5

    mem = [ax for ax in figs["memory"].axes if ax.lines]
    assert len(mem) == 1               # fwd+bwd along H (the forward saves nothing)
    lines = {ln.get_label(): ln for ln in mem[0].lines}
    fused, ref = lines[cell.fused_name], lines[ref_name]
    assert list(fused.get_ydata()) == list(ref.get_ydata())        # they coincide, and yet:
    assert fused.get_color() != ref.get_color()
    assert fused.get_linestyle() != ref.get_linestyle()
    assert ref.get_markersize() > fused.get_markersize() and ref.get_markerfacecolor() == "none"
    assert ref.get_zorder() < fused.get_zorder()                   # the larger hollow markers sit under


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_quick_presets_sweep_five_points(cell):
    from rnnbench.config import preset
    from rnnbench.plot import AXES
    from rnnbench.targets import cpu_target_shapes
    for device in ("cpu", "cuda"):
        configs = preset(device, False, cell)
        rows = [dict(B=c.B, H=c.H, T=c.T, I=c.I, L=c.layers, dir="uni", dtype=str(c.dtype), mode="fwd", x=1.0)
                for c in configs]
        found = [pts for var in AXES for _, pts in sweeps(rows, "fwd", var, "x")]
        assert found and all(len(p) >= 5 for p in found), (device, [len(p) for p in found])
    shapes = {(c.B, c.H, c.T) for c in preset("cpu", False, cell)}
    assert set(cpu_target_shapes(cell)) <= shapes          # the cell's own target shapes


def test_targets_per_cell():
    """The RNN's targets as they were (issue 11), the LSTM's from issue 17, each under its cell."""
    from rnnbench.targets import TARGETS, cpu_target_shapes

    def table(cell):
        return {(t.where, t.mode, t.metric): (t.bound, t.label) for t in TARGETS[cell] if t.device == "cpu"}
    assert cpu_target_shapes("rnn") == [(1, 32, 1000), (8, 64, 1000), (1, 256, 1000), (64, 256, 300), (256, 1024, 20)]
    assert cpu_target_shapes("lstm") == [(1, 64, 1000), (8, 128, 500), (1, 256, 500), (64, 256, 200), (256, 512, 20)]
    rnn, lstm = table("rnn"), table("lstm")
    assert rnn[((1, 32, 1000), "fwd", "x_ref")] == (15, ">=15x nn.RNN")
    assert rnn[((1, 32, 1000), "fwd", "x_ort")] == (2.5, ">=2.5x ORT")
    assert len(rnn) == len(lstm) == 15                     # 5 shapes x (fwd, fwd+bwd vs nn; fwd vs ORT)
    assert lstm[((1, 64, 1000), "fwd", "x_ref")] == (2.0, ">=2x nn.LSTM")
    assert lstm[((1, 64, 1000), "fwdbwd", "x_ref")][0] == 2.0
    assert lstm[((1, 64, 1000), "fwd", "x_ort")] == (1.3, ">=1.3x ORT")
    assert [lstm[((1, 256, 500), m, k)][0] for m, k in (("fwd", "x_ref"), ("fwdbwd", "x_ref"), ("fwd", "x_ort"))] == [1.5, 1.5, 1.4]
    assert all(lstm[((256, 512, 20), m, k)][0] == 1.0 for m, k in (("fwd", "x_ref"), ("fwdbwd", "x_ref"), ("fwd", "x_ort")))
    assert not [t for t in TARGETS["lstm"] if t.device == "cuda"]   # pending a GPU


def test_floor_counts_the_lstm_gate_blocks_and_projection():
    """The per-step floor: 4 gate blocks (W_ih, W_hh of 4H rows) for the LSTM, + W_hr with proj_size;
    the L2 term where the recurrent weights (all 4 blocks) exceed L1."""
    from rnnbench.config import cfg
    from rnnbench.cpu_floor import cpu_floor_us, step_macs
    from rnnbench.rows import flops_per_step
    flops, fast = 1e9, 1e15        # 1 GFLOP/s, an L2 too fast to matter
    c = cfg(2, 16, 100, 8)         # B=2, H=16, I=8
    assert step_macs(c, 1) == 2 * 16 * (8 + 16)
    assert step_macs(c, 4) == 2 * 4 * 16 * (8 + 16)
    rnn = cpu_floor_us(c, False, flops, fast, gates=1)
    lstm = cpu_floor_us(c, False, flops, fast, gates=4)
    assert rnn == (2 * 2 * 16 * 24 / flops * 1e6, "flop") and lstm[0] == pytest.approx(4 * rnn[0])
    assert cpu_floor_us(c, True, flops, fast, gates=4)[0] == pytest.approx(3 * lstm[0])
    assert flops_per_step(c, False, 4) == 4 * flops_per_step(c, False) == 2 * step_macs(c, 4)
    p = cfg(2, 16, 100, 8, proj=6, layers=2, bidir=True)   # layer 1 reads both directions' h: 2 * P
    per_dir = [4 * 16 * 8 + 4 * 16 * 6 + 6 * 16, 4 * 16 * 12 + 4 * 16 * 6 + 6 * 16]
    assert step_macs(p, 4) == 2 * 2 * sum(per_dir)
    # H=64 float32: W_hh is 16 KiB for the RNN (in L1: no L2 term), 64 KiB for the LSTM (> 48 KiB).
    big, slow = cfg(1, 64, 100), 1e9          # an L2 read of 1 GB/s: the L2 term dominates
    assert cpu_floor_us(big, False, 1e12, slow, gates=1)[1] == "flop"
    assert cpu_floor_us(big, False, 1e12, slow, gates=4) == (pytest.approx(4 * 64 * 64 * 4 / slow * 1e6), "L2")


@pytest.mark.slow
def test_ort_lstm_contender_runs_the_onnx_lstm_operator():
    """The ONNX Runtime contender exports nn.LSTM to the ONNX LSTM operator, checks it against
    nn.LSTM when built, and refuses an export without the operator its cell names."""
    pytest.importorskip("onnxruntime")
    from rnnbench.config import cfg
    from rnnbench.ort import OrtModule
    torch.manual_seed(0)
    c, lstm = cfg(3, 8, 5, 4), CELLS["lstm"]
    ref = torch.nn.LSTM(4, 8)
    m = OrtModule(ref, c, 1, lstm)
    assert "LSTM" in m.ops
    x, h0, c0 = torch.randn(5, 3, 4), torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    out, (hn, cn) = m(x, (h0, c0))
    with torch.no_grad():
        want_out, (want_hn, want_cn) = ref(x, (h0, c0))
    for got, want in ((out, want_out), (hn, want_hn), (cn, want_cn)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="no ONNX GRU operator"):
        OrtModule(ref, c, 1, dataclasses.replace(lstm, onnx_op="GRU"))


@pytest.fixture
def in_process(monkeypatch):
    """Runs a bench command's main() in this process (no second torch import): restores the thread
    count it sets (main restores the TF32 flags itself: env.tf32_pinned, asserted here), fixes the
    CPU floor's rates (1 GFLOP/s, L2 1 GB/s) so the floor is known exactly."""
    from rnnbench import cli
    monkeypatch.setattr(cli, "cpu_rates", lambda dtype: (1e9, 1e9, "test rates"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield cli.main
    torch.set_num_threads(saved[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved[1:]


def _csv(path):
    return list(csv.DictReader(path.open()))


@pytest.mark.slow
def test_bench_lstm_self_test_names_the_cell(in_process, tmp_path, capsys):
    """--cell lstm --self-test: nn.LSTM on both sides; the tables, report and figures name the LSTM."""
    out = tmp_path / "r"
    assert in_process(["--device", "cpu", "--cell", "lstm", "--self-test", "--shapes", "1,8,6", "1,16,6",
                       "--reps", "2", "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "cell: lstm (rnnfused.FusedLSTM vs torch.nn.LSTM)" in stdout
    assert "fused: nn.LSTM stand-in (--self-test)" in stdout and "nonlinearity" not in stdout
    rows = _csv(out / "results.csv")
    assert len(rows) == 4
    for r in rows:
        assert r["acc"] == "ok" and float(r["err_out"]) == float(r["err_hn"]) == float(r["err_cn"]) == 0.0
    report = (out / "report.md").read_text()
    assert report.startswith("# rnnfused benchmark, FusedLSTM vs nn.LSTM: cpu")
    assert "| stand-in ms |" in report and "| nn.LSTM ms |" in report and "| x nn.LSTM |" in report
    assert "| err c_n |" in report and "| nn.LSTM path |" in report
    assert "![speedup](speedup.png)" in report and (out / "speedup.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_lstm_fused_columns_accuracy_ort_and_floor(in_process, tmp_path):
    """--cell lstm with the real FusedLSTM on a tiny shape: every column, the accuracy check against
    nn.LSTM (output, h_n, c_n, gradients), the ONNX Runtime contender, nn.LSTM's path and the
    floor's four gate blocks."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("rnnfused")
    out = tmp_path / "r"
    assert in_process(["--device", "cpu", "--cell", "lstm", "--shapes", "2,16,20,8", "--reps", "2",
                       "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    rows = {r["mode"]: r for r in _csv(out / "results.csv")}
    assert set(rows) == {"fwd", "fwd+bwd"}
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    for mode, r in rows.items():
        assert r["acc"] == "ok", r
        for k in ("fused_ms", "ref_ms", "x_ref", "err_out", "err_hn", "err_cn", "floor_us", "x_floor"):
            assert r[k] != "", (mode, k)
        assert r["ref_path"] == ("oneDNN" if onednn else "native")
        assert 0 < float(r["err_cn"]) < 1e-4                 # FusedLSTM's own c_n, checked
        # 1 GFLOP/s (the fixture): B * 4 gate blocks * H * (I + H) multiply-adds, 2 flops each, x3 with backward
        want = (3 if mode == "fwd+bwd" else 1) * 2 * 2 * 4 * 16 * (8 + 16) / 1e9 * 1e6
        assert float(r["floor_us"]) == pytest.approx(want, rel=1e-6)
    assert float(rows["fwd+bwd"]["err_grad"]) < 1e-3 and rows["fwd"]["err_grad"] == ""
    assert rows["fwd"]["ort_ms"] and rows["fwd"]["x_ort"] and rows["fwd+bwd"]["ort_ms"] == ""   # forward only
    env = json.loads((out / "results.json").read_text())["env"]
    assert env["cell"].startswith("lstm") and "nn.LSTM on the CPU runs oneDNN" in env["native_path"]


@pytest.mark.slow
def test_stepping_lstm_rows(tmp_path, monkeypatch):
    """bench_stepping.py --cell lstm on B=1, H=64: FusedLSTM (T=1) and FusedLSTMCell rows in the
    no_grad, fwd and fwd+bwd passes, answers checked against nn, the cell's no_grad target, nn's path."""
    pytest.importorskip("rnnfused")
    spec = importlib.util.spec_from_file_location("bench_stepping", ROOT / "bench" / "bench_stepping.py")
    stepping = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stepping)
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    report = tmp_path / "stepping.md"
    try:
        rc = stepping.main(["--cell", "lstm", "--shapes", "1,64", "--reps", "1", "--steps", "2",
                            "--warmup", "0", "--report", str(report)])
    finally:
        torch.set_num_threads(saved[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved[1:]
    assert rc == 0
    text = report.read_text()
    assert text.startswith("# Stepping: FusedLSTM / FusedLSTMCell vs nn.LSTM / nn.LSTMCell")
    lines = [ln for ln in text.splitlines() if ln.startswith("| Fused")]
    assert sum("| FusedLSTM vs nn.LSTM |" in ln for ln in lines) == 6       # 1 and 2 layers x 3 passes
    cell_rows = [ln for ln in lines if "| FusedLSTMCell vs nn.LSTMCell |" in ln]
    assert len(cell_rows) == 3 and "answers: 9/9 rows agree" in text
    assert [ln for ln in cell_rows if "| no_grad |" in ln][0].split("|")[-3].strip() == ">=2.5x"
    assert all(ln.split("|")[-3].strip() == "" for ln in lines if "| no_grad |" not in ln or "Cell" not in ln)
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    assert f"- nn path: nn.LSTM (B=1, H=64): {'oneDNN' if onednn else 'native'}; nn.LSTMCell (B=1, H=64): native" in text
