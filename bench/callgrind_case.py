"""Instructions per call of one stepping or sequence case, counted by callgrind with the
instrumentation on around the measured calls only (not the import, not the warm-up). Counts do
not depend on the machine's load, so two builds can be compared on a busy machine:

    RNNFUSED_CPU_KERNEL=fused valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file=OUT python bench/callgrind_case.py CASE N
    callgrind_annotate OUT | grep 'PROGRAM TOTALS'       # divide by N

(`callgrind_control` must be on PATH; it ships with valgrind.) CASE is one of CASES below; one
thread; forcing RNNFUSED_CPU_KERNEL keeps the timing-based path choice out of the comparison.
Used for bench/results/2026-12-03-engine-redesign-before-after.md.
"""
import os
import subprocess
import sys

import torch

import rnnfused


def _cell(B, H, backward):
    m = rnnfused.FusedRNNCell(H, H)
    x, h = torch.randn(B, H, requires_grad=backward), torch.randn(B, H)
    if backward:
        return lambda: m(x, h).sum().backward()
    return lambda: _no_grad(m, x, h)


def _rnn(B, H, T, backward, with_h0):
    m = rnnfused.FusedRNN(H, H)
    args = [torch.randn(T, B, H, requires_grad=backward)]
    if with_h0:
        args.append(torch.randn(1, B, H))
    if backward:
        return lambda: m(*args)[0].sum().backward()
    return lambda: _no_grad(m, *args)


def _no_grad(m, *args):
    with torch.no_grad():
        m(*args)


CASES = {
    "cell_b1h64_fwd": lambda: _cell(1, 64, False),
    "cell_b8h64_fwdbwd": lambda: _cell(8, 64, True),
    "rnn_t1_b1h64_fwd": lambda: _rnn(1, 64, 1, False, True),
    "rnn_t1_b8h64_fwdbwd": lambda: _rnn(8, 64, 1, True, True),
    "seq_b8h64_t100_fwd": lambda: _rnn(8, 64, 100, False, False),
    "seq_b1h256_t100_fwdbwd": lambda: _rnn(1, 256, 100, True, False),
}


def main():
    case, n = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    f = CASES[case]()
    for _ in range(3):
        f()
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    for _ in range(n):
        f()
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)


if __name__ == "__main__":
    main()
