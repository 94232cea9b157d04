"""rnnfused/reference.py against torch.nn itself, in float64: the reference is what every other
test compares with, so it is held to torch.nn first (docs/design.md, "Adding a cell", step 1).
Parametrized over the cells: Elman (tanh, relu), LSTM, LSTM with a projection (proj_size), GRU."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnfused import reference as R

# (mode, nn module kwargs beyond the sizes)
CELLS = {
    "tanh": (nn.RNN, dict(nonlinearity="tanh")),
    "relu": (nn.RNN, dict(nonlinearity="relu")),
    "lstm": (nn.LSTM, dict()),
    "lstm_proj": (nn.LSTM, dict(proj_size=3)),
    "gru": (nn.GRU, dict()),
}


def state0(m, B, seed):
    """A random initial state for nn module m: h0, or (h0, c0)."""
    g = torch.Generator().manual_seed(seed)
    D = 2 if m.bidirectional else 1
    P = getattr(m, "proj_size", 0) or m.hidden_size
    h = torch.randn(m.num_layers * D, B, P, generator=g, dtype=torch.float64)
    if m.mode != "LSTM":
        return h
    return h, torch.randn(m.num_layers * D, B, m.hidden_size, generator=g, dtype=torch.float64)


def ref_forward(m, x, hx, batch_sizes=None):
    """The reference's whole-module forward with m's weights: (output, state tuple)."""
    if m.mode == "LSTM":
        out, h, c = R.lstm_ref(x, hx, m._flat_weights, batch_sizes, m.bias, m.num_layers, m.bidirectional)
        return out, (h, c)
    if m.mode == "GRU":
        out, h = R.gru_ref(x, hx[0], m._flat_weights, batch_sizes, m.bias, m.num_layers, m.bidirectional)
        return out, (h,)
    out, h = R.rnn_ref(x, hx[0], m._flat_weights, batch_sizes, m.bias, m.num_layers, m.bidirectional,
                       relu=m.mode == "RNN_RELU")
    return out, (h,)


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("num_layers,bidirectional,bias", [(1, False, True), (2, True, True), (3, False, False)])
@pytest.mark.parametrize("packed", [False, True])
def test_stack_matches_nn(cell, num_layers, bidirectional, bias, packed):
    """The whole module (layers × directions, padded or packed input), outputs, final state and
    the gradients of input, state and every parameter."""
    module, kw = CELLS[cell]
    torch.manual_seed(0)
    m = module(4, 5, num_layers=num_layers, bidirectional=bidirectional, bias=bias, dtype=torch.float64, **kw)
    T, B = 6, 4
    x = torch.randn(T, B, 4, dtype=torch.float64, requires_grad=True)
    hx = tuple(s.requires_grad_() for s in as_tuple(state0(m, B, 1)))
    hx_nn = hx if m.mode == "LSTM" else hx[0]
    if packed:
        lengths = torch.tensor([6, 5, 3, 1])
        inp = pack_padded_sequence(x, lengths)
        want_out, want_state = m(inp, hx_nn)
        want_out = want_out.data
        got_out, got_state = ref_forward(m, inp.data, hx, inp.batch_sizes)
    else:
        want_out, want_state = m(x, hx_nn)
        got_out, got_state = ref_forward(m, x, hx)
    want = [want_out, *as_tuple(want_state)]
    got = [got_out, *got_state]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    leaves = [x, *hx, *m.parameters()]
    up = [torch.randn(w.shape, generator=torch.Generator().manual_seed(2), dtype=w.dtype) for w in want]
    # (the packing op is shared by both graphs: keep it for the second call)
    for a, b in zip(torch.autograd.grad(got, leaves, up, retain_graph=True), torch.autograd.grad(want, leaves, up)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_ref_matches_nn(cell, bias):
    """lstm_cell_ref / gru_cell_ref against nn.LSTMCell / nn.GRUCell, with random (not zero)
    biases, so that GRU's b_hn inside the reset gate's product is exercised."""
    torch.manual_seed(0)
    module, fn = {"lstm": (nn.LSTMCell, R.lstm_cell_ref), "gru": (nn.GRUCell, R.gru_cell_ref)}[cell]
    m = module(3, 5, bias=bias, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    h = torch.randn(4, 5, dtype=torch.float64)
    hx = (h, torch.randn(4, 5, dtype=torch.float64)) if cell == "lstm" else h
    got = fn(x, hx, m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)
    want = m(x, hx)
    for a, b in zip(as_tuple(got), as_tuple(want)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_lstm_layer_reverse_and_lengths_by_hand():
    """What nn.LSTM cannot express directly: one reverse layer with unsorted lengths (0 included)
    equals, item by item, the forward layer over that item's own reversed prefix; past an item's
    length the output is zero and the state stays."""
    torch.manual_seed(0)
    T, B, I, H, P = 5, 3, 2, 4, 3
    w_ih, w_hh = torch.randn(4 * H, I, dtype=torch.float64), torch.randn(4 * H, P, dtype=torch.float64)
    b_ih, b_hh = torch.randn(4 * H, dtype=torch.float64), torch.randn(4 * H, dtype=torch.float64)
    w_hr = torch.randn(P, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0, c0 = torch.randn(B, P, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    lengths = torch.tensor([2, 0, 5])
    out, h, c = R.lstm_layer_ref(x, (h0, c0), w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse=True)
    for b in range(B):
        n = int(lengths[b])
        o1, h1, c1 = R.lstm_layer_ref(x[:n, b:b + 1].flip(0), (h0[b:b + 1], c0[b:b + 1]), w_ih, w_hh, b_ih, b_hh,
                                      w_hr)
        torch.testing.assert_close(out[:n, b], o1.flip(0)[:, 0], rtol=1e-12, atol=1e-12)
        assert (out[n:, b] == 0).all()
        torch.testing.assert_close(h[b], h1[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c[b], c1[0], rtol=1e-12, atol=1e-12)
