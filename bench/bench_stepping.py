#!/usr/bin/env python
"""Stepping one input at a time: FusedRNN vs nn.RNN called with short inputs while carrying the
state, and FusedRNNCell vs nn.RNNCell, per call, on the same weights; with --cell lstm FusedLSTM
vs nn.LSTM and FusedLSTMCell vs nn.LSTMCell, the state (h, c).

    python bench/bench_stepping.py                         # the full table (~3 min on 2 cores)
    python bench/bench_stepping.py --cell lstm             # the LSTM's (adds the no_grad pass)
    python bench/bench_stepping.py --quick                 # fewer repetitions
    python bench/bench_stepping.py --report bench/results/$(date +%F)-cpu-stepping.md
    python bench/bench_stepping.py --device cuda          # on a GPU: cuDNN vs rnnfused's CUDA kernels
    RNNFUSED_INPUT_MODE=step python bench/bench_stepping.py --device cuda   # the cell kernel per step

What one row times: a loop of `--steps` calls, each on a (T, B, H) input (T = 1, or 8 where
marked) with the state returned by the previous call, as autoregressive generation, online
control and RL do; parameters require grad (training-mode modules), as in a model being trained.
"fwd" times the loop alone; "fwd+bwd" times the loop and one backward through all of it (a short
unrolled BPTT window); "no_grad" times the loop under torch.no_grad() (inference: nothing is
recorded for autograd; the default for --cell lstm, whose cell targets are for it). The contenders are interleaved, each timing is the median of `--reps`
repetitions, and "x" is nn's time over rnnfused's (above 1: rnnfused is faster). Each row also
checks that both give the same outputs and gradients. See the targets at TARGETS below.
"""
import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time

import torch
from torch import nn

import rnnfused
from rnnfused import FusedRNN, FusedRNNCell

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rnnbench.cells import CELLS, onednn_rule, torch_path  # noqa: E402
from rnnbench.env import OtherLoad, cpu_isa, cpu_model, git_rev, tf32_pinned  # noqa: E402

# (kind, B, H, L, T): kind "rnn" = the sequence module (FusedRNN vs nn.RNN, FusedLSTM vs nn.LSTM),
# "cell" = the cell (FusedRNNCell vs nn.RNNCell, FusedLSTMCell vs nn.LSTMCell).
ROWS = [("rnn", B, H, L, 1) for H in (64, 256) for B in (1, 8, 64) for L in (1, 2)]
ROWS += [("rnn", B, 256, L, 8) for B in (1, 64) for L in (1, 2)]
ROWS += [("cell", B, H, 1, 1) for H in (64, 256) for B in (1, 8, 64)]


# The LSTM's targets (issue 17): FusedLSTMCell per call vs nn.LSTMCell, state carried, no grad.
# FusedLSTM with T=1 has none (yet).
LSTM_CELL_TARGETS = {(1, 64): 2.5, (8, 64): 2.5, (1, 256): 2.0, (64, 256): 1.0}


def target_of(kind, B, H, L, T, mode, cell="rnn"):
    """(bound on x, label) for a row, or None. From the issues. RNN: FusedRNNCell >= 1.5x
    nn.RNNCell at B=1,H=64 and B=8,H=64 (forward), never slower in the other rows; FusedRNN with
    T=1 >= 1.5x nn.RNN at those sizes (1 and 2 layers), never slower at H=256 (B=1 and 64, 1 and 2
    layers, T=1 and 8). LSTM: LSTM_CELL_TARGETS, the no_grad pass."""
    if cell == "lstm":
        bound = LSTM_CELL_TARGETS.get((B, H)) if kind == "cell" and mode == "no_grad" else None
        return None if bound is None else (bound, f">={bound:g}x" if bound > 1 else "never slower")
    if mode != "fwd":
        return None
    if kind == "cell":
        return (1.5, ">=1.5x") if (B, H) in ((1, 64), (8, 64)) else (1.0, "never slower")
    if T == 1 and (B, H) in ((1, 64), (8, 64)):
        return 1.5, ">=1.5x"
    if H == 256 and B in (1, 64):
        return 1.0, "never slower"
    return None


def make_pair(kind, B, H, L, device, seed=0, cell=CELLS["rnn"]):
    torch.manual_seed(seed)
    if kind == "cell":
        ref = cell.torch_cell(H, H).to(device)
        return ref, getattr(rnnfused, cell.fused_cell_name).from_cell(ref)
    ref = cell.torch_cls(H, H, num_layers=L).to(device)
    return ref, getattr(getattr(rnnfused, cell.fused_name), cell.from_seq)(ref)


def make_loop(kind, module, xs, h0, cell=CELLS["rnn"]):
    """A function running the stepping loop; returns (outputs stacked, last state). h0: what the
    module takes as its state (h, or the LSTM's (h, c))."""
    if kind == "cell":
        def run():
            h, outs = h0, []
            for x in xs:
                h = module(x, h)
                outs.append(cell.flat_state(h)[0])
            return outs, h
    else:
        def run():
            h, outs = h0, []
            for x in xs:
                out, h = module(x, h)
                outs.append(out)
            return outs, h
    return run


def bench_row(kind, B, H, L, T, args):
    cell = CELLS[args.cell]
    dev = torch.device(args.device)
    ref, fused = make_pair(kind, B, H, L, dev, cell=cell)
    g = torch.Generator().manual_seed(1)
    shape = (B, H) if kind == "cell" else (T, B, H)
    xs = [torch.randn(shape, generator=g).to(dev) for _ in range(args.steps)]
    h0 = cell.hx([torch.randn((B, H) if kind == "cell" else (L, B, H), generator=g).to(dev)
                  for _ in range(cell.states)])
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    loops = {"nn": make_loop(kind, ref, xs, h0, cell), "fused": make_loop(kind, fused, xs, h0, cell)}
    calls = args.steps

    # Same answer: outputs and gradients of the unrolled loop.
    res = {}
    for name, mod in (("nn", ref), ("fused", fused)):
        outs, h = loops[name]()
        loss = sum((o * (i + 1)).sum() for i, o in enumerate(outs)) + sum(s.sum() for s in cell.flat_state(h))
        grads = torch.autograd.grad(loss, list(mod.parameters()))
        res[name] = (torch.stack(outs).detach(), grads)
    def rel(a, b):  # max abs difference relative to the largest magnitude (at least 1)
        return ((a - b).abs().max() / b.abs().max().clamp(min=1)).item()

    err = max([rel(res["fused"][0], res["nn"][0])] + [rel(a, b) for a, b in zip(res["fused"][1], res["nn"][1])])

    def fwd(name):
        return lambda: loops[name]()

    def no_grad(name):
        def run():
            with torch.no_grad():
                loops[name]()
        return run

    def fwdbwd(name):
        mod = ref if name == "nn" else fused
        params = list(mod.parameters())

        def run():
            outs, h = loops[name]()
            loss = sum(o.sum() for o in outs) + sum(s.sum() for s in cell.flat_state(h))
            torch.autograd.grad(loss, params)
        return run

    rows = []
    for mode, make in (("no_grad", no_grad), ("fwd", fwd), ("fwd+bwd", fwdbwd)):
        if mode not in args.modes:
            continue
        fns = {name: make(name) for name in loops}
        for fn in fns.values():  # warm-up
            for _ in range(args.warmup):
                fn()
        times = {name: [] for name in fns}
        for _ in range(args.reps):  # interleaved
            for name, fn in fns.items():
                sync()
                t0 = time.perf_counter()
                fn()
                sync()  # on a GPU: the loop's kernels have finished
                times[name].append((time.perf_counter() - t0) / calls * 1e6)
        nn_us = statistics.median(times["nn"])
        fu_us = statistics.median(times["fused"])
        x = nn_us / fu_us
        tgt = target_of(kind, B, H, L, T, mode, args.cell)
        met = "" if tgt is None else ("met" if x >= tgt[0] else "MISSED")
        rows.append(dict(kind=kind, B=B, H=H, L=L, T=T, mode=mode, nn_us=nn_us, fused_us=fu_us, x=x,
                         err=err, target=tgt[1] if tgt else "", met=met, cell=args.cell))
    return rows


COLS = ["what", "B", "H", "layers", "T", "pass", "nn us/call", "rnnfused us/call", "x", "rel err", "target", "met"]


def fmt(r):
    c = CELLS[r.get("cell", "rnn")]
    what = (f"{c.fused_name} vs {c.torch_name}" if r["kind"] == "rnn"
            else f"{c.fused_cell_name} vs {c.torch_cell_name}")
    return [what, r["B"], r["H"], r["L"] if r["kind"] == "rnn" else "-", r["T"] if r["kind"] == "rnn" else "-",
            r["mode"], f"{r['nn_us']:.1f}", f"{r['fused_us']:.1f}", f"{r['x']:.2f}", f"{r['err']:.1e}",
            r["target"], r["met"]]


def table(rows, markdown):
    cells = [COLS] + [[str(c) for c in fmt(r)] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(COLS)]
        return lines + ["| " + " | ".join(c) + " |" for c in cells[1:]]
    w = [max(len(row[i]) for row in cells) for i in range(len(COLS))]
    return ["  ".join(c.rjust(w[i]) for i, c in enumerate(row)) for row in cells]


def nn_calls(cell):
    """One T=1 call of nn's sequence module and one of its cell (B=1, H=64), no grad: to see
    which path torch takes for them (rnnbench.cells.torch_path)."""
    torch.manual_seed(0)
    seq, one = cell.torch_cls(64, 64), cell.torch_cell(64, 64)
    x = torch.randn(1, 1, 64)

    def call(m, inp):
        def run():
            with torch.no_grad():
                m(inp)
        return run
    return [(cell.torch_name, call(seq, x)), (cell.torch_cell_name, call(one, x[0]))]


def breakdown(reps=25, n=300):
    """Where one call goes, B=1, H=64, T=1, one layer, parameters requiring grad: the module
    call, the op call alone (with and without autograd), nn's own op, and the Python argument
    checks both modules run. Minimum over `reps` interleaved timings of `n` calls, in us."""
    torch.manual_seed(0)
    rnn = nn.RNN(64, 64)
    fused = FusedRNN.from_rnn(rnn)
    cell = nn.RNNCell(64, 64)
    fcell = FusedRNNCell.from_cell(cell)
    x, h = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    xc, hc = x[0], h[0]
    w = fused._flat_weights
    cw = (fcell.weight_ih, fcell.weight_hh, fcell.bias_ih, fcell.bias_hh)
    rnn_op = torch.ops.rnnfused.rnn.default
    cell_op = torch.ops.rnnfused.rnn_cell.default

    wd = [t.detach() for t in w]  # the same weights, no autograd
    cwd = [t.detach() for t in cw]

    items = [
        ("nn.RNN module call", lambda: rnn(x, h)),
        ("FusedRNN module call", lambda: fused(x, h)),
        ("torch._VF.rnn_tanh (nn.RNN's op), autograd", lambda: torch._VF.rnn_tanh(x, h, w, True, 1, 0.0, False, False, False)),
        ("rnnfused::rnn op, autograd (C++)", lambda: rnn_op(x, h, w, None, True, 1, False, False, 0.0, False)),
        ("rnnfused::rnn op, tensors without grad", lambda: rnn_op(x, h, wd, None, True, 1, False, False, 0.0, False)),
        ("nn.RNNBase.check_forward_args (both modules)", lambda: fused.check_forward_args(x, h, None)),
        ("nn.RNNCell module call", lambda: cell(xc, hc)),
        ("FusedRNNCell module call", lambda: fcell(xc, hc)),
        ("torch._VF.rnn_tanh_cell (nn.RNNCell's op), autograd", lambda: torch._VF.rnn_tanh_cell(xc, hc, *cw)),
        ("rnnfused::rnn_cell op, autograd (C++)", lambda: cell_op(xc, hc, *cw, False)),
        ("rnnfused::rnn_cell op, tensors without grad", lambda: cell_op(xc, hc, *cwd, False)),
    ]
    for _, f in items:
        for _ in range(50):
            f()
    best = {name: float("inf") for name, _ in items}
    for _ in range(reps):  # interleaved, so drift in the machine's speed hits every item alike
        for name, f in items:
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / n * 1e6)
    return list(best.items())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: nn.RNN / nn.RNNCell on cuDNN against rnnfused's CUDA kernels")
    p.add_argument("--cell", choices=sorted(CELLS), default="rnn",
                   help="rnn: FusedRNN(Cell) vs nn.RNN(Cell) (default); lstm: FusedLSTM(Cell) vs nn.LSTM(Cell)")
    p.add_argument("--shapes", nargs="+", metavar="B,H",
                   help="only the rows of these batch and hidden sizes (default: every row)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both (default 1)")
    p.add_argument("--steps", type=int, default=16, help="calls per timed loop (default 16)")
    p.add_argument("--reps", type=int, default=41, help="timed repetitions per contender (median)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="--reps 9")
    p.add_argument("--modes", nargs="+", choices=["no_grad", "fwd", "fwd+bwd"],
                   help="default: fwd fwd+bwd; with --cell lstm also no_grad (its cell targets' pass)")
    p.add_argument("--report", help="write a markdown report to this path")
    p.add_argument("--breakdown", action="store_true",
                   help="only time where one call goes (B=1, H=64, T=1), then exit")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 9
    if args.modes is None:
        args.modes = ["no_grad", "fwd", "fwd+bwd"] if args.cell == "lstm" else ["fwd", "fwd+bwd"]
    if args.breakdown and args.cell != "rnn":
        p.error("--breakdown times nn.RNN / FusedRNN's ops (--cell rnn) only")
    try:
        shapes = {tuple(int(v) for v in s.split(",")) for s in args.shapes or ()}
    except ValueError:
        p.error(f"--shapes wants B,H pairs, got {args.shapes}")
    if any(len(s) != 2 for s in shapes):
        p.error(f"--shapes wants B,H pairs, got {args.shapes}")
    rows_run = [r for r in ROWS if not shapes or (r[1], r[2]) in shapes]
    if not rows_run:
        p.error(f"no row has B,H in {args.shapes} (B: 1, 8, 64; H: 64, 256)")
    cell = CELLS[args.cell]
    if args.device == "cuda" and not (torch.cuda.is_available() and rnnfused.built_with_cuda()):
        p.error("--device cuda needs a CUDA device and a CUDA build of rnnfused")
    torch.set_num_threads(args.threads)
    # TF32 off on both sides (cuDNN would use it for nn.RNN's float32 otherwise), as in bench_rnn.py.
    with tf32_pinned(False):
        return _run(args, argv, cell, rows_run)


def _run(args, argv, cell, rows_run):
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cell": f"{cell.name} (rnnfused.{cell.fused_name} / {cell.fused_cell_name} vs "
                f"torch.{cell.torch_name} / {cell.torch_cell_name})",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "processor": cpu_model(),
        "cpu_isa": cpu_isa(rnnfused),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rnnfused": f"{rnnfused.__version__} @ {git_rev(os.path.dirname(os.path.abspath(rnnfused.__file__)))}",
        "RNNFUSED_INPUT_MODE": os.environ.get("RNNFUSED_INPUT_MODE", "(unset: auto)"),
        "RNNFUSED_CPU_KERNEL": os.environ.get("RNNFUSED_CPU_KERNEL", "(unset: auto)"),
        "RNNFUSED_KERNEL": os.environ.get("RNNFUSED_KERNEL", "(unset: heuristic)"),
        "command": " ".join(shlex.quote(a) for a in ["python"] + (sys.argv if argv is None else ["bench/bench_stepping.py"] + argv)),
    }
    if cell.onednn and args.device == "cpu":   # which path nn took, seen on one call of each
        info["nn path"] = "; ".join(f"{name} (B=1, H=64): {torch_path(fn)}" for name, fn in nn_calls(cell)) + (
            f" ({onednn_rule()})")
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    if args.breakdown:
        for name, us in breakdown():
            print(f"{us:8.1f} us  {name}")
        return 0
    load = OtherLoad()
    rows = []
    for kind, B, H, L, T in rows_run:
        for r in bench_row(kind, B, H, L, T, args):
            rows.append(r)
            print("  " + "  ".join(str(c) for c in fmt(r)), file=sys.stderr, flush=True)
    busy = load.cores()
    info["other load"] = "unknown" if busy is None else (
        f"{busy:.2f} cores busy with other processes during the run"
        + ("  ** WARNING: the machine was shared; timings are unreliable **" if busy > 0.2 else ""))
    scoped = [r for r in rows if r["target"]]
    missed = [r for r in scoped if r["met"] != "met"]
    bad = [r for r in rows if not r["err"] <= 1e-5]
    summary = [f"targets: {len(scoped) - len(missed)}/{len(scoped)} rows met"]
    summary += [f"  missed: {fmt(r)[0]} B={r['B']} H={r['H']} layers={r['L']} T={r['T']} {r['mode']}: "
                f"x{r['x']:.2f} (target {r['target']})" for r in missed]
    summary.append(f"answers: {len(rows) - len(bad)}/{len(rows)} rows agree with nn (outputs and gradients within 1e-5 relative to their largest magnitude)")
    print()
    print(f"other load: {info['other load']}")
    print("\n".join(table(rows, markdown=False)))
    print("\n".join(summary))
    if args.report:
        with open(args.report, "w") as f:
            f.write(f"# Stepping: {cell.fused_name} / {cell.fused_cell_name} vs {cell.torch_name} / "
                    f"{cell.torch_cell_name}, one short call at a time"
                    + (" (GPU)" if args.device == "cuda" else "") + "\n\n")
            f.write("\n".join(f"- {k}: {v}" for k, v in info.items()) + "\n\n")
            f.write("Per call, median of the interleaved repetitions; x = nn / rnnfused (above 1: rnnfused "
                    "is faster). fwd+bwd: the loop plus one backward through it, per call."
                    + (" no_grad: the loop under torch.no_grad()." if "no_grad" in args.modes else "") + "\n\n")
            f.write("\n".join(table(rows, markdown=True)) + "\n\n")
            f.write("\n".join(summary) + "\n")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
