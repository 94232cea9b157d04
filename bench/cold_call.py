"""How much more the first call costs after other work than the calls after it (CPU).

The benchmark (bench_rnn.py) times its contenders interleaved, so each timed call follows other
work. This script measures what that costs on this machine: FusedRNN and, as a control, a plain
torch.mm loop, each timed three times in a row after a piece of other work (an nn.RNN call, a Python
loop, a 10 ms sleep). Medians in ms of the 1st / 2nd / 3rd call. See results/NOTES-cpu.md.

    python bench/cold_call.py [--shape B,H,T] [--threads N] [--rounds R]
"""
import argparse
import time

import torch

import rnnfused


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="1,32,1000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, H, T = map(int, a.shape.split(","))
    ref = torch.nn.RNN(H, H)
    fused = rnnfused.FusedRNN.from_rnn(ref)
    x, h0 = torch.randn(T, B, H), torch.randn(1, B, H)
    ma, mb = torch.randn(64, 64), torch.randn(64, 64)

    def mm_loop():
        for _ in range(80):
            torch.mm(ma, mb)

    def spin():
        s = 0
        for i in range(300000):
            s += i

    print(f"cpu isa {rnnfused.cpu_isa()}, threads {a.threads}, shape B,H,T = {a.shape}")
    work = {"FusedRNN": lambda: fused(x, h0), "torch.mm loop": mm_loop}
    before = {"after nn.RNN": lambda: ref(x, h0), "after Python loop": spin,
              "after 10 ms sleep": lambda: time.sleep(0.01)}
    with torch.no_grad():
        for name, f in work.items():
            for bname, b in before.items():
                times = [[], [], []]
                for _ in range(5):
                    f()
                for _ in range(a.rounds):
                    b()
                    for k in range(3):
                        t0 = time.perf_counter()
                        f()
                        times[k].append(time.perf_counter() - t0)
                med = [sorted(t)[len(t) // 2] * 1e3 for t in times]
                print(f"{name:14s} {bname:18s} " + " / ".join(f"{m:.3f}" for m in med) + " ms")


if __name__ == "__main__":
    main()
