"""FusedRNNCell against nn.RNNCell and FusedLSTMCell against nn.LSTMCell, the cell ops against a
float64 reference, and FusedRNN with the step input mode against the hoisted one on the same
inputs."""
import copy
import io

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import rnnfused
from rnnfused import FusedLSTMCell, FusedRNN, FusedRNNCell, ops
from rnnfused.reference import lstm_cell_ref, rnn_cell_ref
from support import assert_close_all, check_errors, make_pair, run_fwd_bwd

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _run(cell, x, hx, seed=1):
    """(outputs, grads of x, hx (if given: h, or an LSTM's (h, c)) and every parameter) for a
    random projection of the outputs (h', or an LSTM's h' and c')."""
    x = x.detach().clone().requires_grad_()
    leaves = [x]
    if isinstance(hx, tuple):
        hx = tuple(t.detach().clone().requires_grad_() for t in hx)
        leaves += list(hx)
    elif hx is not None:
        hx = hx.detach().clone().requires_grad_()
        leaves.append(hx)
    outs = cell(x, hx)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
    grads = torch.autograd.grad(loss, leaves + list(cell.parameters()))
    return [o.detach() for o in outs] + [gr.detach() for gr in grads]


# Cell ids: Elman (tanh, relu) and the LSTM; (nn module, keyword arguments).
CELL_MODULES = {"tanh": (nn.RNNCell, dict(nonlinearity="tanh")), "relu": (nn.RNNCell, dict(nonlinearity="relu")),
                "lstm": (nn.LSTMCell, dict())}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell", list(CELL_MODULES))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_matches_nn_rnncell(dtype, cell, bias, batched, with_hx, cpu_kernel):
    module, kw = CELL_MODULES[cell]
    ref, fused = make_pair(5, 7, module=module, dtype=dtype, bias=bias, **kw)
    g = torch.Generator().manual_seed(2)
    x = torch.randn((3, 5) if batched else (5,), generator=g, dtype=dtype)
    hx = None
    if with_hx:
        hx = torch.randn((3, 7) if batched else (7,), generator=g, dtype=dtype)
        if cell == "lstm":
            hx = (hx, torch.randn((3, 7) if batched else (7,), generator=g, dtype=dtype))
    got, want = _run(fused, x, hx), _run(ref, x, hx)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert len(got) == len(want)
    assert got[0].shape == want[0].shape
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, **tol, msg=f"item {i}")


def test_constructor_parameters_init_repr_like_nn_rnncell():
    for kw in [dict(), dict(bias=False), dict(nonlinearity="relu")]:
        torch.manual_seed(3)
        ref = nn.RNNCell(4, 6, **kw)
        torch.manual_seed(3)
        fused = FusedRNNCell(4, 6, **kw)
        assert [n for n, _ in fused.named_parameters()] == [n for n, _ in ref.named_parameters()]
        for (n, a), (_, b) in zip(fused.named_parameters(), ref.named_parameters()):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)  # same init, same random stream
        assert repr(fused) == repr(ref).replace("RNNCell", "FusedRNNCell")
    assert FusedRNNCell(4, 6, True, "relu").nonlinearity == "relu"  # positional, as nn.RNNCell
    fused = FusedRNNCell(4, 6, device="cpu", dtype=torch.float64)
    assert fused.weight_ih.dtype == torch.float64


def test_lstm_cell_constructor_parameters_init_repr_state_dict():
    for kw in [dict(), dict(bias=False)]:
        torch.manual_seed(3)
        ref = nn.LSTMCell(4, 6, **kw)
        torch.manual_seed(3)
        fused = FusedLSTMCell(4, 6, **kw)
        assert [n for n, _ in fused.named_parameters()] == [n for n, _ in ref.named_parameters()]
        for (n, a), (_, b) in zip(fused.named_parameters(), ref.named_parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)  # same init, same random stream
        assert repr(fused) == repr(ref).replace("LSTMCell", "FusedLSTMCell")
        back = nn.LSTMCell(4, 6, **kw)
        back.load_state_dict(FusedLSTMCell(4, 6, **kw).state_dict())
        fused.load_state_dict(back.state_dict())
        x = torch.randn(2, 4)
        for a, b in zip(fused(x), back(x)):
            torch.testing.assert_close(a, b)
    assert FusedLSTMCell(4, 6, False).bias is False  # positional, as nn.LSTMCell
    assert FusedLSTMCell(4, 6, device="cpu", dtype=torch.float64).weight_ih.dtype == torch.float64
    with pytest.raises(TypeError):
        FusedLSTMCell.from_cell(nn.RNNCell(2, 3))


@pytest.mark.parametrize(
    "x_shape, h_shape, c_shape",
    [((3, 11), (3, 7), (3, 7)), ((3, 5), (3, 8), (3, 7)), ((3, 5), (3, 7), (3, 8)), ((3, 5), (4, 7), (4, 7)),
     ((3, 5), (3, 7), (2, 7)), ((3, 5), (3, 1, 1, 7), (3, 7)), ((3, 5), (3, 7), (3, 1, 7)), ((1, 3, 5), None, None)],
)
def test_bad_inputs_raise_like_nn_lstmcell(x_shape, h_shape, c_shape):
    """The same exception, message included, as nn.LSTMCell."""
    ref, fused = make_pair(5, 7, module=nn.LSTMCell, dtype=torch.float64)
    x = torch.randn(x_shape, dtype=torch.float64)
    hx = None if h_shape is None else (torch.randn(h_shape, dtype=torch.float64),
                                       torch.randn(c_shape, dtype=torch.float64))

    def raised(m):
        try:
            m(x, hx)
        except Exception as e:  # noqa: BLE001 - what nn.LSTMCell raises, whatever it is
            return type(e), str(e).split("\n")[0]
        return None

    want = raised(ref)
    assert want is not None
    assert raised(fused) == want


def test_state_dict_both_ways():
    ref, _ = make_pair(5, 7, module=nn.RNNCell, dtype=torch.float64)
    fused = FusedRNNCell(5, 7, dtype=torch.float64)
    fused.load_state_dict(ref.state_dict())
    back = nn.RNNCell(5, 7, dtype=torch.float64)
    back.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(fused(x), ref(x))
    torch.testing.assert_close(back(x), ref(x))


def test_convert_swaps_rnncell_and_shares_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.RNNCell(5, 7)
            self.rnn = nn.RNN(7, 3)

    net = Net()
    params = list(net.parameters())
    rnnfused.convert(net)
    assert isinstance(net.cell, FusedRNNCell) and isinstance(net.rnn, FusedRNN)
    assert all(a is b for a, b in zip(net.parameters(), params))
    cell = nn.RNNCell(2, 3)
    assert isinstance(rnnfused.convert(cell), FusedRNNCell)


@pytest.mark.parametrize(
    "x_shape, hx_shape, error, match",
    [
        ((3, 11), (3, 7), RuntimeError, "input has inconsistent input_size: got 11 expected 5"),
        ((3, 5), (3, 8), RuntimeError, "hidden0 has inconsistent hidden_size: got 8, expected 7"),
        ((3, 5), (4, 7), RuntimeError, "Input batch size 3 doesn't match hidden0 batch size 4"),
        ((3, 5), (3, 1, 1, 7), ValueError, "Expected hidden to be 1D or 2D, got 4D instead"),
        ((1, 3, 5), None, ValueError, "Expected input to be 1D or 2D, got 3D instead"),
    ],
)
def test_bad_inputs_raise_like_nn_rnncell(x_shape, hx_shape, error, match):
    ref, fused = make_pair(5, 7, module=nn.RNNCell, dtype=torch.float64)
    x = torch.randn(x_shape, dtype=torch.float64)
    hx = None if hx_shape is None else torch.randn(hx_shape, dtype=torch.float64)
    with pytest.raises(error, match=match):
        ref(x, hx)
    with pytest.raises(error, match=match):
        fused(x, hx)


def test_unknown_nonlinearity_raises_at_forward_like_nn_rnncell():
    ref, fused = nn.RNNCell(2, 3, nonlinearity="gelu"), FusedRNNCell(2, 3, nonlinearity="gelu")
    for m in (ref, fused):
        with pytest.raises(RuntimeError, match="Unknown nonlinearity: gelu"):
            m(torch.randn(1, 2))


def _error(fn):
    with pytest.raises(Exception) as e:
        fn()
    return type(e.value), str(e.value).splitlines()[0]


F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("weights, x_dtype, hx_dtype, batched", [
    (F32, F64, None, True),               # input in another dtype than the module
    (F32, F64, F64, True),
    (F32, F32, F64, True),                # hx alone
    (F32, torch.float16, None, True),
    (F32, torch.bfloat16, F32, True),
    (F32, torch.int64, None, True),       # an integer input
    (F64, F32, None, True),               # a float64 module, float32 input
    (F64, F64, F32, True),
    (F32, F64, None, False),              # unbatched
    (F32, F32, F64, False),
])
def test_dtype_mismatch_raises_nn_rnncells_error(weights, x_dtype, hx_dtype, batched):
    """The same exception and message as nn.RNNCell ("mat1 and mat2 must have the same dtype, but
    got Double and Float"): input against weight_ih first, then hx against weight_hh."""
    ref, fused = make_pair(5, 7, module=nn.RNNCell, dtype=weights)
    x = torch.randn((3, 5) if batched else (5,), dtype=F64).to(x_dtype)
    hx = None if hx_dtype is None else torch.randn((3, 7) if batched else (7,), dtype=hx_dtype)
    want = _error(lambda: ref(x, hx))
    assert want[0] is RuntimeError and "must have the same dtype" in want[1], want
    assert _error(lambda: fused(x, hx)) == want


@pytest.mark.parametrize("x_shape, hx_shape", [((3, 4), None), ((3, 5), (3, 6)), ((3, 5), (2, 7))])
def test_wrong_shape_and_dtype_raise_the_shape_error_first(x_shape, hx_shape):
    """nn.RNNCell checks shapes before dtypes: the same error comes first here."""
    ref, fused = make_pair(5, 7, module=nn.RNNCell)
    x = torch.randn(x_shape, dtype=F64)
    hx = None if hx_shape is None else torch.randn(hx_shape, dtype=F64)
    want = _error(lambda: ref(x, hx))
    assert "dtype" not in want[1], want
    assert _error(lambda: fused(x, hx)) == want


def test_dtype_mismatch_without_bias_names_both_dtypes():
    """Without bias nn.RNNCell's matmul words it in C++ type names ("expected m1 and m2 to have the
    same dtype, but got: double != float"); FusedRNNCell says it as with a bias, in ATen's names."""
    ref, fused = make_pair(5, 7, module=nn.RNNCell, bias=False)
    x = torch.randn(3, 5, dtype=F64)
    assert _error(lambda: ref(x))[0] is RuntimeError
    assert _error(lambda: fused(x)) == (RuntimeError, "mat1 and mat2 must have the same dtype, but got Double and Float")


# ------------------------------------------------------------------------------------------------
# The fused cell op


def _cell_args(B=3, I=4, H=5, bias=True, relu=False, requires_grad=True):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    return (r(B, I), r(B, H), r(H, I), r(H, H), r(H) if bias else None, r(H) if bias else None, relu)


CELL_CASES = [dict(), dict(relu=True), dict(bias=False), dict(B=1, I=9, H=3), dict(B=0)]


@pytest.mark.parametrize("case", CELL_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_cell_op_matches_float64_reference(case, cpu_kernel):
    args = _cell_args(**case)
    tensors = [a for a in args[:6] if a is not None]
    got, want = ops.rnn_cell(*args), rnn_cell_ref(*args)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    up = torch.randn(want.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(got, tensors, up), torch.autograd.grad(want, tensors, up)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CELL_CASES[:4], ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_cell_opcheck_and_gradcheck(case, cpu_kernel):
    args = _cell_args(**case)
    torch.library.opcheck(torch.ops.rnnfused.rnn_cell.default, args)
    n = 6 if case.get("bias", True) else 4
    assert torch.autograd.gradcheck(lambda *t: ops.rnn_cell(*t, *([None, None] if n == 4 else []), args[6]),
                                    [a for a in args[:6] if a is not None])


@pytest.mark.parametrize("mask", [[True] * 5, [False, True, False, True, False], [True, False, False, False, True]])
def test_cell_bwd_opcheck_and_mask(mask):
    x, h, w_ih, w_hh, b_ih, b_hh, relu = _cell_args(requires_grad=False)
    hy = ops.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, relu)
    g = torch.randn_like(hy)
    torch.library.opcheck(torch.ops.rnnfused.rnn_cell_backward.default, (g, x, h, w_ih, w_hh, hy, relu, mask))
    full = ops.rnn_cell_backward(g, x, h, w_ih, w_hh, hy, relu, [True] * 5)
    part = ops.rnn_cell_backward(g, x, h, w_ih, w_hh, hy, relu, mask)
    for wanted, a, b in zip(mask, part, full):
        if wanted:
            torch.testing.assert_close(a, b)
        else:
            assert a.numel() == 0


def test_cell_half_types_within_twice_nn_error():
    """bfloat16 / float16: stored low, computed in float32; error against float64 at most 2x
    nn.RNNCell's own in the same dtype (the numerical rule, tests/support.py), no floor."""
    for dtype in (torch.bfloat16, torch.float16):
        ref64, _ = make_pair(16, 32, module=nn.RNNCell, dtype=torch.float64)
        x = torch.randn(4, 16, dtype=torch.float64)
        h = torch.randn(4, 32, dtype=torch.float64)
        ref = copy.deepcopy(ref64).to(dtype)
        fused = FusedRNNCell.from_cell(copy.deepcopy(ref64).to(dtype))
        exact = nn.RNNCell(16, 32, dtype=torch.float64)
        exact.load_state_dict({k: v.to(dtype).double() for k, v in ref64.state_dict().items()})
        want = exact(x.to(dtype).double(), h.to(dtype).double())
        theirs, ours = ref(x.to(dtype), h.to(dtype)), fused(x.to(dtype), h.to(dtype))
        check_errors([ours], [theirs], [want], ["output"], dtype, floor=0)


# ------------------------------------------------------------------------------------------------
# Compile, script


def test_compile_fullgraph_python_loop_of_cell_calls():
    torch._dynamo.reset()
    counters.clear()
    ref, fused = make_pair(5, 7, module=nn.RNNCell)

    def unroll(cell, xs, h):
        outs = []
        for x in xs:
            h = cell(x, h)
            outs.append(h)
        return torch.stack(outs)

    xs = torch.randn(6, 3, 5)
    h0 = torch.randn(3, 7)
    compiled = torch.compile(unroll, fullgraph=True, backend="aot_eager")
    params = list(fused.parameters())
    got = compiled(fused, xs, h0)
    want = unroll(ref, xs, h0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g_got = torch.autograd.grad(got.sum(), params)
    g_want = torch.autograd.grad(want.sum(), list(ref.parameters()))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_torchscript_cell_and_save_load():
    ref, fused = make_pair(5, 7, module=nn.RNNCell, nonlinearity="relu")

    class Net(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.cell = cell

        def forward(self, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            for i in range(xs.size(0)):
                h = self.cell(xs[i], h)
            return h

    scripted = torch.jit.script(Net(fused))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    xs, h = torch.randn(4, 2, 5), torch.randn(2, 7)
    want = Net(ref)(xs, h)
    torch.testing.assert_close(scripted(xs, h), want)
    torch.testing.assert_close(loaded(xs, h), want)
    bare = torch.jit.script(fused)  # a bare cell scripts too (no overloads)
    torch.testing.assert_close(bare(xs[0]), ref(xs[0]))


# ------------------------------------------------------------------------------------------------
# FusedRNN: the step input mode (one fused cell step per time step) against the hoisted one


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(num_layers=2, bidirectional=True, nonlinearity="relu"), dict(bias=False, batch_first=True)],
    ids=["plain", "2layer-bidir-relu", "nobias-batch_first"],
)
@pytest.mark.parametrize("T", [1, 3])
def test_step_and_hoist_modes_agree_with_each_other_and_nn_rnn(kw, T, cpu_kernel, monkeypatch):
    ref, fused = make_pair(input_size=5, hidden_size=6, dtype=torch.float64, twin="load", **kw)
    B = 3
    x = torch.randn((B, T, 5) if fused.batch_first else (T, B, 5), dtype=torch.float64)
    h0 = torch.randn(fused.num_layers * (2 if fused.bidirectional else 1), B, 6, dtype=torch.float64)
    results = {}
    for mode in ("step", "hoist"):
        monkeypatch.setenv("RNNFUSED_INPUT_MODE", mode)
        results[mode] = run_fwd_bwd(fused, x, h0)
    assert_close_all(results["step"], results["hoist"], rtol=1e-12, atol=1e-12, what="step vs hoist")
    assert_close_all(results["step"], run_fwd_bwd(ref, x, h0), rtol=1e-10, atol=1e-12, what="step vs nn.RNN")


def test_bad_input_mode_raises(monkeypatch):
    monkeypatch.setenv("RNNFUSED_INPUT_MODE", "sideways")
    with pytest.raises(RuntimeError, match="RNNFUSED_INPUT_MODE"):
        FusedRNN(2, 3)(torch.randn(1, 1, 2))
