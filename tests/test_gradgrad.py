"""Double backward (grad of grad, create_graph=True): exact second derivatives.

With a graph of the gradient requested, the backward recomputes the forward from the saved
inputs in differentiable ATen ops and differentiates that (csrc/host/composite.cpp); without it, the fused
backward runs. Checked with gradgradcheck in float64 (numerical vs analytical second
derivatives) and against nn.RNN's / nn.RNNCell's own second derivatives."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnfused import FusedRNN, FusedRNNCell, ops
from support import make_pair

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _r(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_()


OP_CASES = [
    dict(),
    dict(relu=True),
    dict(reverse=True),
    dict(bias=False),
    dict(lengths=[3, 1, 0]),
    dict(lengths=[2, 3, 1], reverse=True, relu=True),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_gradgradcheck_layer_op(case):
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 3, 3, 2, 3
    bias = case.get("bias", True)
    tensors = [_r(g, T, B, I), _r(g, B, H), _r(g, H, I), _r(g, H, H)] + ([_r(g, H), _r(g, H)] if bias else [])
    lengths = torch.tensor(case["lengths"]) if "lengths" in case else None

    def f(x, h0, w_ih, w_hh, *b):
        b_ih, b_hh = b if b else (None, None)
        return ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, case.get("relu", False), case.get("reverse", False))

    assert torch.autograd.gradgradcheck(f, tensors)


MODULE_CASES = [
    dict(),
    dict(nonlinearity="relu"),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, bias=False),
    dict(batch_first=True, num_layers=2, nonlinearity="relu"),
]


def _functional(module, packed_lengths=None):
    names = [n for n, _ in module.named_parameters()]

    def f(x, h0, *params):
        inp = x if packed_lengths is None else pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
        out, hn = torch.func.functional_call(module, dict(zip(names, params)), (inp, h0))
        return (out if packed_lengths is None else out.data), hn

    return f


@pytest.mark.parametrize("kw", MODULE_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_gradgradcheck_module(kw):
    torch.manual_seed(0)
    m = FusedRNN(2, 3, dtype=torch.float64, **kw)
    D = 2 if m.bidirectional else 1
    g = torch.Generator().manual_seed(1)
    x = _r(g, *((2, 3, 2) if m.batch_first else (3, 2, 2)))
    h0 = _r(g, m.num_layers * D, 2, 3)
    assert torch.autograd.gradgradcheck(_functional(m), (x, h0, *m.parameters()))


@pytest.mark.parametrize("bidirectional", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_gradgradcheck_module_packed(bidirectional):
    torch.manual_seed(0)
    m = FusedRNN(2, 3, num_layers=2, bidirectional=bidirectional, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = _r(g, 4, 3, 2)
    h0 = _r(g, 2 * (2 if bidirectional else 1), 3, 3)
    f = _functional(m, packed_lengths=torch.tensor([2, 4, 3]))
    assert torch.autograd.gradgradcheck(f, (x, h0, *m.parameters()))


@pytest.mark.parametrize("kw", [dict(), dict(nonlinearity="relu"), dict(bias=False)], ids=["tanh", "relu", "nobias"])
def test_gradgradcheck_cell(kw):
    torch.manual_seed(0)
    cell = FusedRNNCell(3, 4, dtype=torch.float64, **kw)
    g = torch.Generator().manual_seed(1)
    x, h = _r(g, 2, 3), _r(g, 2, 4)
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h, *params):
        return torch.func.functional_call(cell, dict(zip(names, params)), (x, h))

    assert torch.autograd.gradgradcheck(f, (x, h, *cell.parameters()))


def _gradient_penalty_grads(module, x, h0):
    """Gradients of a gradient penalty: d/dθ ||d loss/d (x, θ)||², the typical double backward."""
    leaves = [x, h0] + list(module.parameters())
    out, hn = module(x, h0)
    loss = (out.pow(2) * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)).sum() + hn.pow(3).sum()
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    penalty = sum(g.pow(2).sum() for g in grads)
    return torch.autograd.grad(penalty, leaves)


@pytest.mark.parametrize("kw", MODULE_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_second_derivatives_equal_nn_rnn(kw):
    ref, fused = make_pair(3, 4, dtype=torch.float64, **kw)
    D = 2 if ref.bidirectional else 1
    g = torch.Generator().manual_seed(2)
    x = _r(g, *((2, 5, 3) if ref.batch_first else (5, 2, 3)))
    h0 = _r(g, ref.num_layers * D, 2, 4)
    want = _gradient_penalty_grads(ref, x, h0)
    got = _gradient_penalty_grads(fused, x, h0)
    for i, (a, b) in enumerate(zip(got, want)):
        assert b.abs().max() > 0, f"grad {i}: nn.RNN's is zero, the comparison says nothing"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"grad {i}")


def test_second_derivatives_equal_nn_rnncell():
    ref, fused = make_pair(3, 4, dtype=torch.float64, module=nn.RNNCell)
    g = torch.Generator().manual_seed(2)
    x, h = _r(g, 2, 3), _r(g, 2, 4)

    def pen(cell):
        leaves = [x, h] + list(cell.parameters())
        y = cell(x, h)
        grads = torch.autograd.grad(y.pow(3).sum(), leaves, create_graph=True)
        return torch.autograd.grad(sum(gr.pow(2).sum() for gr in grads), leaves)

    for a, b in zip(pen(fused), pen(ref)):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_first_order_backward_still_fused_when_no_graph_requested():
    """Without create_graph the gradients come from the fused backward: same values as with it."""
    torch.manual_seed(0)
    m = FusedRNN(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out, hn = m(x)
    loss = out.pow(2).sum() + hn.sum()
    plain = torch.autograd.grad(loss, [x] + list(m.parameters()), retain_graph=True)
    with_graph = torch.autograd.grad(loss, [x] + list(m.parameters()), create_graph=True)
    for a, b in zip(plain, with_graph):
        assert a.grad_fn is None and b.grad_fn is not None
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
