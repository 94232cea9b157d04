"""FusedRNN under torch.autocast casts like nn.RNN and is at least as accurate.

nn.RNN under autocast: its matmuls are on autocast's lower-precision list, so on the CPU the whole
recurrence runs in the autocast dtype (output and h_n come back in it); on CUDA the cuDNN wrapper
casts input, h0 and weights. FusedRNN casts input, h0 and weights (floating, not float64: autocast's
eligibility rule) to the autocast dtype and runs its kernels there (fp32 accumulation).

Numerical rule (tests/support.py): against a float64 reference, our error is at most 2x nn.RNN's own
error in the same dtype.
"""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from support import check_errors, make_pair, requires_cuda


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(nonlinearity="relu", batch_first=True, num_layers=2),
]
IDS = ["tanh", "2layer-bidir", "relu-batch_first"]


def _inputs(rnn, T=20, B=5, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, 12) if rnn.batch_first else (T, B, 12), generator=g)
    D = 2 if rnn.bidirectional else 1
    hx = 0.5 * torch.randn(rnn.num_layers * D, B, 24, generator=g)
    return x.to(device), hx.to(device)


def _run(model, x, hx, autocast=None, backward_inside=False):
    """(out, h_n, grads of x, hx and every parameter) for a fixed random loss. The forward runs
    under autocast (device_type, dtype) when given; backward outside it, as PyTorch recommends,
    unless backward_inside."""
    for p in model.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    hx = hx.detach().clone().requires_grad_()
    enabled = autocast is not None
    device_type, dtype = autocast if enabled else (x.device.type, None)
    g = torch.Generator().manual_seed(7)
    with torch.autocast(device_type, dtype=dtype, enabled=enabled):
        out, h = model(x, hx)
        w_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)
        w_h = torch.randn(h.shape, generator=g, dtype=torch.float64).to(out.device)
        loss = (out.double() * w_out).sum() + (h.double() * w_h).sum()
        if backward_inside:
            loss.backward()
    if not backward_inside:
        loss.backward()
    return [out, h, x.grad, hx.grad] + [p.grad for p in model.parameters()]


def _reference(rnn, x, hx, rounded_to=None):
    """float64 forward and backward of rnn on x, hx. rounded_to: first round input, h0 and
    weights to that dtype (what autocast hands the kernels), so the reference is the exact answer
    to the problem autocast poses and the error is the kernels' arithmetic alone. Without it, the
    weights' rounding is in both errors; harmless for tanh, but with relu a rounded weight moves
    pre-activations across the kink at 0 and the max error measures which kinks happened to flip
    (noise of either sign), not accuracy."""
    r = (lambda t: t.to(rounded_to).double()) if rounded_to is not None else (lambda t: t.double())
    ref = nn.RNN(
        rnn.input_size, rnn.hidden_size, num_layers=rnn.num_layers, nonlinearity=rnn.nonlinearity,
        batch_first=rnn.batch_first, bidirectional=rnn.bidirectional,
    ).to(device=x.device, dtype=torch.float64)
    ref.load_state_dict({k: r(v) for k, v in rnn.state_dict().items()})
    return _run(ref, r(x), r(hx))


def _check_error_rule(ours, theirs, ref, param_names, dtype):
    """The numerical rule (tests/support.py) without a floor: nn.RNN's error must be above 0."""
    names = ["output", "h_n", "grad input", "grad hx"] + [f"grad {n}" for n in param_names]
    check_errors(ours, theirs, ref, names, dtype, floor=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_cpu_autocast_dtype_and_accuracy_like_nn_rnn(kw, dtype):
    rnn, fused = make_pair(12, 24, **kw)
    x, hx = _inputs(rnn)
    theirs = _run(rnn, x, hx, autocast=("cpu", dtype))
    ours = _run(fused, x, hx, autocast=("cpu", dtype))
    # Same dtypes as nn.RNN: output and h_n in the autocast dtype, grads in the leaves' fp32.
    assert theirs[0].dtype == dtype  # what nn.RNN does on this torch (it may change one day)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
    names = [n for n, _ in rnn.named_parameters()]
    _check_error_rule(ours, theirs, _reference(rnn, x, hx, rounded_to=dtype), names, dtype)
    if rnn.nonlinearity == "tanh":  # smooth: the unrounded problem's answer works as well
        _check_error_rule(ours, theirs, _reference(rnn, x, hx), names, dtype)


def test_cpu_autocast_default_hx_and_unbatched():
    rnn, fused = make_pair(12, 24, num_layers=2)
    x = torch.randn(9, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o1, h1 = rnn(x)
        o2, h2 = fused(x)
    assert (o2.dtype, h2.dtype, o2.shape, h2.shape) == (o1.dtype, h1.dtype, o1.shape, h1.shape)
    with torch.no_grad():
        o_ref, _ = _reference_forward(rnn, x)
    assert (o2.double() - o_ref).abs().max() <= 2 * (o1.double() - o_ref).abs().max()


def _reference_forward(rnn, x):
    ref = nn.RNN(rnn.input_size, rnn.hidden_size, num_layers=rnn.num_layers, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in rnn.state_dict().items()})
    return ref(x.double())


def test_autocast_disabled_inside_runs_fp32():
    rnn, fused = make_pair(12, 24)
    x, hx = _inputs(rnn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            out, h = fused(x, hx)
    assert out.dtype == torch.float32 and h.dtype == torch.float32
    ref_out, ref_h = rnn(x, hx)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)


def test_float64_model_is_not_cast_like_nn_rnn():
    rnn, fused = make_pair(12, 24)
    rnn.double()
    x, hx = _inputs(rnn)
    x, hx = x.double(), hx.double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o1, h1 = rnn(x, hx)
        o2, h2 = fused(x, hx)
    assert o1.dtype == o2.dtype == torch.float64
    torch.testing.assert_close(o2, o1)
    torch.testing.assert_close(h2, h1)


def test_cuda_autocast_is_ignored_on_cpu_tensors():
    """An autocast region for another device type changes nothing on the CPU (as for nn.RNN)."""
    rnn, fused = make_pair(12, 24)
    x, hx = _inputs(rnn)
    with torch.autocast("cuda", dtype=torch.float16, enabled=torch.cuda.is_available()):
        out, _ = fused(x, hx)
        ref, _ = rnn(x, hx)
    assert out.dtype == ref.dtype == torch.float32


def test_packed_sequence_under_autocast():
    rnn, fused = make_pair(12, 24, bidirectional=True)
    x, _ = _inputs(rnn, T=10, B=4)
    lengths = torch.tensor([10, 7, 3, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p1, h1 = rnn(pack_padded_sequence(x, lengths))
        p2, h2 = fused(pack_padded_sequence(x, lengths))
    assert p2.data.dtype == p1.data.dtype and h2.dtype == h1.dtype
    ref = nn.RNN(12, 24, bidirectional=True, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in rnn.state_dict().items()})
    with torch.no_grad():
        p_ref, h_ref = ref(pack_padded_sequence(x.double(), lengths))
    o1, o2, o_ref = (pad_packed_sequence(p)[0].double() for p in (p1, p2, p_ref))
    assert (o2 - o_ref).abs().max() <= 2 * (o1 - o_ref).abs().max()
    assert (h2.double() - h_ref).abs().max() <= 2 * (h1.double() - h_ref).abs().max()


def _check_compiled_equals_eager_under_autocast(device, dtype, **compile_kwargs):
    torch._dynamo.reset()
    rnn, fused = make_pair(12, 24, device=device, num_layers=2)
    x, hx = _inputs(rnn, device=device)
    compiled = torch.compile(fused, fullgraph=True, **compile_kwargs)
    eager = _run(fused, x, hx, autocast=(device, dtype))
    got = _run(compiled, x, hx, autocast=(device, dtype))
    for a, b in zip(got, eager):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_under_autocast_equals_eager_autocast():
    _check_compiled_equals_eager_under_autocast("cpu", torch.bfloat16, backend="aot_eager")


def test_backward_inside_autocast_region_like_nn_rnn():
    rnn, fused = make_pair(12, 24, num_layers=2)
    x, hx = _inputs(rnn)
    theirs = _run(rnn, x, hx, autocast=("cpu", torch.bfloat16), backward_inside=True)
    ours = _run(fused, x, hx, autocast=("cpu", torch.bfloat16), backward_inside=True)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
    names = [n for n, _ in rnn.named_parameters()]
    _check_error_rule(ours, theirs, _reference(rnn, x, hx, rounded_to=torch.bfloat16), names, torch.bfloat16)


# ------------------------------------------------------------------------------------------------
# CUDA. Caveat: nn.RNN on cuDNN goes through aten's _cudnn_rnn autocast wrapper, which has cast to
# float16 whatever autocast dtype was asked for; FusedRNN runs in the dtype asked for. So the
# dtypes are compared with nn.RNN for float16, and for bfloat16 the output must be bfloat16. The
# error baseline is nn.RNN run explicitly in the same dtype (no autocast).


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_cuda_autocast_dtype_and_accuracy(kw, dtype):
    rnn, fused = make_pair(12, 24, device="cuda", **kw)
    x, hx = _inputs(rnn, T=64, B=16, device="cuda")
    ours = _run(fused, x, hx, autocast=("cuda", dtype))
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    with torch.autocast("cuda", dtype=dtype):
        their_out, _ = rnn(x, hx)
    if dtype == torch.float16:
        assert their_out.dtype == dtype
    # nn.RNN's own error in this dtype: the module and inputs cast explicitly.
    low = nn.RNN(12, 24, **kw).to(device="cuda", dtype=dtype)
    low.load_state_dict({k: v.to(dtype) for k, v in rnn.state_dict().items()})
    theirs = _run(low, x.to(dtype), hx.to(dtype))
    # Gradients: ours land in the fp32 leaves, theirs in the low dtype; same rule for all.
    names = [n for n, _ in rnn.named_parameters()]
    _check_error_rule(ours, theirs, _reference(rnn, x, hx, rounded_to=dtype), names, dtype)


@requires_cuda
def test_cuda_compiled_under_autocast_equals_eager_autocast():
    _check_compiled_equals_eager_under_autocast("cuda", torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cpu_autocast_lstm(dtype):
    """FusedLSTM (with a projection) under CPU autocast computes in the autocast dtype, as
    FusedRNN does (outputs in it, gradients in the leaves' float32), within the numerical rule:
    against a float64 LSTM given the rounded input and weights (what autocast hands the kernels),
    at most 2x nn.LSTM's own error in that dtype. nn.LSTM itself is no guide here: on this torch,
    under CPU autocast it raises from oneDNN without a projection and returns float32 with one."""
    lstm, fused = make_pair(12, 24, module=nn.LSTM, num_layers=2, proj_size=8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5, 12, generator=g)

    def run(model, x, autocast):
        for p in model.parameters():
            p.grad = None
        x = x.detach().clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            out, (h, c) = model(x)
        w = torch.Generator().manual_seed(7)
        loss = sum((t.double() * torch.randn(t.shape, generator=w, dtype=torch.float64)).sum() for t in (out, h, c))
        loss.backward()
        return [out, h, c, x.grad] + [p.grad for p in model.parameters()]

    ours = run(fused, x, True)
    assert [t.dtype for t in ours[:3]] == [dtype] * 3
    assert all(t.dtype == torch.float32 for t in ours[3:])
    low = nn.LSTM(12, 24, num_layers=2, proj_size=8, dtype=dtype)  # nn.LSTM in the autocast dtype
    low.load_state_dict(lstm.state_dict())
    theirs = run(low, x.to(dtype), False)
    ref = nn.LSTM(12, 24, num_layers=2, proj_size=8, dtype=torch.float64)
    ref.load_state_dict({k: v.to(dtype).double() for k, v in lstm.state_dict().items()})
    want = run(ref, x.to(dtype).double(), False)
    names = ["output", "h_n", "c_n", "grad input"] + [f"grad {n}" for n, _ in lstm.named_parameters()]
    check_errors([t.double() for t in ours], [t.double() for t in theirs], want, names, dtype)
