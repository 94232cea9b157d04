"""PyTorch's own RNN tests (test/test_nn.py at 74f2fa66), replayed with FusedRNN / FusedRNNCell
in place of nn.RNN / nn.RNNCell, and FusedLSTM / FusedLSTMCell in place of nn.LSTM / nn.LSTMCell
(the tests parametrized by `cell`: "rnn" or "lstm"): every scenario runs on both and must end the
same way (same numbers within the project's tolerance, or the same exception type and message).

The RNN_TANH / RNN_RELU and LSTM parts, on the CPU. Tests whose CUDA-only part is cuDNN-specific
(weight layout warnings, multi-GPU) are replayed through their CPU-meaningful behaviour (a weight
not in one flat buffer, tied weights, weight norm) — the docstrings say which. Scenarios already
covered elsewhere in tests/ are listed in README.md ("PyTorch's own RNN tests") instead of being
repeated here.
"""
import copy
import io
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from rnnfused import FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell
from support import make_pair, random_state

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


CELLS = ["rnn", "lstm"]
MODULE = {"rnn": nn.RNN, "lstm": nn.LSTM}
CELL_MODULE = {"rnn": (nn.RNNCell, FusedRNNCell), "lstm": (nn.LSTMCell, FusedLSTMCell)}


def _relu(cell):
    """nonlinearity="relu" where the test_nn scenario asks for it (the Elman cell only)."""
    return dict(nonlinearity="relu") if cell == "rnn" else {}


def _flat(out):
    """The tensors of a module's result: (output, h_n) or (output, (h_n, c_n))."""
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _flat(o)]


def _raises_same(fn_ref, fn_fused, error, match):
    with pytest.raises(error, match=match):
        fn_ref()
    with pytest.raises(error, match=match):
        fn_fused()


# --- constructor --------------------------------------------------------------------------------

def test_nonlinearity_attribute_and_unknown_value():
    """mirrors test_nn.py::TestNN::test_RNN_nonlinearity and
    test_nn.py::TestNN::test_RNN_nonlinearity_passed_as_arg"""
    for cls in (nn.RNN, FusedRNN):
        assert cls(1, 10).nonlinearity == "tanh"
        assert cls(1, 10, nonlinearity="relu").nonlinearity == "relu"
        assert cls(2, 3, 1, "relu").nonlinearity == "relu"  # positional, after num_layers
        assert cls(2, 3, 1, "relu").mode == "RNN_RELU"
    _raises_same(lambda: nn.RNN(1, 10, nonlinearity="garbage"),
                 lambda: FusedRNN(1, 10, nonlinearity="garbage"),
                 ValueError, "Unknown nonlinearity")


def test_proj_size_rejected_with_pytorch_message():
    """mirrors test_nn.py::TestNN::test_projections_errors_on_gru_and_rnn"""
    msg = "proj_size argument is only supported for LSTM, not RNN or GRU"
    _raises_same(lambda: nn.RNN(30, 20, 2, proj_size=10),
                 lambda: FusedRNN(30, 20, 2, proj_size=10), ValueError, msg)


# --- forward argument checks ---------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_wrong_hidden_and_input_size_messages(cell):
    """mirrors test_nn.py::TestNN::test_cudnn_forward_exception (the nn.RNN and nn.LSTM entries;
    it runs on the CPU too): a hidden state of the wrong size and an input of the wrong feature
    size raise RuntimeError with PyTorch's messages."""
    ref, fused = make_pair(10, 20, module=MODULE[cell], batch_first=True, dtype=torch.float32, twin="copy")
    bad_hidden = torch.zeros(1, 2, 19)
    if cell == "lstm":  # a wrong h, then a wrong c
        _raises_same(lambda: ref(torch.randn(2, 3, 10), (bad_hidden, torch.zeros(1, 2, 20))),
                     lambda: fused(torch.randn(2, 3, 10), (bad_hidden, torch.zeros(1, 2, 20))),
                     RuntimeError, "Expected hidden.*size.*got")
        bad_hidden = (torch.zeros(1, 2, 20), bad_hidden)
    x_right, x_wrong = torch.randn(2, 3, 10), torch.randn(2, 3, 3)
    _raises_same(lambda: ref(x_right, bad_hidden), lambda: fused(x_right, bad_hidden),
                 RuntimeError, "Expected hidden.*size.*got")
    _raises_same(lambda: ref(x_wrong), lambda: fused(x_wrong),
                 RuntimeError, re.escape("input.size(-1) must be equal to input_size"))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_zero_length_sequence_message(bidirectional, cell):
    """mirrors test_nn.py::TestNN::test_error_RNN_seq_len_zero (its CPU iteration)"""
    ref, fused = make_pair(5, 6, module=MODULE[cell], bidirectional=bidirectional, dtype=torch.float64, twin="copy")
    x = torch.ones(0, 10, 5, dtype=torch.float64)
    _raises_same(lambda: ref(x), lambda: fused(x),
                 RuntimeError, "Expected sequence length to be larger than 0 in RNN")


@pytest.mark.parametrize("cell", CELLS)
def test_zero_initial_hidden_equals_default(cell):
    """mirrors test_nn.py::TestNN::test_rnn_initial_hidden_state (the RNN and LSTM modes)"""
    ref, fused = make_pair(30, 20, 2, module=MODULE[cell], dtype=torch.float32, twin="copy")
    x = torch.randn(10, 32, 30)
    h0 = torch.zeros(2, 32, 20)
    given = fused(x, (h0, h0) if cell == "lstm" else h0)
    default = fused(x)
    for a, b, want in zip(_flat(given), _flat(default), _flat(ref(x))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(b, want)


# --- dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_between_layers_all_ones(p, train):
    """mirrors test_nn.py::TestNN::test_RNN_dropout (its CPU iteration): 2 relu layers, all
    weights 1, no bias; dropout sits between the layers only, scaled by 1/(1-p)."""
    torch.manual_seed(0)
    ref = nn.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu", dtype=torch.float64)
    with torch.no_grad():
        for w in ref.parameters():
            w.fill_(1)
    fused = FusedRNN.from_rnn(copy.deepcopy(ref))
    x = torch.ones(1, 1, 10, dtype=torch.float64)
    hx = torch.zeros(2, 1, 1000, dtype=torch.float64)
    for m in (ref, fused):
        m.train(train)
        out, hy = m(x, hx)
        assert out.min() == out.max()
        val = out[0, 0, 0].item()
        if p == 0 or not train:
            assert val == 10000
        elif p == 1:
            assert val == 0
        else:
            assert 8000 < val < 12000
            kept = val * (1 - p) / 10  # units that survived dropout: a whole number
            assert abs(kept - round(kept)) < 1e-3
        assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
        assert hy[0, 0, 0].item() == 10
        assert hy[1, 0, 0].item() == val


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("p", [0, 0.1234])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_state_and_save_load(p, train, cell):
    """mirrors test_nn.py::TestNN::test_RNN_dropout_state (its CPU iteration): two calls, and a
    copy through torch.save/torch.load + flatten_parameters(), agree exactly unless dropout is
    active, in which case all three differ."""
    ref, fused = make_pair(100, 100, 2, module=MODULE[cell], bias=False, dropout=p, twin="copy", **_relu(cell))
    x = torch.rand(1, 1, 100)
    hx = (torch.rand(2, 1, 100), torch.rand(2, 1, 100)) if cell == "lstm" else torch.rand(2, 1, 100)
    for m in (ref, fused):
        m.train(train)
        out1, hy1 = _flat(m(x, hx))[:2]
        out2, hy2 = _flat(m(x, hx))[:2]
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        m2 = torch.load(buf, weights_only=False)
        assert type(m2) is type(m)
        m2.flatten_parameters()
        out3, hy3 = _flat(m2(x, hx))[:2]
        if p == 0 or not train:
            for a, b in [(out1, out2), (out1, out3), (hy1, hy2), (hy1, hy3)]:
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        else:
            for a, b in [(out1, out2), (out1, out3), (hy1, hy2), (hy1, hy3)]:
                assert not torch.equal(a, b)
    if p == 0 or not train:
        torch.testing.assert_close(fused(x, hx), ref(x, hx))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("train", [True, False])
def test_change_dropout_attribute_between_calls(train, cell):
    """mirrors test_nn.py::TestNN::test_RNN_change_dropout (its CPU iteration): assigning
    .dropout after construction takes effect at the next call."""
    ref, fused = make_pair(100, 100, 2, module=MODULE[cell], dropout=0, dtype=torch.float64, twin="copy",
                           **_relu(cell))
    x = torch.rand(3, 2, 100, dtype=torch.float64)
    for m in (ref, fused):
        m.train(train)
        prev = None
        for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
            m.dropout = p
            out1, hy1 = _flat(m(x))[:2]
            out2, hy2 = _flat(m(x))[:2]
            if p in (0, 1) or not train:
                torch.testing.assert_close(out1, out2, rtol=0, atol=0)
                torch.testing.assert_close(hy1, hy2, rtol=0, atol=0)
            else:
                assert not torch.equal(out1, out2) and not torch.equal(hy1, hy2)
            if prev is not None:
                if train:
                    assert not torch.equal(out1, prev) and not torch.equal(out2, prev)
                else:
                    torch.testing.assert_close(out1, prev, rtol=0, atol=0)
                    torch.testing.assert_close(out2, prev, rtol=0, atol=0)
            prev = out1
            if p in (0, 1) or not train:  # deterministic: the same numbers as nn.RNN
                ref.dropout = p
                ref.train(train)
                torch.testing.assert_close(out1, ref(x)[0])


# --- weights that are not plain Parameters ------------------------------------------------------

@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm. is deprecated:FutureWarning")
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", ["weight_ih_l0", "weight_hh_l0", "weight_hh_l1_reverse"])
def test_weight_norm_flat_weights_and_removal(name, cell):
    """mirrors test_nn.py::TestNN::test_rnn_weight_norm (written for LSTM; replayed on RNN too):
    weight_norm turns one entry of _flat_weights into a computed tensor, remove_weight_norm
    restores the Parameter under its name and drops the _g/_v pieces."""
    ref, fused = make_pair(8, 8, 2, module=MODULE[cell], bidirectional=True, dtype=torch.float64, twin="copy")
    n = len(ref._flat_weights)
    for m in (ref, fused):
        m = torch.nn.utils.weight_norm(m, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == n - 1
        m = torch.nn.utils.remove_weight_norm(m, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == n
        assert m._parameters.get(name) is not None
        names = dict(m.named_parameters())
        assert name in names and name + "_g" not in names and name + "_v" not in names
        assert name + "_g" not in m._parameters and name + "_v" not in m._parameters


@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm. is deprecated:FutureWarning")
def test_weight_norm_forward_backward_and_removal():
    """mirrors test_nn.py::TestNN::test_RNN_cudnn_weight_norm (its CUDA half replaced by the CPU):
    with weight norm on a weight the output stays what it was, the gradients reach weight_g and
    weight_v as nn.RNN's do, and removing it leaves the output unchanged."""
    ref, fused = make_pair(10, 6, 2, dtype=torch.float64, twin="copy")
    x = torch.randn(7, 6, 10, dtype=torch.float64)
    expected = ref(x)
    for m in (ref, fused):
        torch.nn.utils.weight_norm(m, name="weight_hh_l0")
    torch.testing.assert_close(fused(x), expected)
    torch.testing.assert_close(ref(x), expected)
    g = torch.randn(7, 6, 6, dtype=torch.float64)
    grads = []
    for m in (ref, fused):
        (m(x)[0] * g).sum().backward()
        grads.append([m.weight_hh_l0_g.grad, m.weight_hh_l0_v.grad, m.weight_ih_l0.grad])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a)
    for m in (ref, fused):
        torch.nn.utils.remove_weight_norm(m, name="weight_hh_l0")
    torch.testing.assert_close(fused(x), ref(x))
    torch.testing.assert_close(fused(x), expected)


class _Scale(nn.Module):
    def forward(self, w):
        return 0.5 * w


@pytest.mark.parametrize("kind", ["weight_norm", "orthogonal", "custom"])
def test_parametrized_weights_forward_backward(kind):
    """mirrors test_nn.py::TestNN::test_rnn_weight_norm / test_RNN_cudnn_weight_norm with the
    torch.nn.utils.parametrize API (parametrizations.weight_norm, orthogonal, a user module)
    instead of the old hook: same output, same gradients on the parametrization's originals."""
    ref, fused = make_pair(5, 5, 2, nonlinearity="relu", dtype=torch.float64, twin="copy")
    for m in (ref, fused):
        if kind == "weight_norm":
            torch.nn.utils.parametrizations.weight_norm(m, name="weight_ih_l1")
        elif kind == "orthogonal":
            torch.nn.utils.parametrizations.orthogonal(m, name="weight_hh_l0")
        else:
            parametrize.register_parametrization(m, "weight_hh_l1", _Scale())
    # orthogonal's initial value depends on the RNG: copy nn.RNN's originals over
    with torch.no_grad():
        for (n, a), (n2, b) in zip(ref.named_parameters(), fused.named_parameters()):
            assert n == n2
            b.copy_(a)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    h0 = torch.randn(2, 3, 5, dtype=torch.float64)
    g = torch.randn(6, 3, 5, dtype=torch.float64)
    results = []
    for m in (ref, fused):
        out, hn = m(x, h0)
        grads = torch.autograd.grad((out * g).sum() + hn.sum(), list(m.parameters()))
        results.append((out, hn, grads))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(b, a)
    # a change to the original reaches the next call, as for nn.RNN
    with torch.no_grad():
        for m in (ref, fused):
            plist = next(iter(m.parametrizations.values()))
            (plist.original0 if kind == "weight_norm" else plist.original).mul_(0.9)
    torch.testing.assert_close(fused(x, h0), ref(x, h0))


def test_weight_out_of_shared_storage_same_results():
    """mirrors test_nn.py::TestNN::test_cudnn_weight_format (the nn.RNN entry; its point on the
    CPU): a weight moved to its own storage with .set_() keeps giving the same output and
    gradients, and later in-place changes to that storage are seen."""
    ref, fused = make_pair(10, 20, batch_first=True, dtype=torch.float32, twin="copy")
    x = torch.randn(5, 4, 10)
    hx = torch.randn(1, 5, 20)

    def run(m):
        xi, hi = x.clone().requires_grad_(), hx.clone().requires_grad_()
        out, hn = m(xi, hi)
        out.sum().backward()
        grads = [xi.grad, hi.grad] + [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        return out.detach(), hn.detach(), grads

    before = run(fused)
    weight = fused.weight_hh_l0
    data = weight.data.clone()
    with torch.no_grad():
        weight.set_(data)
    for _ in range(2):
        after = run(fused)
        torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
        torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)
        for a, b in zip(after[2], before[2]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    data[:] = 0.01
    with torch.no_grad():
        ref.weight_hh_l0.fill_(0.01)
    torch.testing.assert_close(fused(x, hx), ref(x, hx))
    torch.testing.assert_close(run(fused)[2], run(ref)[2])


def test_tied_weights_train_step_like_nn_rnn():
    """mirrors test_nn.py::TestNN::test_cudnn_weight_tying (the nn.RNN entry; its CPU check):
    a bias tied across directions trains as one Parameter, as for nn.RNN."""
    torch.manual_seed(0)
    ref = nn.RNN(10, 20, batch_first=True, bidirectional=True, dtype=torch.float64)
    ref.bias_ih_l0_reverse = ref.bias_ih_l0
    fused = FusedRNN.from_rnn(copy.deepcopy(ref))
    assert fused.bias_ih_l0_reverse is fused.bias_ih_l0
    x = torch.randn(5, 4, 10, dtype=torch.float64)
    hx = torch.randn(2, 5, 20, dtype=torch.float64)
    outs = []
    for m in (ref, fused):
        assert len(list(m.parameters())) == 7
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        opt.zero_grad()
        m(x, hx)[0].sum().backward()
        opt.step()
        outs.append(m(x, hx))
    assert fused.bias_ih_l0_reverse is fused.bias_ih_l0
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(fused.bias_ih_l0, ref.bias_ih_l0)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_deleted_then_module_converted_then_restored(cell):
    """mirrors test_nn.py::TestNN::test_partial_flat_weights (written for LSTM + .cuda(); here
    with a dtype move): a module missing one weight can still be moved, and runs again once the
    weight is put back."""
    ref, fused = make_pair(10, 6, 2, module=MODULE[cell], dtype=torch.float32, twin="copy")
    x = torch.randn(3, 2, 10)
    expected = ref(x)[0]
    for m in (ref, fused):
        orig = m.weight_hh_l0
        del m.weight_hh_l0
        assert not hasattr(m, "weight_hh_l0")
        m.double()
        m.weight_hh_l0 = orig.double()
        out = m(x.double())[0]
        torch.testing.assert_close(out.float(), expected)
    torch.testing.assert_close(fused(x.double()), ref(x.double()))


@pytest.mark.parametrize("cell", CELLS)
def test_backward_twice_with_retain_graph(cell):
    """mirrors test_nn.py::TestNNDeviceType::test_rnn_retain_variables (the RNN and LSTM modes,
    CPU, float64): one forward, two backward passes with retain_graph give the same gradients."""
    ref, fused = make_pair(10, 20, module=MODULE[cell], num_layers=2, dtype=torch.float64, twin="copy")
    x = torch.randn(5, 6, 10, dtype=torch.float64, requires_grad=True)
    per_module = []
    for m in (ref, fused):
        out = m(x)
        grads = []
        for _ in range(2):
            x.grad = None
            m.zero_grad()
            sum(t.sum() for t in _flat(out)).backward(retain_graph=True)
            grads.append([x.grad.clone()] + [p.grad.clone() for p in m.parameters()])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        per_module.append(grads[0])
    for a, b in zip(*per_module):
        torch.testing.assert_close(b, a)


# --- RNNCell ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_six_steps_and_backward(bias, cell):
    """mirrors test_nn.py::TestNN::test_RNN_cell and test_LSTM_cell: six steps on the cell's own
    output, then backward; same numbers as nn.RNNCell / nn.LSTMCell."""
    torch.manual_seed(0)
    nn_cls, fused_cls = CELL_MODULE[cell]
    ref = nn_cls(10, 20, bias=bias, dtype=torch.float64)
    fused = fused_cls.from_cell(copy.deepcopy(ref))
    x = torch.randn(3, 10, dtype=torch.float64)
    h0 = torch.randn(3, 20, dtype=torch.float64)
    results = []
    for m in (ref, fused):
        hx = h0.clone().requires_grad_()
        h = (hx, hx) if cell == "lstm" else hx
        for _ in range(6):
            h = m(x, h)
        total = sum(t.sum() for t in _flat(h))
        grads = torch.autograd.grad(total, [hx] + list(m.parameters()))
        results.append((torch.cat(_flat(h)).detach(), grads))
    torch.testing.assert_close(results[1][0], results[0][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_cell_zero_hidden_size(nonlinearity):
    """mirrors test_nn.py::TestNN::test_RNN_cell_forward_zero_hidden_size"""
    x, hx = torch.randn(3, 10), torch.randn(3, 0)
    for cls in (nn.RNNCell, FusedRNNCell):
        assert cls(10, 0, nonlinearity=nonlinearity)(x, hx).shape == torch.Size([3, 0])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", ["hx batch 1", "hx hidden 1", "input features 1"])
def test_cell_does_not_broadcast(case, cell):
    """mirrors test_nn.py::TestNN::test_RNN_cell_no_broadcasting (the RNNCell and LSTMCell
    entries): sizes of 1 that broadcasting would accept are errors."""
    x, hx = torch.randn(3, 10), torch.randn(3, 20)
    if case == "hx batch 1":
        hx = torch.randn(1, 20)
    elif case == "hx hidden 1":
        hx = torch.randn(3, 1)
    else:
        x = torch.randn(3, 1)
    torch.manual_seed(0)
    nn_cls, fused_cls = CELL_MODULE[cell]
    ref = nn_cls(10, 20)
    fused = fused_cls.from_cell(copy.deepcopy(ref))
    if cell == "lstm":
        hx = (hx, torch.randn(3, 20))
    with pytest.raises(RuntimeError):
        ref(x, hx)
    with pytest.raises(RuntimeError):
        fused(x, hx)


# --- LSTM only --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_proj_shapes_and_values(bidirectional):
    """mirrors test_nn.py::TestNN::test_lstm_proj (its CPU part): with proj_size the output, h_n
    and weight_hr have the projected size, c_n the hidden size; the numbers are nn.LSTM's."""
    ref, fused = make_pair(2, 3, 4, module=nn.LSTM, proj_size=2, bidirectional=bidirectional,
                           dtype=torch.float64, twin="copy")
    D = 2 if bidirectional else 1
    x = torch.randn(5, 6, 2, dtype=torch.float64)
    state = random_state(ref, 6, seed=1)
    out, (h, c) = fused(x, state)
    assert out.shape == (5, 6, 2 * D) and h.shape == (4 * D, 6, 2) and c.shape == (4 * D, 6, 3)
    assert fused.weight_hr_l0.shape == (2, 3)
    for a, b in zip(_flat((out, (h, c))), _flat(ref(x, state))):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        FusedLSTM(2, 3, proj_size=3)
    with pytest.raises(ValueError, match="proj_size should be a positive integer or zero to disable projections"):
        FusedLSTM(2, 3, proj_size=-1)
