"""The one timing helper (interleaved rounds), the choice of the round count, the GEMM rate."""
import math
import statistics
import time

import torch


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
