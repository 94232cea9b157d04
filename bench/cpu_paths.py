"""Times the CPU paths of the rnnfused ops (RNNFUSED_CPU_KERNEL=fused|gemm, each instruction set
RNNFUSED_CPU_ISA, thread counts) on the same inputs, forward and backward of one layer, and
nn.RNN's forward beside them. Used to check the path choice in csrc/cpu/rnn_cpu.cpp
(choose_path); see bench/results/NOTES-cpu.md.

  python bench/cpu_paths.py 1,32,1000 8,64,1000 --threads 1 2 --isa avx2 default

Prints the processor, then per shape and thread count: µs per step, medians of --reps runs.
Time it under the exclusive lock (flock -x /tmp/rnnfused-cpu.lock) on a quiet machine."""
import argparse
import os
import platform
import time

import torch

import rnnfused
from rnnfused import ops


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def med(fn, n):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[n // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shapes", nargs="+", help="B,H,T")
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--isa", nargs="+", default=["auto"])
    ap.add_argument("--paths", nargs="+", default=["fused", "gemm"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-bwd", action="store_true")
    ap.add_argument("--native", action="store_true", help="also time nn.RNN forward")
    a = ap.parse_args()
    print(f"cpu: {cpu_name()}; kernels: {rnnfused.cpu_isa()}; torch {torch.__version__}; "
          f"ATen capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    torch.manual_seed(0)
    for spec in a.shapes:
        B, H, T = map(int, spec.split(","))
        x = torch.randn(T, B, H)
        h0 = torch.randn(B, H)
        w_ih = torch.randn(H, H) / H ** 0.5
        w_hh = torch.randn(H, H) / H ** 0.5
        b = torch.randn(H)
        out, _ = ops.rnn_layer(x, h0, w_ih, w_hh, b, b)
        go = torch.randn_like(out)
        rnn = torch.nn.RNN(H, H)
        for th in a.threads:
            torch.set_num_threads(th)
            res = []
            for isa in a.isa:
                os.environ["RNNFUSED_CPU_ISA"] = isa
                for path in a.paths:
                    os.environ["RNNFUSED_CPU_KERNEL"] = path
                    f = med(lambda: ops.rnn_layer(x, h0, w_ih, w_hh, b, b), a.reps) / T * 1e6
                    s = f"{isa}/{path}: fwd {f:.2f}"
                    if not a.no_bwd:
                        bw = med(lambda: ops.rnn_layer_backward(go, None, x, h0, w_ih, w_hh, out, None, False,
                                                     False, [True, True, True, True]), a.reps) / T * 1e6
                        s += f" bwd {bw:.2f}"
                    res.append(s)
            os.environ.pop("RNNFUSED_CPU_KERNEL")
            os.environ.pop("RNNFUSED_CPU_ISA")
            if a.native:
                with torch.no_grad():
                    nat = med(lambda: rnn(x, h0[None]), a.reps) / T * 1e6
                res.append(f"nn.RNN: fwd {nat:.2f}")
            print(f"B={B} H={H} T={T} threads={th} us/step:", " | ".join(res), flush=True)


if __name__ == "__main__":
    main()
