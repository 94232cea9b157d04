"""What the tests share: torch.nn / rnnfused module pairs with identical weights, runs of forward
and backward with fixed upstream gradients, and the one numerical comparison rule.

The numerical rule (docs/design.md, "Numerical rule for tests"): every result (output, h_n and
the gradient of every input and parameter) is compared with torch.nn on the same inputs and
weights and with a float64 reference (the same weights in float64: the exact answer).
- float32 and float64: tight against both (`assert_close_all` with `TOL` / `TOL_REF32`, or
  `check_errors`' bound `TIGHT`).
- float16 and bfloat16: our error against the float64 reference is at most 2x torch.nn's own error
  in the same dtype (`check_errors`), plus a small floor relative to the reference's magnitude
  where a test allows one.
- NaN never passes (a NaN error fails every bound; non-finite results are rejected by name).
"""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnfused

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ------------------------------------------------------------------------------------------------
# Pairs


# The rnnfused twin of each torch.nn module.
FUSED = {nn.RNN: rnnfused.FusedRNN, nn.RNNCell: rnnfused.FusedRNNCell, nn.LSTM: rnnfused.FusedLSTM,
         nn.LSTMCell: rnnfused.FusedLSTMCell}

# The cells the module tests run over, by id: (torch.nn module, its keyword arguments). Tests
# parametrize over these (`@pytest.mark.parametrize("cell", CELLS)`) instead of copying files;
# `cell_kw(cell, H)` gives the module and arguments for hidden size H.
CELLS = ["tanh", "relu", "lstm", "lstm_proj"]


def cell_kw(cell, hidden_size=None):
    """(torch.nn module class, its cell-specific keyword arguments) for a cell id of CELLS. The
    projection (proj_size) is hidden_size // 2 (at least 1; nn.LSTM needs it below hidden_size)."""
    if cell in ("tanh", "relu"):
        return nn.RNN, dict(nonlinearity=cell)
    if cell == "lstm":
        return nn.LSTM, {}
    if cell == "lstm_proj":
        assert hidden_size is not None and hidden_size >= 2, "proj_size needs hidden_size >= 2"
        return nn.LSTM, dict(proj_size=max(1, hidden_size // 2))
    raise ValueError(f"unknown cell {cell!r}")


def random_state(module, batch, seed=None, dtype=None, unbatched=False):
    """A random initial state for a torch.nn (or rnnfused) module: h0 (L*D, B, P), or for an LSTM
    the pair (h0, c0) with c0 (L*D, B, H); without the batch dimension when unbatched."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    dtype = dtype or next(module.parameters()).dtype
    D = 2 if module.bidirectional else 1
    P = getattr(module, "proj_size", 0) or module.hidden_size
    lead = (module.num_layers * D,) + (() if unbatched else (batch,))
    h = torch.randn(*lead, P, generator=g, dtype=dtype)
    if module.mode != "LSTM":
        return h
    return h, torch.randn(*lead, module.hidden_size, generator=g, dtype=dtype)


def make_pair(*args, module=nn.RNN, dtype=torch.float32, device="cpu", seed=0, twin="share", **kw):
    """(torch.nn module, its rnnfused twin) with identical weights, fresh random (not zeros).

    torch.manual_seed(seed), then `module(*args, dtype=dtype, **kw)` (nn.RNN, nn.RNNCell) is built
    on the CPU (so its weights do not depend on `device`) and moved to `device`. The twin:
    - "share": rnnfused.convert's, holding the very Parameter objects of the nn module;
    - "copy": rnnfused.convert's of a deep copy (its own Parameters, same values);
    - "load": built by its own constructor with the same arguments (drawing its own random
      initialisation, which moves the global random stream on), then load_state_dict."""
    torch.manual_seed(seed)
    ref = module(*args, dtype=dtype, **kw).to(device)
    if twin == "share":
        fused = rnnfused.convert(ref)
    elif twin == "copy":
        fused = rnnfused.convert(copy.deepcopy(ref))
    elif twin == "load":
        fused = FUSED[module](*args, dtype=dtype, **kw).to(device)
        fused.load_state_dict(ref.state_dict())
    else:
        raise ValueError(f"twin must be share, copy or load, got {twin!r}")
    return ref, fused


def make(seed=0, device="cuda", dtype=torch.float32, module=nn.RNN, **kw):
    """(nn module on device/dtype, its rnnfused twin, float64 CPU reference), same weights: the
    reference is built first, in float64 after torch.manual_seed(seed); the nn module is a copy of
    it cast to dtype, and the twin is built on device in dtype and loads the nn module's weights."""
    torch.manual_seed(seed)
    ref = module(**kw, dtype=torch.float64)
    theirs = copy.deepcopy(ref).to(device=device, dtype=dtype)
    fused = FUSED[module](**kw, device=device, dtype=dtype)
    fused.load_state_dict(theirs.state_dict())
    return theirs, fused, ref


# ------------------------------------------------------------------------------------------------
# Inputs and runs


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rand(shape, seed, scale=1.0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64) * scale


def _tensor(out):
    return out.data if isinstance(out, PackedSequence) else out


def to_float64(x):
    if isinstance(x, PackedSequence):
        return PackedSequence(x.data.double(), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    if isinstance(x, tuple):  # an LSTM's (h, c)
        return tuple(t.double() for t in x)
    return None if x is None else x.double()


def run_fwd_bwd(module, x, h0=None, seed=1):
    """Forward, then backward of a random projection of (output, final state).

    h0: h0, or for an LSTM (h0, c0), or None. Returns (output, h_n, grads) where h_n is the final
    state (for an LSTM the pair (h_n, c_n) stacked: (2, ...) when h and c have one shape, else
    h_n and c_n flattened and concatenated) and grads = [d input, d h0 (and d c0) if given,
    d param...] in the module's parameter order. x may be a tensor or a PackedSequence."""
    x_leaf = _tensor(x).detach().clone().requires_grad_(True)
    if isinstance(x, PackedSequence):
        inp = PackedSequence(x_leaf, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    else:
        inp = x_leaf
    leaves = [x_leaf]
    h = None
    if h0 is not None:
        if isinstance(h0, tuple):
            h = tuple(t.detach().clone().requires_grad_(True) for t in h0)
            leaves += list(h)
        else:
            h = h0.detach().clone().requires_grad_(True)
            leaves.append(h)
    out, hn = module(inp, h)
    out_t = _tensor(out)
    states = list(hn) if isinstance(hn, tuple) else [hn]
    g = torch.Generator(device="cpu").manual_seed(seed)
    g_out = torch.randn(out_t.shape, generator=g, dtype=torch.float64).to(out_t)
    loss = (out_t * g_out).sum()
    for s in states:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=torch.float64).to(s)).sum()
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    if len(states) == 1:
        state = states[0].detach()
    elif states[0].shape == states[1].shape:
        state = torch.stack([s.detach() for s in states])
    else:
        state = torch.cat([s.detach().flatten() for s in states])
    return out_t.detach(), state, [gr.detach() for gr in grads]


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


def op_args(T, B, I, H, dtype=torch.float64, seed=0, lengths=None, device="cuda"):
    """Random arguments of rnnfused.ops.rnn_layer on `device`."""
    x = rand((T, B, I), seed).to(device, dtype)
    h0 = rand((B, H), seed + 1, 0.5).to(device, dtype)
    w_ih = rand((H, I), seed + 2, 0.4).to(device, dtype)
    w_hh = rand((H, H), seed + 3, 0.4).to(device, dtype)
    b_ih = rand((H,), seed + 4, 0.1).to(device, dtype)
    b_hh = rand((H,), seed + 5, 0.1).to(device, dtype)
    ln = None if lengths is None else torch.tensor(lengths, dtype=torch.int64, device=device)
    return x, h0, w_ih, w_hh, b_ih, b_hh, ln


# ------------------------------------------------------------------------------------------------
# The numerical rule

# Tight, as torch.testing.assert_close tolerances: against torch.nn in the same dtype (TOL), and
# float32 against the float64 reference (TOL_REF32: the rounding of ~T·H float32 operations).
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}
TOL_REF32 = dict(rtol=1e-4, atol=1e-4)
# Tight, as a bound on the max error relative to the reference's magnitude (max(1, |ref|max)).
TIGHT = {torch.float64: 1e-9, torch.float32: 1e-4}
# Floor of the half types' bound (2x torch.nn's error + FLOOR[dtype] x the reference's magnitude).
FLOOR = {torch.float64: 1e-10, torch.float32: 2e-6, torch.float16: 1e-4, torch.bfloat16: 1e-3}


def assert_close_all(got, want, rtol, atol, what=""):
    """Two run_fwd_bwd results agree within rtol/atol, item by item; no NaN in a gradient."""
    out_g, hn_g, grads_g = got
    out_w, hn_w, grads_w = want
    torch.testing.assert_close(out_g, out_w.to(out_g.dtype), rtol=rtol, atol=atol, msg=f"{what} output")
    torch.testing.assert_close(hn_g, hn_w.to(hn_g.dtype), rtol=rtol, atol=atol, msg=f"{what} h_n")
    assert len(grads_g) == len(grads_w)
    for i, (a, b) in enumerate(zip(grads_g, grads_w)):
        assert not torch.isnan(a).any(), f"{what} grad {i} has NaN"
        torch.testing.assert_close(a, b.to(a.dtype), rtol=rtol, atol=atol, msg=f"{what} grad {i}")


def compare_with_nn(ref, fused, x, h0, dtype, tol=None):
    """The rule for float32/float64 on the CPU: `fused` against nn module `ref` (same weights,
    same dtype) within TOL[dtype] (or `tol`), and float32 also against the float64 reference
    within TOL_REF32. Returns fused's run_fwd_bwd result."""
    got = run_fwd_bwd(fused, x, h0)
    want = run_fwd_bwd(ref, x, h0)
    assert_close_all(got, want, **(tol or TOL[dtype]), what="vs nn.RNN")
    if dtype == torch.float32:
        want64 = run_fwd_bwd(copy.deepcopy(ref).double(), to_float64(x), to_float64(h0))
        assert_close_all(got, want64, **TOL_REF32, what="vs float64 reference")
    return got


def check_errors(ours, theirs, ref, names, dtype, floor=None, tight=None):
    """The rule as bounds on max errors, item by item: ours (rnnfused), theirs (torch.nn in the
    same dtype on the same inputs, or None) and ref (the float64 reference) are lists of tensors
    named by `names`; dtype is the computation's dtype.

    Each of ours must have the reference's shape and be finite. With scale = max(1, |ref|max):
    - theirs given: error <= 2 x torch.nn's error + floor x scale, floor = FLOOR[dtype] unless
      given; with floor=0, torch.nn's error must be above 0 (else the comparison says nothing);
    - float32/float64: also error <= tight x scale, tight = TIGHT[dtype] unless given (theirs=None:
      this bound alone)."""
    if theirs is None:
        assert dtype in TIGHT
        theirs = [None] * len(ref)
    assert len(ours) == len(theirs) == len(ref) == len(names), "one name per result"
    floor = FLOOR[dtype] if floor is None else floor
    tight = TIGHT.get(dtype) if tight is None else tight
    for o, c, r, n in zip(ours, theirs, ref, names):
        assert o.shape == r.shape, f"{n}: shape {tuple(o.shape)} vs reference {tuple(r.shape)}"
        assert torch.isfinite(o).all(), f"{n}: non-finite values in rnnfused's result"
        scale = max(1.0, r.abs().max().item()) if r.numel() else 1.0
        e_ours = (o.double() - r).abs().max().item() if r.numel() else 0.0
        e_them = (c.double() - r).abs().max().item() if (c is not None and r.numel()) else 0.0
        if c is not None:
            if floor == 0:
                assert e_them > 0, f"{n}: torch.nn is exact, the comparison says nothing"
            bound = 2.0 * e_them + floor * scale
        else:
            bound = tight * scale
        assert e_ours <= bound, (f"{n} ({dtype}): rnnfused error {e_ours:.3g} > bound {bound:.3g} "
                                 f"(torch.nn error {e_them:.3g})")
        if tight is not None:
            assert e_ours <= tight * scale, f"{n} ({dtype}): error {e_ours:.3g} not tight"


def compare(kw, T, B, dtype=torch.float32, h0=True, lengths=None, enforce_sorted=True,
            unbatched=False, seed=0, scale=1.0, device="cuda"):
    """FusedRNN against nn.RNN on `device` (cuDNN on a GPU; PyTorch's CPU loop where the CUDA path
    runs under the emulator, device "cpu") and a float64 CPU reference, forward and every
    gradient, with check_errors (TF32 off on a GPU: the CUDA tests' fixture)."""
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
    check_errors(ours, theirs, refr, names(ref, hx is not None), dtype)


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
    check_errors(ours, None, refr, names(ref, True), torch.float32)
