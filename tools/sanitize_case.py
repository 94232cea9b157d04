"""A small forward + backward of rnnfused.FusedRNN on CUDA, for compute-sanitizer runs
(bench/gpu_check.sh). Uses the kernel path set in RNNFUSED_KERNEL (stepwise / persistent / auto)
and checks that the launcher really picks it. Covers every dtype, both directions (bidirectional),
variable lengths (PackedSequence with an empty-length-free mix), relu and tanh, and two hidden
sizes per dtype: one whose W_hh fits one CTA (persistent: no grid barrier) and one that needs a
group of CTAs (persistent: cooperative launch + per-step barrier).

    RNNFUSED_KERNEL=persistent compute-sanitizer --tool racecheck python tools/sanitize_case.py
"""
import os
import sys

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnfused
from rnnfused import FusedRNN

# (dtype, hidden sizes): the second size does not fit one CTA's shared memory (G > 1).
CASES = [
    (torch.float32, (24, 300)),
    (torch.float64, (24, 200)),
    (torch.float16, (24, 400)),
    (torch.bfloat16, (24, 400)),
]


def main() -> int:
    want = os.environ.get("RNNFUSED_KERNEL", "auto")
    only = set(sys.argv[1:])
    torch.manual_seed(0)
    T, B, I = 4, 3, 5
    lengths = torch.tensor([4, 3, 1])
    for dtype, sizes in CASES:
        if only and str(dtype).replace("torch.", "") not in only:
            continue
        for H in sizes:
            for relu in (False, True):
                names = {bwd: rnnfused.cuda_kernel_name(B, H, dtype, bwd) for bwd in (False, True)}
                if want in ("stepwise", "persistent"):
                    assert names[False] == want and names[True] == want, (want, names)
                m = FusedRNN(I, H, num_layers=2, nonlinearity="relu" if relu else "tanh",
                             bidirectional=True, device="cuda", dtype=dtype)
                x = (torch.randn(T, B, I, device="cuda") * 0.5).to(dtype).requires_grad_(True)
                h0 = (torch.randn(4, B, H, device="cuda") * 0.5).to(dtype).requires_grad_(True)
                out, hn = m(pack_padded_sequence(x, lengths), h0)
                loss = out.data.float().square().sum() + hn.float().sum()
                loss.backward()
                # and the unpacked path (no lengths)
                out2, hn2 = m(x, h0)
                (out2.float().sum() + hn2.float().sum()).backward()
                torch.cuda.synchronize()
                for name, t in [("out", out.data), ("hn", hn), ("dx", x.grad), ("dh0", h0.grad)] + [
                        ("d" + n, p.grad) for n, p in m.named_parameters()]:
                    assert torch.isfinite(t.float()).all(), f"{dtype} H={H}: non-finite {name}"
                print(f"ok {str(dtype):15s} H={H:4d} relu={relu} kernels fwd={names[False]} "
                      f"bwd={names[True]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
