"""The ops themselves: torch.library.opcheck (schema, fake kernel, autograd registration),
gradcheck in float64 (masks and reverse included), and needs_input_grad."""
import pytest
import torch

import rnnfused
from rnnfused import ops


def op_args(T=4, B=3, I=3, H=4, bias=True, lengths=None, relu=False, reverse=False, requires_grad=True):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    return (r(T, B, I), r(B, H), r(H, I), r(H, H), r(H) if bias else None, r(H) if bias else None,
            lengths, relu, reverse)


CASES = [
    dict(),
    dict(relu=True),
    dict(reverse=True),
    dict(bias=False),
    dict(lengths=torch.tensor([4, 2, 0])),
    dict(lengths=torch.tensor([1, 4, 3]), reverse=True),
    dict(lengths=torch.tensor([3, 3, 1]), reverse=True, relu=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_opcheck_fwd(case, cpu_kernel):
    torch.library.opcheck(torch.ops.rnnfused.rnn_fwd.default, op_args(**case))


@pytest.mark.parametrize("mask", [[True, True, True, True], [False, True, False, True], [True, False, False, False]])
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_opcheck_bwd(case, mask):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse = op_args(**case, requires_grad=False)
    out, _ = ops.rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse)
    go, ghn = torch.randn_like(out), torch.randn_like(h0)
    torch.library.opcheck(
        torch.ops.rnnfused.rnn_bwd.default,
        (go, ghn, x, h0, w_ih, w_hh, out, lengths, relu, reverse, mask),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_gradcheck_op(case, cpu_kernel):
    args = op_args(**case)

    def f(*tensors):
        x, h0, w_ih, w_hh, b_ih, b_hh = tensors
        return ops.rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, *args[6:])

    assert torch.autograd.gradcheck(f, args[:6])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck_module_packed(bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence

    m = rnnfused.FusedRNN(3, 4, num_layers=2, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * (2 if bidirectional else 1), 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 5, 3])

    def f(x, h0, *params):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, hn = torch.func.functional_call(m, dict(zip([n for n, _ in m.named_parameters()], params)), (packed, h0))
        return out.data, hn

    assert torch.autograd.gradcheck(f, (x, h0, *m.parameters()))


def test_grad_output_none_is_zero():
    """Using only h_n (output unused) gives the same gradients as an explicit zero grad_output."""
    args = op_args()
    out, hn = ops.rnn_fwd(*args)
    g1 = torch.autograd.grad(hn.sum(), args[:4])
    out, hn = ops.rnn_fwd(*args)
    g2 = torch.autograd.grad((hn.sum() + (out * 0).sum()), args[:4])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_only_needed_gradients_are_computed():
    """Frozen weights: the backward asks for no weight GEMMs (empty outputs), and the input
    gradient still matches."""
    x, h0, w_ih, w_hh, b_ih, b_hh, *rest = op_args(requires_grad=False)
    x.requires_grad_(True)
    out, _ = ops.rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, *rest)
    go = torch.randn_like(out)
    d_in, = torch.autograd.grad(out, [x], go)
    full = ops.rnn_bwd(go, None, x.detach(), h0, w_ih, w_hh, out.detach(), None, False, False, [True, True, True, True])
    part = ops.rnn_bwd(go, None, x.detach(), h0, w_ih, w_hh, out.detach(), None, False, False, [True, False, False, False])
    torch.testing.assert_close(d_in, full[0])
    torch.testing.assert_close(part[0], full[0])
    assert part[2].numel() == 0 and part[3].numel() == 0 and part[4].numel() == 0


def test_op_rejects_bad_lengths():
    args = list(op_args(requires_grad=False))
    args[6] = torch.tensor([5, 1, 1])  # > T = 4
    with pytest.raises(RuntimeError, match="lengths"):
        ops.rnn_fwd(*args)
    args[6] = torch.tensor([1, 1], dtype=torch.int64)  # wrong B
    with pytest.raises(RuntimeError, match="lengths"):
        ops.rnn_fwd(*args)


def test_op_rejects_mismatched_weights():
    x, h0, w_ih, w_hh, *rest = op_args(requires_grad=False)
    with pytest.raises(RuntimeError, match="w_hh"):
        ops.rnn_fwd(x, h0, w_ih, w_hh[:, :3], *rest)
    with pytest.raises(RuntimeError, match="w_ih"):
        ops.rnn_fwd(x, h0, w_ih.float(), w_hh, *rest)


def test_build_info():
    assert isinstance(rnnfused.built_with_cuda(), bool)
    if not rnnfused.built_with_cuda() or not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            rnnfused.cuda_kernel_name(1, 32)
    else:
        assert rnnfused.cuda_kernel_name(1, 32) in ("stepwise", "persistent")


@pytest.mark.parametrize("case", CASES + [dict(lengths=torch.tensor([0, 0, 0]), reverse=True)],
                         ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_matches_pure_pytorch_reference(case, cpu_kernel):
    """The op against rnnfused.reference (step by step, in plain PyTorch): outputs, h_n and every
    gradient, including what nn.RNN cannot express (length 0, unsorted lengths, reverse)."""
    from rnnfused.reference import rnn_fwd_ref

    args = op_args(**case)
    tensors = [a for a in args[:6] if a is not None]
    got = ops.rnn_fwd(*args)
    want = rnn_fwd_ref(*args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    seed = torch.Generator().manual_seed(3)
    up = [torch.randn(w.shape, generator=seed, dtype=w.dtype) for w in want]
    g_got = torch.autograd.grad(got, tensors, up)
    g_want = torch.autograd.grad(want, tensors, up)
    for g, w in zip(g_got, g_want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
