"""The CPU per-step floor: what this machine's measured arithmetic rate and cache bandwidth allow.

    compute floor   = multiply-adds of one step (input projection + recurrence, every gate block:
                      1 for the RNN, 4 for the LSTM, + the LSTM's projection; x3 with backward)
                      at the machine's measured FMA rate: fma_peak.c (independent FMA chains on
                      the widest vectors, one per thread), compiled with the system C compiler at
                      the start of the run; without a compiler, the rate of a large torch.mm
    bandwidth floor = the recurrent weights' bytes (W_hh, all gate blocks, and W_hr) read once per
                      step (twice with backward) at the measured L2 read bandwidth, where they do
                      not fit a core's L1 (> 48 KiB)
    floor           = the larger of the two; "x floor" = FusedRNN's time / the floor.

Both rates are measured at the start of the run with the run's thread count: no kernel does
the step's arithmetic faster than the FMA units, or reads W_hh from L2 faster than that."""
import os
import shutil
import subprocess
import tempfile
import time

import torch

L1_BYTES = 48 << 10


def _best(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def fma_rate(threads):
    """float32 multiply-adds per second of fma_peak.c on `threads` threads, or None."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "fma_peak")
        try:
            subprocess.run([cc, "-O3", "-march=native", "-fopenmp", src, "-o", exe], check=True,
                           capture_output=True, timeout=120)
            out = subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True,
                                 timeout=120).stdout
            return float(out.split()[0])
        except (OSError, subprocess.SubprocessError, ValueError):
            return None


def cpu_rates(dtype=torch.float32):
    """(flop/s: 2 x the FMA rate, or a 1024^3 torch.mm's if fma_peak.c cannot be built; what it
    is; bytes/s of summing a 192 KiB vector 200 times over: it stays in L2 on every x86 of the
    last decade)."""
    macs = fma_rate(torch.get_num_threads())
    if macs is not None:
        flops, what = 2 * macs, "FMA peak (fma_peak.c)"
    else:
        n = 1024
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        flops, what = 2 * n ** 3 / _best(lambda: torch.mm(a, b), 7), "torch.mm (no C compiler)"
    v = torch.randn((192 << 10) // torch.finfo(dtype).bits * 8, dtype=dtype)
    reps = 200
    big = v.expand(reps, v.numel())  # one op that reads the same L2-resident 192 KiB reps times
    bw = reps * v.numel() * v.element_size() / _best(lambda: big.sum(), 7)
    return flops, bw, what


def recurrent_weights(c, gates):
    """Elements of one layer-direction's recurrent weights, read every step: W_hh (gates * H rows
    of the state size) and, with proj_size, W_hr (P x H)."""
    return gates * c.H * c.out_size + c.proj * c.H


def step_macs(c, gates=1):
    """Multiply-adds of one forward time step of the whole stack (every layer and direction):
    the input product W_ih x (gates * H x I_l), the recurrent product W_hh h (gates * H x state
    size) and, with proj_size, the projection W_hr (P x H). gates: 1 for the RNN, 4 for the LSTM."""
    D = 2 if c.bidir else 1
    return sum(c.B * (gates * c.H * (c.I if l == 0 else D * c.out_size) + recurrent_weights(c, gates)) * D
               for l in range(c.layers))


def cpu_floor_us(c, backward, flops_rate, bytes_rate, what=None, gates=1):
    D = 2 if c.bidir else 1
    elem = torch.finfo(c.dtype).bits // 8
    compute = (3 if backward else 1) * 2 * step_macs(c, gates) / flops_rate
    layer = recurrent_weights(c, gates) * elem
    bandwidth = ((2 if backward else 1) * layer * D * c.layers / bytes_rate) if layer > L1_BYTES else 0.0
    return max(compute, bandwidth) * 1e6, ("L2" if bandwidth > compute else "flop")
