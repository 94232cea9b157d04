#!/usr/bin/env python
"""Benchmark rnnfused.FusedRNN against torch.nn.RNN (cuDNN / native) on the same weights.

    python bench/bench_rnn.py                      # quick preset for the default device
    python bench/bench_rnn.py --full               # larger sweep: layers, bidirectional, T, dtypes
    python bench/bench_rnn.py --shapes 1,32,1000 64,256,300,128 --dtype fp32 bf16
    python bench/bench_rnn.py --report r.md --plot r.png --csv r.csv --json r.json
    python bench/bench_rnn.py --gpu-report bench/results/DATE-h100.md   # GPU preset + report
    python bench/bench_rnn.py --self-test          # nn.RNN on both sides: checks the harness

Timing, columns and targets are described in bench/README.md. Every row also checks FusedRNN's
output, h_n and (fwd+bwd) gradients against nn.RNN with identical weights and flags a row whose
error exceeds a dtype-appropriate bound, so a fast wrong answer shows.
"""
import argparse
import contextlib
import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional

import torch

# ----------------------------------------------------------------------------- targets
# Per-step latency floor of a sequential step on a GPU: one barrier + one L2 round trip
# (DESIGN.md, "Measuring": about 1-2 us on an H100). The floor of a row is
# max(compute floor, this) per sequential pass.
LATENCY_FLOOR_US = 1.0
SMALL_STEP_FLOP = 34e6  # 2*B*H^2 at or below this: the GPU forward target is absolute (2 us/step)


@dataclasses.dataclass(frozen=True)
class Target:
    device: str                   # "cpu" | "cuda"
    mode: str                     # "fwd" | "fwdbwd"
    where: object                 # (B, H, T) for one shape, or a predicate on a Config
    metric: str                   # a row key: "x_ref" (speed-up), "fused_us" (us/step), "x_floor"
    op: str                       # ">=" | "<="
    bound: float
    label: str

    def applies(self, cfg):
        if isinstance(self.where, tuple):
            return (cfg.B, cfg.H, cfg.T) == self.where
        return self.where(cfg)


def _small(c):
    return 2 * c.B * c.H * c.H <= SMALL_STEP_FLOP


# The one table of targets. Scope, all rows: one layer, one direction, I = H. CPU: float32 (the
# numbers are for 2 cores; the header shows the thread count). GPU: T = 1000, float32 with TF32
# off, or bfloat16. "x_ref" is nn.RNN time / FusedRNN time (cuDNN on the GPU, native on the CPU).
TARGETS = [
    Target("cpu", "fwd",    (1, 32, 1000),    "x_ref", ">=", 5.0, ">=5x"),
    Target("cpu", "fwdbwd", (1, 32, 1000),    "x_ref", ">=", 3.0, ">=3x"),
    Target("cpu", "fwd",    (8, 64, 1000),    "x_ref", ">=", 3.0, ">=3x"),
    Target("cpu", "fwdbwd", (8, 64, 1000),    "x_ref", ">=", 2.0, ">=2x"),
    Target("cpu", "fwd",    (1, 256, 1000),   "x_ref", ">=", 1.5, ">=1.5x"),
    Target("cpu", "fwdbwd", (1, 256, 1000),   "x_ref", ">=", 1.5, ">=1.5x"),
    Target("cpu", "fwd",    (64, 256, 300),   "x_ref", ">=", 1.0, "never slower"),
    Target("cpu", "fwdbwd", (64, 256, 300),   "x_ref", ">=", 1.0, "never slower"),
    Target("cpu", "fwd",    (256, 1024, 20),  "x_ref", ">=", 1.0, "never slower"),
    Target("cpu", "fwdbwd", (256, 1024, 20),  "x_ref", ">=", 1.0, "never slower"),
    Target("cuda", "fwd",    _small,                      "fused_us", "<=", 2.0, "<=2us/step"),
    Target("cuda", "fwd",    lambda c: not _small(c),     "x_floor",  "<=", 1.5, "<=1.5x floor"),
    Target("cuda", "fwd",    lambda c: True,              "x_ref",    ">=", 1.0, ">=1x cuDNN"),
    Target("cuda", "fwdbwd", lambda c: c.B <= 64,         "x_ref",    ">=", 1.5, ">=1.5x cuDNN"),
]


def in_target_scope(cfg, device, tf32):
    if cfg.layers != 1 or cfg.bidir or cfg.I != cfg.H:
        return False
    if device == "cpu":
        return cfg.dtype == torch.float32
    return cfg.T == 1000 and (cfg.dtype == torch.bfloat16 or (cfg.dtype == torch.float32 and not tf32))


# ----------------------------------------------------------------------------- configurations
DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAME = {v: k for k, v in DTYPES.items()}
# Error bound, relative to max(1, max|reference|) per tensor (output, h_n, each gradient).
ERR_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}
ERR_TOL_TF32 = 1e-2
MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}


@dataclasses.dataclass(frozen=True)
class Config:
    B: int
    H: int
    T: int
    I: int
    layers: int = 1
    bidir: bool = False
    dtype: torch.dtype = torch.float32

    def describe(self):
        return (f"B={self.B} H={self.H} I={self.I} T={self.T} L={self.layers} "
                f"{'bi' if self.bidir else 'uni'} {DTYPE_NAME[self.dtype]}")


def cfg(B, H, T, I=None, **kw):
    return Config(B, H, T, H if I is None else I, **kw)


def cpu_target_shapes():
    return list(dict.fromkeys(t.where for t in TARGETS if t.device == "cpu"))


def preset(device, full):
    f32, b16, f16, f64 = torch.float32, torch.bfloat16, torch.float16, torch.float64
    if device == "cpu":
        quick = [cfg(B, H, T) for B, H, T in cpu_target_shapes()]
        if not full:
            return quick
        grid = [cfg(B, H, T) for B, H, T in itertools.product((1, 8, 64), (32, 128, 512), (100, 1000))]
        structure = [cfg(B, H, 300, I, layers=L, bidir=bi)
                     for B, H in ((8, 64), (64, 256)) for I in (H, H // 4)
                     for L, bi in ((2, False), (1, True), (2, True))]
        dtypes = [cfg(B, H, 300, dtype=dt) for B, H in ((1, 64), (64, 256)) for dt in (f64, b16)]
        return list(dict.fromkeys(quick + grid + structure + dtypes))
    quick = [cfg(B, H, 1000, dtype=dt) for dt in (f32, b16) for B in (1, 16, 64) for H in (128, 512, 1024)]
    if not full:
        return quick
    grid = [cfg(B, H, T, dtype=dt) for dt in (f32, b16, f16) for T in (100, 1000)
            for B in (1, 4, 16, 64, 256) for H in (64, 128, 256, 512, 1024, 2048)]
    structure = [cfg(B, H, 1000, I, layers=L, bidir=bi, dtype=dt) for dt in (f32, b16)
                 for B, H in ((16, 256), (64, 1024)) for I in (H, H // 4)
                 for L, bi in ((2, False), (1, True), (2, True))]
    return list(dict.fromkeys(quick + grid + structure))


# ----------------------------------------------------------------------------- timing
def measure(calls, inputs, rounds, device):
    """The one timing helper. calls: {name: fn(inp)}. Runs `rounds` rounds; each round calls every
    contender once, interleaved (A B A B ...), on input set round % len(inputs). Returns
    {name: [seconds per call]}. CUDA: events around each call, one synchronize per round.
    CPU: time.perf_counter around each call."""
    times = {name: [] for name in calls}
    for r in range(rounds):
        inp = inputs[r % len(inputs)]
        if device == "cuda":
            events = []
            for name, fn in calls.items():
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(inp)
                end.record()
                events.append((name, start, end))
            torch.cuda.synchronize()
            for name, start, end in events:
                times[name].append(start.elapsed_time(end) * 1e-3)
        else:
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn(inp)
                times[name].append(time.perf_counter() - t0)
    return times


def iqr(v):
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return q[2] - q[0]


def choose_rounds(warm_times, args):
    if args.reps:
        return args.reps
    per_round = sum(statistics.median(v) for v in warm_times.values())
    return int(min(args.max_reps, max(args.min_reps, math.ceil(args.budget / max(per_round, 1e-9)))))


def gemm_rate(dtype, device, n=8192):
    """Measured flop/s of one large torch.mm in `dtype` (TF32 as pinned): the compute floor's rate."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    calls = {"mm": lambda _: torch.mm(a, b)}
    measure(calls, [None], 3, device)
    return 2 * n ** 3 / statistics.median(measure(calls, [None], 10, device)["mm"])


# ----------------------------------------------------------------------------- contenders
@dataclasses.dataclass
class Contender:
    key: str                       # "fused", "ref" (the speed-up reference), "nocudnn"
    label: str                     # column label
    module: Optional[torch.nn.Module] = None
    ctx: Callable = contextlib.nullcontext
    params: list = dataclasses.field(default_factory=list)  # in the reference's parameter order


def cudnn_disabled():
    """cudnn.flags(enabled=False) that keeps the other cuDNN flags (flags() would reset TF32 to on)."""
    b = torch.backends.cudnn
    return b.flags(enabled=False, benchmark=b.benchmark, deterministic=b.deterministic,
                   allow_tf32=b.allow_tf32)


def contender_specs(device, self_test):
    fused_label = "stand-in" if self_test else "fused"
    specs = [Contender("fused", fused_label)]
    if device == "cuda":
        specs += [Contender("ref", "cudnn"),
                  Contender("nocudnn", "nocudnn", ctx=cudnn_disabled)]
    else:
        specs += [Contender("ref", "native")]
    return specs


@dataclasses.dataclass
class Setup:
    fused_cls: type          # FusedRNN, or nn.RNN with --self-test
    fused_mod: object        # the rnnfused module; None with --self-test
    gemm_rate: dict          # GPU: dtype -> measured torch.mm flop/s


@dataclasses.dataclass
class Inputs:
    x: torch.Tensor
    h0: torch.Tensor
    gout: torch.Tensor
    ghn: torch.Tensor


def make_inputs(c, n_sets, device, seed):
    g = torch.Generator().manual_seed(seed)
    D = 2 if c.bidir else 1

    def rnd(*shape, grad=False):
        return torch.randn(*shape, generator=g).to(device, c.dtype).requires_grad_(grad)
    return [Inputs(rnd(c.T, c.B, c.I, grad=True), rnd(c.layers * D, c.B, c.H, grad=True),
                   rnd(c.T, c.B, D * c.H), rnd(c.layers * D, c.B, c.H)) for _ in range(n_sets)]


def run_fwd(con, inp):
    with con.ctx(), torch.no_grad():
        return con.module(inp.x, inp.h0)


def run_fwdbwd(con, inp):
    with con.ctx():
        out, hn = con.module(inp.x, inp.h0)
        grads = torch.autograd.grad((out, hn), (inp.x, inp.h0, *con.params), (inp.gout, inp.ghn))
    return (out, hn, *grads)


RUNNERS = {"fwd": run_fwd, "fwdbwd": run_fwdbwd}


def build_modules(c, contenders, device, nonlinearity, fused_cls, seed):
    torch.manual_seed(seed)
    kw = dict(num_layers=c.layers, nonlinearity=nonlinearity, bidirectional=c.bidir,
              device=device, dtype=c.dtype)
    ref = torch.nn.RNN(c.I, c.H, **kw)
    names = [n for n, _ in ref.named_parameters()]
    for con in contenders:
        if con.key == "fused":
            con.module = fused_cls(c.I, c.H, **kw)
            con.module.load_state_dict(ref.state_dict())   # the drop-in contract under test
        else:
            con.module = ref
        named = dict(con.module.named_parameters())
        con.params = [named[n] for n in names]


# ----------------------------------------------------------------------------- accuracy
def max_err(a, b):
    return (a.detach().double() - b.detach().double()).abs().max().item() if a.numel() else 0.0


def accuracy(got, ref, tol):
    """(err_out, err_hn, err_grad or None, ok). ok: every tensor's max abs error within
    tol * max(1, max|ref|), shapes equal, nothing NaN."""
    ok = len(got) == len(ref)
    errs = []
    for a, b in zip(got, ref):
        if a.shape != b.shape:
            ok = False
            errs.append(float("inf"))
            continue
        e = max_err(a, b)
        scale = max(1.0, b.detach().abs().max().item()) if b.numel() else 1.0
        ok &= not math.isnan(e) and e <= tol * scale
        errs.append(e)
    grads = errs[2:]
    return errs[0], errs[1], (max(grads) if grads else None), ok


# ----------------------------------------------------------------------------- one row
def flops_per_step(c, backward):
    D = 2 if c.bidir else 1
    f = sum(2 * c.B * c.H * ((c.I if l == 0 else D * c.H) + c.H) * D for l in range(c.layers))
    return 3 * f if backward else f   # backward: dh W_hh, dW_hh, dW_ih, dX = 2x the forward


def bench_config(c, modes, contenders, args, setup):
    """Yields the rows (one per mode) of one configuration as they finish."""
    try:
        build_modules(c, contenders, args.device, args.nonlinearity, setup.fused_cls, args.seed)
        inputs = make_inputs(c, args.inputs, args.device, args.seed + 1)
    except Exception as e:  # noqa: BLE001 - reported in the row, never hidden
        for m in modes:
            yield error_row(c, m, f"setup: {type(e).__name__}: {e}")
        return
    for mode in modes:
        try:
            yield bench_row(c, mode, contenders, inputs, args, setup)
        except Exception as e:  # noqa: BLE001
            if args.device == "cuda":
                torch.cuda.empty_cache()
            yield error_row(c, mode, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")


def base_row(c, mode):
    return dict(B=c.B, H=c.H, I=c.I, T=c.T, L=c.layers, dir="bi" if c.bidir else "uni",
                dtype=DTYPE_NAME[c.dtype], mode=MODES[mode])


def error_row(c, mode, msg):
    print(f"\nerror in {c.describe()} {MODES[mode]}: {msg}", file=sys.stderr)
    return {**base_row(c, mode), "error": msg, "acc": "ERROR"}


def bench_row(c, mode, contenders, inputs, args, setup):
    runner = RUNNERS[mode]
    by_key = {con.key: con for con in contenders}
    row = base_row(c, mode)
    # Accuracy on input set 0 (this is also the first warm-up call of each side).
    tf32 = c.dtype == torch.float32 and args.tf32 and args.device == "cuda"
    tol = ERR_TOL_TF32 if tf32 else ERR_TOL[c.dtype]
    got, ref = runner(by_key["fused"], inputs[0]), runner(by_key["ref"], inputs[0])
    row["err_out"], row["err_hn"], row["err_grad"], ok = accuracy(got, ref, tol)
    row["acc"] = "ok" if ok else "BAD"
    del got, ref
    # Timing: warm-up rounds, then interleaved rounds over rotating input sets; medians.
    calls = {con.key: (lambda inp, con=con: runner(con, inp)) for con in contenders}
    rounds = choose_rounds(measure(calls, inputs, args.warmup, args.device), args)
    times = measure(calls, inputs, rounds, args.device)
    row["reps"] = rounds
    med = {k: statistics.median(v) for k, v in times.items()}
    row["noise"] = 100 * max(iqr(v) / med[k] for k, v in times.items())
    for con in contenders:
        row[f"{con.key}_ms"] = med[con.key] * 1e3
        row[f"{con.key}_us"] = med[con.key] * 1e6 / c.T
        if con.key != "fused":
            row[f"x_{con.key}"] = med[con.key] / med["fused"]
    if args.device == "cuda":
        rate = setup.gemm_rate[c.dtype]
        compute_us = flops_per_step(c, mode == "fwdbwd") / rate * 1e6
        latency_us = LATENCY_FLOOR_US * c.layers * (2 if mode == "fwdbwd" else 1)
        row["floor_us"] = max(compute_us, latency_us)
        row["bound"] = "lat" if latency_us >= compute_us else "flop"
        row["x_floor"] = row["fused_us"] / row["floor_us"]
        if hasattr(setup.fused_mod, "cuda_kernel_name"):
            try:
                row["kernel"] = setup.fused_mod.cuda_kernel_name(c.B, c.H, c.dtype, mode == "fwdbwd")
            except Exception as e:  # noqa: BLE001
                row["kernel"] = f"? ({type(e).__name__})"
    check_targets(row, c, mode, args)
    return row


def check_targets(row, c, mode, args):
    if not in_target_scope(c, args.device, args.tf32):
        return
    results = []
    for t in TARGETS:
        if t.device == args.device and t.mode == mode and t.applies(c):
            v = row.get(t.metric)
            met = v is not None and row["acc"] == "ok" and (v >= t.bound if t.op == ">=" else v <= t.bound)
            results.append((t.label, met))
    if results:
        row["target"] = ", ".join(label for label, _ in results)
        missed = [label for label, m in results if not m]
        row["met"] = "met" if not missed else "MISSED" if len(results) == 1 else "MISSED " + ", ".join(missed)


# ----------------------------------------------------------------------------- output
def columns(device, contenders):
    cols = [("B", "B", "d"), ("H", "H", "d"), ("I", "I", "d"), ("T", "T", "d"), ("L", "L", "d"),
            ("dir", "dir", "s"), ("dtype", "dtype", "s"), ("pass", "mode", "s")]
    for con in contenders:
        cols += [(f"{con.label} ms", f"{con.key}_ms", ".3f"),
                 (f"{con.label} us/step", f"{con.key}_us", ".2f")]
    for con in contenders:
        if con.key != "fused":
            cols.append((f"x {con.label}", f"x_{con.key}", ".2f"))
    if device == "cuda":
        cols += [("floor us/step", "floor_us", ".2f"), ("bound", "bound", "s"),
                 ("x floor", "x_floor", ".2f"), ("kernel", "kernel", "s")]
    cols += [("err out", "err_out", ".1e"), ("err h_n", "err_hn", ".1e"), ("err grad", "err_grad", ".1e"),
             ("acc", "acc", "s"), ("reps", "reps", "d"), ("noise %", "noise", ".0f"),
             ("target", "target", "s"), ("met", "met", "s"), ("error", "error", "s")]
    return cols


def fmt_cell(v, f):
    if v is None or v == "":
        return ""
    if f == "s":
        return str(v)
    return format(v, f)


def table_lines(rows, cols, markdown):
    cols = [col for col in cols if any(r.get(col[1]) not in (None, "") for r in rows)]
    header = [h for h, _, _ in cols]
    body = [[fmt_cell(r.get(k), f) for _, k, f in cols] for r in rows]
    if markdown:
        align = "|".join("---" if f == "s" else "---:" for _, _, f in cols)
        return ["| " + " | ".join(line) + " |" for line in [header]] + [f"|{align}|"] + [
            "| " + " | ".join(line) + " |" for line in body]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    return ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [header] + body]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_rev(path):
    try:
        rev = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return rev or "no commit"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class OtherLoad:
    """CPU time other processes used while we ran, in cores: /proc/stat busy time minus our own.
    Above ~0.2 cores on a small machine, CPU timings (and thread-parallel nn.RNN most) are unreliable."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait
        t = os.times()
        return busy, t.user + t.system, time.perf_counter()

    def cores(self):
        end = self._sample()
        if self.start is None or end is None:
            return None
        (b0, o0, w0), (b1, o1, w1) = self.start, end
        return max(0.0, ((b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9))


def load_average():
    try:
        return "%.2f %.2f %.2f (1/5/15 min) on %d cores" % (*os.getloadavg(), os.cpu_count())
    except OSError:
        return "unknown"


def env_info(args, setup):
    dev = args.device
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({cpu_model()})",
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "tf32": f"matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}",
        "python": platform.python_version(),
        "load": load_average(),
        "fused": ("nn.RNN stand-in (--self-test)" if setup.fused_mod is None else
                  f"rnnfused {getattr(setup.fused_mod, '__version__', '?')} @ "
                  f"{git_rev(os.path.dirname(os.path.abspath(setup.fused_mod.__file__)))}"),
        "RNNFUSED_KERNEL": os.environ.get("RNNFUSED_KERNEL", "(unset: heuristic)"),
        "nonlinearity": args.nonlinearity,
        "command": " ".join(shlex.quote(a) for a in ["python"] + sys.argv),
    }
    if dev == "cuda":
        info["gemm_tflops"] = {DTYPE_NAME[d]: round(r / 1e12, 1) for d, r in setup.gemm_rate.items()}
    return info


def header_lines(info):
    keys = ["date", "device", "cpu", "threads", "load", "load_end", "other_load", "torch", "cuda", "cudnn",
            "tf32", "python", "fused", "RNNFUSED_KERNEL", "nonlinearity", "gemm_tflops", "command"]
    return [f"{k}: {info[k]}" for k in keys if k in info]


def target_summary(rows):
    scoped = [r for r in rows if r.get("target")]
    missed = [r for r in scoped if r.get("met") != "met"]
    bad = [r for r in rows if r.get("acc") != "ok"]
    lines = [f"targets: {len(scoped) - len(missed)}/{len(scoped)} rows met"]
    lines += [f"  missed: B={r['B']} H={r['H']} T={r['T']} {r['dtype']} {r['mode']}: {r['met']}"
              for r in missed]
    lines.append(f"accuracy: {len(rows) - len(bad)}/{len(rows)} rows within bounds")
    lines += [f"  {r['acc']}: B={r['B']} H={r['H']} I={r['I']} T={r['T']} L={r['L']} {r['dir']} {r['dtype']} "
              f"{r['mode']} {r.get('error', '')}" for r in bad]
    return lines


def write_report(path, info, rows, cols):
    lines = [f"# rnnfused benchmark: {info['device']}", ""]
    lines += [f"- {line}" for line in header_lines(info)[:-1]]
    lines += ["", "Command:", "", "```", info["command"], "```", "", "## Results", ""]
    lines += table_lines(rows, cols, markdown=True)
    lines += ["", "## Targets and accuracy", "", "```"] + target_summary(rows) + ["```", ""]
    lines += ["Columns, timing method and targets: see bench/README.md.", ""]
    _write(path, "\n".join(lines))


def write_csv(path, rows, cols):
    import csv
    keys = [k for _, k, _ in cols if any(k in r for r in rows)]
    with open(_mkdir(path), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_plot(path, info, rows, contenders):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = [m for m in MODES.values() if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 4 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, axis in enumerate(("H", "B")):
            ax, plotted = axes[i][j], [1.0]
            for con in contenders:
                if con.key == "fused":
                    continue
                for dt in dict.fromkeys(r["dtype"] for r in rows):
                    pts = {}
                    for r in rows:
                        if r["mode"] == mode and r["dtype"] == dt and r.get(f"x_{con.key}"):
                            pts.setdefault(r[axis], []).append(r[f"x_{con.key}"])
                    if pts:   # geometric mean over the rows that share this x
                        xs = sorted(pts)
                        ys = [math.exp(statistics.fmean(math.log(v) for v in pts[x])) for x in xs]
                        ax.plot(xs, ys, marker="o", label=f"vs nn.RNN {con.label}, {dt}")
                        plotted += ys
            ax.axhline(1.0, color="gray", lw=0.8, ls="--")
            ax.set_xscale("log", base=2)
            if max(plotted) / min(plotted) > 20:
                ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("speed-up (nn.RNN time / FusedRNN time)")
            ax.set_title(f"{mode}: speed-up vs {axis}")
            ax.legend(fontsize=8)
    fig.suptitle(f"{info['device']}, {info['threads']} threads, torch {info['torch']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(_mkdir(path), dpi=110)
    plt.close(fig)


def _mkdir(path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    return path


def _write(path, text):
    with open(_mkdir(path), "w") as f:
        f.write(text)


class Progress:
    """tqdm when installed, else a counter on stderr."""

    def __init__(self, total):
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            self.bar = None
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def update(self, desc, k=1):
        self.n += k
        if self.bar is not None:
            self.bar.set_description(desc)
            self.bar.update(k)
            return
        end = "\r" if sys.stderr.isatty() else "\n"
        print(f"[{self.n}/{self.total}] {time.perf_counter() - self.t0:6.1f}s  {desc}", end=end,
              file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif sys.stderr.isatty():
            print(file=sys.stderr)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for the columns and the timing method.")
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--full", action="store_true", help="larger sweep: layers, bidirectional, T, dtypes")
    p.add_argument("--shapes", nargs="+", metavar="B,H,T[,I]", help="custom rows instead of a preset")
    p.add_argument("--layers", type=int, default=1, help="num_layers for --shapes rows")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional --shapes rows")
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), help="override the preset's dtypes")
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    p.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on both sides (default: off on both)")
    p.add_argument("--kernel", choices=["stepwise", "persistent", "auto"],
                   help="sets RNNFUSED_KERNEL (the CUDA kernel choice) before rnnfused is imported")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--self-test", action="store_true",
                   help="use nn.RNN as the FusedRNN stand-in (checks the harness; speed-ups ~1, errors 0)")
    p.add_argument("--warmup", type=int,
                   help="warm-up rounds after the accuracy call (default: cpu 1, cuda 3)")
    p.add_argument("--reps", type=int, help="timed rounds per row (default: adaptive, see --budget)")
    p.add_argument("--budget", type=float, default=1.5, help="target seconds of timed rounds per row")
    p.add_argument("--min-reps", type=int, default=5)
    p.add_argument("--max-reps", type=int, default=100)
    p.add_argument("--inputs", type=int, default=3, help="input sets to rotate among")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", metavar="PATH")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PATH.png", help="speed-up vs H and vs B (needs matplotlib)")
    p.add_argument("--report", metavar="PATH.md", help="markdown report: header, table, targets")
    p.add_argument("--gpu-report", metavar="PATH.md", help="the GPU preset on cuda, report to PATH.md")
    args = p.parse_args(argv)
    if args.gpu_report:
        args.device, args.report = "cuda", args.gpu_report
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda (or --gpu-report) but torch.cuda.is_available() is False")
    if args.warmup is None:
        args.warmup = 3 if args.device == "cuda" else 1
    return args


def load_fused(args):
    if args.kernel:
        os.environ["RNNFUSED_KERNEL"] = args.kernel
    if args.self_test:
        return None, torch.nn.RNN
    try:
        import rnnfused
    except ImportError as e:
        sys.exit(f"cannot import rnnfused ({e}). Build it first (pip install --no-build-isolation . "
                 f"in the repository root), or run with --self-test to check the harness on nn.RNN.")
    return rnnfused, rnnfused.FusedRNN


def configs_from_args(args):
    if args.shapes:
        out = []
        for s in args.shapes:
            v = [int(x) for x in s.split(",")]
            if len(v) not in (3, 4):
                sys.exit(f"--shapes wants B,H,T[,I], got {s!r}")
            out.append(cfg(*v, layers=args.layers, bidir=args.bidirectional))
    else:
        out = preset(args.device, args.full)
    if args.dtype:
        out = [dataclasses.replace(c, dtype=DTYPES[d]) for c in dict.fromkeys(
            dataclasses.replace(c, dtype=torch.float32) for c in out) for d in args.dtype]
    return list(dict.fromkeys(out))


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Pin TF32 the same for both sides; nn.RNN's cuDNN path would otherwise use TF32 by default.
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    configs = configs_from_args(args)
    modes = list(dict.fromkeys(args.modes))
    contenders = contender_specs(args.device, args.self_test)
    fused_mod, fused_cls = load_fused(args)
    rates = ({dt: gemm_rate(dt, "cuda") for dt in dict.fromkeys(c.dtype for c in configs)}
             if args.device == "cuda" else {})
    setup = Setup(fused_cls, fused_mod, rates)
    info = env_info(args, setup)

    print("\n".join(header_lines(info)))
    rows = []
    progress = Progress(len(configs) * len(modes))
    other = OtherLoad()
    for c in configs:
        for r in bench_config(c, modes, contenders, args, setup):
            rows.append(r)
            x = r.get("x_ref")
            progress.update(f"{c.describe()} {r['mode']}: " + (f"x{x:.2f} {r['acc']}" if x else r["acc"]))
        for con in contenders:
            con.module, con.params = None, []
    progress.close()
    info["load_end"] = load_average()
    busy = other.cores()
    if busy is not None:
        info["other_load"] = f"{busy:.2f} cores busy with other processes during the run" + (
            "  ** WARNING: the machine was shared; timings are unreliable **" if busy > 0.2 else "")

    cols = columns(args.device, contenders)
    print()
    print("\n".join(header_lines(info)))
    print("\n".join(table_lines(rows, cols, markdown=False)))
    print("\n".join(target_summary(rows)))
    if args.report:
        write_report(args.report, info, rows, cols)
    if args.csv:
        write_csv(args.csv, rows, cols)
    if args.json:
        _write(args.json, json.dumps({"env": info, "rows": rows}, indent=1, default=str))
    if args.plot:
        write_plot(args.plot, info, rows, contenders)
    return 0 if all(r.get("acc") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
