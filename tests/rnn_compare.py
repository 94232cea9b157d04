"""The comparison rule of the CUDA tests, shared by tests/test_cuda.py (on a GPU) and
tests/test_emulated.py (the same CUDA code path under the SIMT emulator, on CPU tensors).

Numerical rule (DESIGN.md): float64 and float32 tight (TF32 off on both sides); for float16 and
bfloat16 our max error against the float64 reference must be at most 2x nn.RNN's own error in the
same dtype, plus a tiny absolute floor. NaN never passes.
"""
import copy

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnfused import FusedRNN

# Absolute floor of the error bound, relative to the reference's magnitude (max(1, |ref|max)).
FLOOR = {torch.float64: 1e-10, torch.float32: 2e-6, torch.float16: 1e-4, torch.bfloat16: 1e-3}
# float32/float64 must also be tight in absolute terms (relative to the reference's magnitude).
TIGHT = {torch.float64: 1e-9, torch.float32: 1e-4}


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rand(shape, seed, scale=1.0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64) * scale


def make(seed=0, device="cuda", dtype=torch.float32, **kw):
    """(nn.RNN on device/dtype, FusedRNN with the same weights, float64 CPU reference)."""
    torch.manual_seed(seed)
    ref = nn.RNN(**kw, dtype=torch.float64)
    rnn = copy.deepcopy(ref).to(device=device, dtype=dtype)
    fused = FusedRNN(**kw, device=device, dtype=dtype)
    fused.load_state_dict(rnn.state_dict())
    return rnn, fused, ref


def run(model, x, h0, device, dtype, lengths=None, enforce_sorted=True, seed=123):
    """Forward + backward of `model`; returns [output, h_n, dx, dh0 (if h0), d params...] (float64
    on the CPU). Upstream gradients are fixed random tensors, identical for every model."""
    x = x.to(device=device, dtype=dtype).detach().requires_grad_(True)
    h = None if h0 is None else h0.to(device=device, dtype=dtype).detach().requires_grad_(True)
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=model.batch_first,
                                   enforce_sorted=enforce_sorted)
    out, hn = model(inp) if h is None else model(inp, h)
    od = out.data if lengths is not None else out
    go = rand(od.shape, seed).to(device=device, dtype=dtype)
    gh = rand(hn.shape, seed + 1).to(device=device, dtype=dtype)
    ((od * go).sum() + (hn * gh).sum()).backward()
    res = [od, hn, x.grad] + ([h.grad] if h is not None else [])
    res += [p.grad for p in model.parameters()]
    return [r.detach().to("cpu", torch.float64) for r in res]


def names(model, with_h0):
    return ["output", "h_n", "grad_input"] + (["grad_h0"] if with_h0 else []) + [
        "grad_" + n for n, _ in model.named_parameters()]


def check(ours, theirs, ref, names, dtype):
    """theirs=None: no nn.RNN result to compare with (eval-mode backward); the tight bound only."""
    if theirs is None:
        assert dtype in TIGHT
        theirs = [None] * len(ref)
    for o, c, r, n in zip(ours, theirs, ref, names):
        assert o.shape == r.shape, f"{n}: shape {tuple(o.shape)} vs reference {tuple(r.shape)}"
        assert torch.isfinite(o).all(), f"{n}: non-finite values in rnnfused's result"
        scale = max(1.0, r.abs().max().item()) if r.numel() else 1.0
        e_ours = (o - r).abs().max().item() if r.numel() else 0.0
        e_them = (c - r).abs().max().item() if (c is not None and r.numel()) else 0.0
        bound = 2.0 * e_them + FLOOR[dtype] * scale if c is not None else TIGHT[dtype] * scale
        assert e_ours <= bound, (f"{n} ({dtype}): rnnfused error {e_ours:.3g} > bound {bound:.3g} "
                                 f"(nn.RNN error {e_them:.3g})")
        if dtype in TIGHT:
            assert e_ours <= TIGHT[dtype] * scale, f"{n} ({dtype}): error {e_ours:.3g} not tight"


def compare(kw, T, B, dtype=torch.float32, h0=True, lengths=None, enforce_sorted=True,
            unbatched=False, seed=0, scale=1.0, device="cuda"):
    """FusedRNN against nn.RNN on `device` (cuDNN on a GPU; PyTorch's CPU loop where the CUDA path
    runs under the emulator, device "cpu") and a float64 CPU reference, forward and every
    gradient, with the rule above."""
    rnn, fused, ref = make(seed, device, dtype, **kw)
    I, H = kw["input_size"], kw["hidden_size"]
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    if unbatched:
        x = rand((T, I), seed + 10, scale)
        hx = rand((L * D, H), seed + 11, 0.5) if h0 else None
    else:
        shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
        x = rand(shape, seed + 10, scale)
        hx = rand((L * D, B, H), seed + 11, 0.5) if h0 else None
    ours = run(fused, x, hx, device, dtype, lengths, enforce_sorted)
    theirs = run(rnn, x, hx, device, dtype, lengths, enforce_sorted)
    refr = run(ref, x, hx, "cpu", torch.float64, lengths, enforce_sorted)
    check(ours, theirs, refr, names(ref, hx is not None), dtype)


def op_args(T, B, I, H, dtype=torch.float64, seed=0, lengths=None, device="cuda"):
    """Random arguments of rnnfused.ops.rnn_fwd on `device`."""
    x = rand((T, B, I), seed).to(device, dtype)
    h0 = rand((B, H), seed + 1, 0.5).to(device, dtype)
    w_ih = rand((H, I), seed + 2, 0.4).to(device, dtype)
    w_hh = rand((H, H), seed + 3, 0.4).to(device, dtype)
    b_ih = rand((H,), seed + 4, 0.1).to(device, dtype)
    b_hh = rand((H,), seed + 5, 0.1).to(device, dtype)
    ln = None if lengths is None else torch.tensor(lengths, dtype=torch.int64, device=device)
    return x, h0, w_ih, w_hh, b_ih, b_hh, ln


def check_eval_mode_backward(device="cuda"):
    """Backward in eval mode (cuDNN refuses it) against the float64 reference, tight."""
    kw = dict(input_size=5, hidden_size=20, num_layers=2, bidirectional=True)
    _, fused, ref = make(3, device, torch.float32, **kw)
    fused.eval()
    ref.eval()
    x = rand((6, 3, 5), 5)
    h0 = rand((4, 3, 20), 6, 0.5)
    ours = run(fused, x, h0, device, torch.float32)
    refr = run(ref, x, h0, "cpu", torch.float64)
    check(ours, None, refr, names(ref, True), torch.float32)
