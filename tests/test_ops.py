"""The ops themselves: torch.library.opcheck (schema, fake kernel, autograd registration),
gradcheck in float64 (masks and reverse included), and needs_input_grad."""
import pytest
import torch

import rnnfused
from rnnfused import ops
from support import make_pair


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
    torch.library.opcheck(torch.ops.rnnfused.rnn_layer.default, op_args(**case))


@pytest.mark.parametrize("mask", [[True, True, True, True], [False, True, False, True], [True, False, False, False]])
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_opcheck_bwd(case, mask):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse = op_args(**case, requires_grad=False)
    out, _ = ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse)
    go, ghn = torch.randn_like(out), torch.randn_like(h0)
    torch.library.opcheck(
        torch.ops.rnnfused.rnn_layer_backward.default,
        (go, ghn, x, h0, w_ih, w_hh, out, lengths, relu, reverse, mask),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}" for k in c) or "plain")
def test_gradcheck_op(case, cpu_kernel):
    args = op_args(**case)

    def f(*tensors):
        x, h0, w_ih, w_hh, b_ih, b_hh = tensors
        return ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, *args[6:])

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
    out, hn = ops.rnn_layer(*args)
    g1 = torch.autograd.grad(hn.sum(), args[:4])
    out, hn = ops.rnn_layer(*args)
    g2 = torch.autograd.grad((hn.sum() + (out * 0).sum()), args[:4])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_only_needed_gradients_are_computed():
    """Frozen weights: the backward asks for no weight GEMMs (empty outputs), and the input
    gradient still matches."""
    x, h0, w_ih, w_hh, b_ih, b_hh, *rest = op_args(requires_grad=False)
    x.requires_grad_(True)
    out, _ = ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, *rest)
    go = torch.randn_like(out)
    d_in, = torch.autograd.grad(out, [x], go)
    full = ops.rnn_layer_backward(go, None, x.detach(), h0, w_ih, w_hh, out.detach(), None, False, False, [True, True, True, True])
    part = ops.rnn_layer_backward(go, None, x.detach(), h0, w_ih, w_hh, out.detach(), None, False, False, [True, False, False, False])
    torch.testing.assert_close(d_in, full[0])
    torch.testing.assert_close(part[0], full[0])
    assert part[2].numel() == 0 and part[3].numel() == 0 and part[4].numel() == 0


def test_op_rejects_bad_lengths():
    args = list(op_args(requires_grad=False))
    args[6] = torch.tensor([5, 1, 1])  # > T = 4
    with pytest.raises(RuntimeError, match="lengths"):
        ops.rnn_layer(*args)
    args[6] = torch.tensor([1, 1], dtype=torch.int64)  # wrong B
    with pytest.raises(RuntimeError, match="lengths"):
        ops.rnn_layer(*args)


def test_op_rejects_mismatched_weights():
    x, h0, w_ih, w_hh, *rest = op_args(requires_grad=False)
    with pytest.raises(RuntimeError, match="w_hh"):
        ops.rnn_layer(x, h0, w_ih, w_hh[:, :3], *rest)
    with pytest.raises(RuntimeError, match="w_ih"):
        ops.rnn_layer(x, h0, w_ih.float(), w_hh, *rest)


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
    from rnnfused.reference import rnn_layer_ref

    args = op_args(**case)
    tensors = [a for a in args[:6] if a is not None]
    got = ops.rnn_layer(*args)
    want = rnn_layer_ref(*args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    seed = torch.Generator().manual_seed(3)
    up = [torch.randn(w.shape, generator=seed, dtype=w.dtype) for w in want]
    g_got = torch.autograd.grad(got, tensors, up)
    g_want = torch.autograd.grad(want, tensors, up)
    for g, w in zip(g_got, g_want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# rnnfused::rnn: nn.RNN's whole forward (every layer and direction) in one op


def rnn_args(L=2, D=2, bias=True, relu=False, packed=False, dropout=0.0, train=False, requires_grad=True):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    T, B, I, H = 4, 3, 3, 4
    params = []
    for layer in range(L):
        for _ in range(D):
            params += [r(H, I if layer == 0 else D * H), r(H, H)] + ([r(H), r(H)] if bias else [])
    batch_sizes = torch.tensor([3, 2, 2, 1]) if packed else None
    x = r(int(batch_sizes.sum()), I) if packed else r(T, B, I)
    return (x, r(L * D, B, H), params, batch_sizes, bias, L, D == 2, relu, dropout, train)


RNN_CASES = [dict(), dict(L=1, D=1), dict(relu=True, bias=False), dict(packed=True), dict(packed=True, D=1, L=3),
             dict(dropout=0.5)]  # dropout with train=False: off, as in nn.RNN


@pytest.mark.parametrize("case", RNN_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_opcheck_rnn(case, cpu_kernel):
    torch.library.opcheck(torch.ops.rnnfused.rnn.default, rnn_args(**case))


@pytest.mark.parametrize("case", RNN_CASES[:5], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_opcheck_rnn_train_and_backward(case):
    args = rnn_args(**case, requires_grad=False)
    torch.library.opcheck(torch.ops.rnnfused.rnn_train.default, args)
    out, hn, saved = torch.ops.rnnfused.rnn_train(*args)
    x, hx, params = args[:3]
    mask = [True, False] + [i % 3 != 1 for i in range(len(params))]
    torch.library.opcheck(
        torch.ops.rnnfused.rnn_backward.default,
        (torch.randn_like(out), torch.randn_like(hn), x, hx, params, args[3], out, saved, *args[4:], mask),
    )


# Training with dropout between layers: the op draws its noise itself; the reference is given it.
DROPOUT_CASES = [dict(dropout=0.4, train=True), dict(packed=True, L=3, dropout=0.4, train=True)]


@pytest.mark.parametrize("case", RNN_CASES[:5] + DROPOUT_CASES,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_rnn_op_matches_layer_by_layer_reference(case, cpu_kernel):
    """The one-call op against rnnfused.reference.rnn_ref (layer by layer, direction by direction,
    padded with the packed lengths): outputs, h_n and every gradient. With dropout, the reference
    is given the noise the op draws: F.dropout's (Bernoulli(1 - p) / (1 - p) on each layer's
    output rows but the last, from the default generator), drawn here from the same seed."""
    from rnnfused.reference import rnn_ref

    args = rnn_args(**case)
    x, hx, params, batch_sizes, bias, L, bidir, relu, p, train = args
    noise = None
    if p > 0 and train:
        rows = (x.shape[0],) if batch_sizes is not None else x.shape[:2]
        torch.manual_seed(11)
        noise = [torch.empty(*rows, (2 if bidir else 1) * hx.shape[2], dtype=x.dtype).bernoulli_(1 - p).div_(1 - p)
                 for _ in range(L - 1)]
        assert all(0 < int((n == 0).sum()) < n.numel() for n in noise)  # the noise drops some, not all
    torch.manual_seed(11)
    got = ops.rnn(*args)
    want = rnn_ref(*args, dropout_noise=noise)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    leaves = [x, hx] + params
    up = [torch.randn(w.shape, generator=torch.Generator().manual_seed(3), dtype=w.dtype) for w in want]
    for a, b in zip(torch.autograd.grad(got, leaves, up), torch.autograd.grad(want, leaves, up)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rnn_op_dropout_uses_f_dropout_noise():
    """Training with dropout between layers: the op draws F.dropout's noise from the default
    generator on nn.RNN's rows, so with the same seed it reproduces nn.RNN's CPU output exactly
    (the semantics: zero with probability p, survivors scaled by 1/(1-p); layers after the
    last get none)."""
    ref, fused = make_pair(3, 4, num_layers=3, dropout=0.4, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(7)
    want = ref(x)
    torch.manual_seed(7)
    got = fused(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(fused(x)[0], fused.eval()(x)[0])


def test_rnn_op_rejects_bad_arguments():
    x, hx, params, batch_sizes, *rest = rnn_args(packed=True, requires_grad=False)
    with pytest.raises(RuntimeError, match="batch size"):
        ops.rnn(x, hx[:, :2], params, batch_sizes, *rest)
    with pytest.raises(RuntimeError, match="rows"):
        ops.rnn(x[:-1], hx, params, batch_sizes, *rest)
    with pytest.raises(RuntimeError, match="parameter tensors"):
        ops.rnn(x, hx, params[:-1], batch_sizes, *rest)
    x, hx, params, _, *rest = rnn_args(requires_grad=False)
    with pytest.raises(RuntimeError, match="w_ih"):
        ops.rnn(x, hx, [params[0][:, :2]] + params[1:], None, *rest)
    with pytest.raises(RuntimeError, match="hx"):
        ops.rnn(x, hx[:, :2], params, None, *rest)


# ------------------------------------------------------------------------------------------------
# The LSTM ops: rnnfused::lstm_layer, lstm_cell, lstm (nn.LSTM's forward), against
# rnnfused.reference and through opcheck / gradcheck (float64, small).


def lstm_layer_args(T=4, B=3, I=3, H=4, P=None, bias=True, lengths=None, reverse=False, requires_grad=True):
    """Arguments of ops.lstm_layer; P: the projection's size (w_hr (P, H)), None for none."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    Q = P or H
    return (r(T, B, I), [r(B, Q), r(B, H)], r(4 * H, I), r(4 * H, Q), r(4 * H) if bias else None,
            r(4 * H) if bias else None, r(Q, H) if P else None, lengths, reverse)


LSTM_CASES = [
    dict(),
    dict(P=2),
    dict(reverse=True, P=3),
    dict(bias=False),
    dict(lengths=torch.tensor([4, 2, 0])),
    dict(lengths=torch.tensor([1, 4, 3]), reverse=True, P=2),
    dict(lengths=torch.tensor([3, 3, 1]), reverse=True, bias=False),
]


def _ids(c):
    return ",".join(f"{k}" for k in c) or "plain"


def _lstm_tensors(args):
    x, hx, w_ih, w_hh, b_ih, b_hh, w_hr = args[:7]
    return [t for t in [x, *hx, w_ih, w_hh, b_ih, b_hh, w_hr] if t is not None]


@pytest.mark.parametrize("case", LSTM_CASES, ids=_ids)
def test_lstm_layer_matches_reference(case):
    """lstm_layer against rnnfused.reference.lstm_layer_ref: outputs, h_n, c_n and every gradient
    (lengths 0 and unsorted, reverse, projection)."""
    from rnnfused.reference import lstm_layer_ref

    args = lstm_layer_args(**case)
    tensors = _lstm_tensors(args)
    got = ops.lstm_layer(*args)
    want = lstm_layer_ref(*args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    up = [torch.randn(w.shape, generator=torch.Generator().manual_seed(3), dtype=w.dtype) for w in want]
    for g, w in zip(torch.autograd.grad(got, tensors, up), torch.autograd.grad(want, tensors, up)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", LSTM_CASES[:3] + LSTM_CASES[5:6], ids=_ids)
def test_lstm_layer_opcheck_and_gradcheck(case):
    args = lstm_layer_args(T=4, B=3, I=2, H=3, **case)
    torch.library.opcheck(torch.ops.rnnfused.lstm_layer.default, args)
    n = len(_lstm_tensors(args))

    def f(*tensors):
        it = iter(tensors)
        x, h0, c0, w_ih, w_hh = (next(it) for _ in range(5))
        b_ih = next(it) if args[4] is not None else None
        b_hh = next(it) if args[5] is not None else None
        w_hr = next(it) if args[6] is not None else None
        return ops.lstm_layer(x, [h0, c0], w_ih, w_hh, b_ih, b_hh, w_hr, *args[7:])

    tensors = _lstm_tensors(args)
    assert len(tensors) == n
    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)


@pytest.mark.parametrize("mask", [[True] * 5, [False, True, False, True, True], [True, False, False, False, False]])
def test_lstm_layer_backward_opcheck_and_mask(mask):
    args = lstm_layer_args(P=2, lengths=torch.tensor([4, 1, 3]), requires_grad=False)
    x, hx = args[0], args[1]
    out, hn, cn = ops.lstm_layer(*args)
    bw = (torch.randn_like(out), torch.randn_like(hn), torch.randn_like(cn), *args, mask)
    torch.library.opcheck(torch.ops.rnnfused.lstm_layer_backward.default, bw)
    d = ops.lstm_layer_backward(*bw)
    for got, wanted, like in zip([d[0], d[3], d[4], d[5], d[6]], mask, [x, args[2], args[3], args[4], args[6]]):
        assert got.shape == (like.shape if wanted else (0,))
    assert d[1].shape == hx[0].shape and d[2].shape == hx[1].shape


def lstm_cell_args(B=3, I=4, H=5, bias=True, requires_grad=True):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    return (r(B, I), [r(B, H), r(B, H)], r(4 * H, I), r(4 * H, H), r(4 * H) if bias else None,
            r(4 * H) if bias else None)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_op_reference_opcheck_gradcheck(bias):
    from rnnfused.reference import lstm_cell_ref

    args = lstm_cell_args(bias=bias)
    got, want = ops.lstm_cell(*args), lstm_cell_ref(*args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    torch.library.opcheck(torch.ops.rnnfused.lstm_cell.default, args)
    tensors = [args[0], *args[1]] + [t for t in args[2:] if t is not None]

    def f(x, h, c, w_ih, w_hh, *b):
        return ops.lstm_cell(x, [h, c], w_ih, w_hh, *(b if b else (None, None)))

    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)
    plain = lstm_cell_args(bias=bias, requires_grad=False)
    torch.library.opcheck(torch.ops.rnnfused.lstm_cell_backward.default,
                          (torch.randn(3, 5, dtype=torch.float64), None, *plain, [True, False, True, bias]))


def lstm_args(L=2, D=2, bias=True, P=None, packed=False, dropout=0.0, train=False, requires_grad=True):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(requires_grad)

    T, B, I, H = 4, 3, 3, 4
    Q = P or H
    params = []
    for layer in range(L):
        for _ in range(D):
            params += [r(4 * H, I if layer == 0 else D * Q), r(4 * H, Q)]
            params += [r(4 * H), r(4 * H)] if bias else []
            params += [r(Q, H)] if P else []
    batch_sizes = torch.tensor([3, 2, 2, 1]) if packed else None
    x = r(int(batch_sizes.sum()), I) if packed else r(T, B, I)
    return (x, [r(L * D, B, Q), r(L * D, B, H)], params, batch_sizes, bias, L, D == 2, dropout, train)


LSTM_MODULE_CASES = [dict(), dict(L=1, D=1), dict(P=2, bias=False), dict(packed=True), dict(packed=True, D=1, L=3, P=3),
                     dict(dropout=0.5)]


@pytest.mark.parametrize("case", LSTM_MODULE_CASES + [dict(packed=True, L=3, dropout=0.4, train=True, P=2)],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_lstm_op_matches_layer_by_layer_reference(case):
    """rnnfused::lstm against rnnfused.reference.lstm_ref: outputs, h_n, c_n and every gradient;
    with dropout, the reference is given the noise the op draws (as for rnn, above)."""
    from rnnfused.reference import lstm_ref

    args = lstm_args(**case)
    x, hx, params, batch_sizes, bias, L, bidir, p, train = args
    noise = None
    if p > 0 and train:
        rows = (x.shape[0],) if batch_sizes is not None else x.shape[:2]
        torch.manual_seed(11)
        noise = [torch.empty(*rows, (2 if bidir else 1) * hx[0].shape[2], dtype=x.dtype).bernoulli_(1 - p).div_(1 - p)
                 for _ in range(L - 1)]
    torch.manual_seed(11)
    got = ops.lstm(*args)
    want = lstm_ref(*args, dropout_noise=noise)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    leaves = [x, *hx] + params
    up = [torch.randn(w.shape, generator=torch.Generator().manual_seed(3), dtype=w.dtype) for w in want]
    for a, b in zip(torch.autograd.grad(got, leaves, up), torch.autograd.grad(want, leaves, up)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", LSTM_MODULE_CASES[:5], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_opcheck_lstm_train_and_backward(case):
    args = lstm_args(**case, requires_grad=False)
    torch.library.opcheck(torch.ops.rnnfused.lstm.default, args)
    torch.library.opcheck(torch.ops.rnnfused.lstm_train.default, args)
    out, hn, cn, saved = torch.ops.rnnfused.lstm_train(*args)
    x, hx, params = args[:3]
    mask = [True, False, True] + [i % 3 != 1 for i in range(len(params))]
    torch.library.opcheck(
        torch.ops.rnnfused.lstm_backward.default,
        (torch.randn_like(out), torch.randn_like(hn), None, x, hx, params, args[3], out, saved, *args[4:], mask),
    )


def test_gradgradcheck_lstm_module_op():
    """Double backward of the module op (the composite, differentiated) in float64."""
    args = lstm_args(L=2, D=2, P=2, packed=True)
    x, hx, params = args[:3]

    def f(x, h, c, *ps):
        return ops.lstm(x, [h, c], list(ps), *args[3:])

    assert torch.autograd.gradgradcheck(f, [x, *hx, *params])
