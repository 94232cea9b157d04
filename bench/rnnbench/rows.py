"""One configuration -> its rows: the accuracy check, the timing, nn's CPU path (where it has a
oneDNN one), the floors, the targets."""
import math
import statistics
import sys

import torch

from .config import DTYPE_NAME, ERR_TOL, ERR_TOL_TF32, MODES
from .contenders import RUNNERS, build_modules, make_inputs
from .cells import torch_path
from .cpu_floor import cpu_floor_us, step_macs
from .memory import measure_memory
from .targets import LATENCY_FLOOR_US, check_targets
from .timing import choose_rounds, iqr, measure


def max_err(a, b):
    return (a.detach().double() - b.detach().double()).abs().max().item() if a.numel() else 0.0


def accuracy(got, ref, tol, states=1):
    """(err_out, [err of each final state tensor], err_grad or None, ok). got, ref: (output,
    *`states` state tensors, *gradients). ok: every tensor's max abs error within
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
    grads = errs[1 + states:]
    return errs[0], errs[1:1 + states], (max(grads) if grads else None), ok


STATE_ERR_KEYS = ("err_hn", "err_cn")   # the final state tensors: h_n, and the LSTM's c_n


def flops_per_step(c, backward, gates=1):
    f = 2 * step_macs(c, gates)
    return 3 * f if backward else f   # backward: dh W_hh, dW_hh, dW_ih, dX = 2x the forward


def bench_config(c, modes, contenders, args, setup):
    """Yields the rows (one per mode) of one configuration as they finish."""
    try:
        build_modules(c, contenders, args.device, args.nonlinearity, setup, args.seed)
        inputs = make_inputs(c, args.inputs, args.device, args.seed + 1, setup.cell)
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
    row = dict(B=c.B, H=c.H, I=c.I, T=c.T, L=c.layers, dir="bi" if c.bidir else "uni",
               dtype=DTYPE_NAME[c.dtype], mode=MODES[mode])
    if c.proj:
        row["P"] = c.proj
    return row


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
    cell = setup.cell
    row["err_out"], state_errs, row["err_grad"], ok = accuracy(got, ref, tol, cell.states)
    row.update(zip(STATE_ERR_KEYS, state_errs))
    row["acc"] = "ok" if ok else "BAD"
    del got, ref
    # Timing: warm-up rounds, then interleaved rounds over rotating input sets; medians.
    timed = [con for con in contenders if con.runs(mode)]
    calls = {con.key: (lambda inp, con=con: runner(con, inp)) for con in timed}
    rounds = choose_rounds(measure(calls, inputs, args.warmup, args.device), args)
    times = measure(calls, inputs, rounds, args.device)
    row["reps"] = rounds
    med = {k: statistics.median(v) for k, v in times.items()}
    row["noise"] = 100 * max(iqr(v) / med[k] for k, v in times.items())
    for con in timed:
        row[f"{con.key}_ms"] = med[con.key] * 1e3
        row[f"{con.key}_us"] = med[con.key] * 1e6 / c.T
        if con.key != "fused":
            row[f"x_{con.key}"] = med[con.key] / med["fused"]
            # the spread of the speed-up: quartiles of the per-round ratio (a round times both
            # side by side), drawn as error bars in the figures; in results.json
            ratios = [a / b for a, b in zip(times[con.key], times["fused"])]
            q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
            row[f"x_{con.key}_q1"], row[f"x_{con.key}_q3"] = q[0], q[2]
    if getattr(args, "memory", False):   # after the timing, so it never disturbs it
        for con in timed:
            row.update(measure_memory(con, runner, inputs[0], mode, args.device))
    if cell.onednn and args.device == "cpu":   # after the timing: which path nn's module took
        row["ref_path"] = torch_path(lambda: runner(by_key["ref"], inputs[0]))
    if args.device == "cuda":
        rate = setup.gemm_rate[c.dtype]
        compute_us = flops_per_step(c, mode == "fwdbwd", cell.gates) / rate * 1e6
        latency_us = LATENCY_FLOOR_US * c.layers * (2 if mode == "fwdbwd" else 1)
        row["floor_us"] = max(compute_us, latency_us)
        row["bound"] = "lat" if latency_us >= compute_us else "flop"
        row["x_floor"] = row["fused_us"] / row["floor_us"]
        if cell.cuda_kernel_name and hasattr(setup.fused_mod, "cuda_kernel_name"):
            try:
                row["kernel"] = setup.fused_mod.cuda_kernel_name(c.B, c.H, c.dtype, mode == "fwdbwd")
            except Exception as e:  # noqa: BLE001
                row["kernel"] = f"? ({type(e).__name__})"
    elif getattr(setup, "cpu_rates", None):
        floor, bound = cpu_floor_us(c, mode == "fwdbwd", *setup.cpu_rates, gates=cell.gates)
        row["floor_us"], row["bound"] = floor, bound
        row["x_floor"] = row["fused_us"] / floor
    check_targets(row, c, mode, args)
    return row
