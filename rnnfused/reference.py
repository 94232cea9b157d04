"""The semantics of the rnnfused ops in plain, slow PyTorch: the reference the tests compare
against (when they do not compare against torch.nn itself).

Three levels, each built from the one below, each with the arguments of the op it defines:

- ``rnn_cell_ref``: one step of one cell, what ``nn.RNNCell`` computes (``rnnfused.ops.rnn_cell``);
- ``rnn_layer_ref``: one layer, one direction over a time-major sequence, with per-item lengths
  (0 and unsorted allowed: zero output and an unchanged state past an item's length) and either
  direction, which nn.RNN cannot express (``rnnfused.ops.rnn_layer``);
- ``rnn_ref``: the whole module, nn.RNN's forward: layers × directions, the dropout between
  layers given its noise, padded or packed input, h0 (``rnnfused.ops.rnn``).

Under them, the generic forms ``cell_step``, ``layer`` and ``stack`` take the cell as a
definition (``Cell``): how many gate blocks its weights stack, whether it carries a second state
(LSTM's c), and its pointwise step from the two projections to the new state. Elman (tanh, relu)
LSTM and GRU are defined; another cell is one more definition here. The LSTM's projection
(nn.LSTM's proj_size: h = h̃ W_hrᵀ) is a layer weight, applied after the pointwise step.

Step by step, in the inputs' dtype (tests pass float64 for an exact answer); autograd through it
gives the reference gradients.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = ["Cell", "RNN_TANH", "RNN_RELU", "LSTM", "GRU", "CELLS", "elman", "cell_step", "layer", "stack",
           "rnn_cell_ref", "rnn_layer_ref", "rnn_ref", "lstm_cell_ref", "lstm_layer_ref", "lstm_ref",
           "gru_cell_ref", "gru_layer_ref", "gru_ref"]

State = Tuple[Tensor, ...]  # (h,), or (h, c) for a cell with a second state


@dataclass(frozen=True)
class Cell:
    """A recurrent cell as a definition.

    name: nn.RNNBase's mode string ("RNN_TANH", ...).
    gates: gate blocks stacked in W_ih's and W_hh's rows and in the biases (gates * H rows each).
    second_state: whether the state is (h, c) rather than (h,).
    pointwise: (gi, gh, state) -> new state, where gi = x W_ihᵀ + b_ih and gh = h W_hhᵀ + b_hh
        (gates * H columns each; kept apart because a cell may gate them differently) and state is
        the current state; the new state's first element is the output h.
    """

    name: str
    gates: int
    second_state: bool
    pointwise: Callable[[Tensor, Tensor, State], State]


# Elman: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).
RNN_TANH = Cell("RNN_TANH", gates=1, second_state=False, pointwise=lambda gi, gh, s: (torch.tanh(gi + gh),))
RNN_RELU = Cell("RNN_RELU", gates=1, second_state=False, pointwise=lambda gi, gh, s: (torch.relu(gi + gh),))


def _lstm_pointwise(gi: Tensor, gh: Tensor, s: State) -> State:
    """LSTM: gates i, f, g, o (PyTorch's order) from z = gi + gh; c' = f c + i g, h' = o tanh(c')."""
    i, f, g, o = (gi + gh).chunk(4, 1)
    c = torch.sigmoid(f) * s[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


LSTM = Cell("LSTM", gates=4, second_state=True, pointwise=_lstm_pointwise)


def _gru_pointwise(gi: Tensor, gh: Tensor, s: State) -> State:
    """GRU: gates r, z, n (PyTorch's order). r and z from the summed projections; the reset gate
    scales the n block's recurrent projection, bias b_hn included, before the tanh (ONNX's
    linear_before_reset = 1): n = tanh(gi_n + r (h W_hnᵀ + b_hn)); h' = (1 - z) n + z h."""
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return ((1 - z) * n + z * s[0],)


GRU = Cell("GRU", gates=3, second_state=False, pointwise=_gru_pointwise)
CELLS = {c.name: c for c in (RNN_TANH, RNN_RELU, LSTM, GRU)}  # by nn.RNNBase's mode


def elman(relu: bool) -> Cell:
    """The Elman cell of the ops' `relu` flag."""
    return RNN_RELU if relu else RNN_TANH


def cell_step(cell: Cell, x: Tensor, state: State, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None,
              w_hr: Optional[Tensor] = None) -> State:
    """One step of `cell` on x (B, I) from `state`: the new state. w_hr (P, H): the projection
    of the new h (nn.LSTM's proj_size > 0: h' = h̃ W_hrᵀ, so h is (B, P) and c (B, H))."""
    gi = x @ w_ih.t()
    if b_ih is not None:
        gi = gi + b_ih
    gh = state[0] @ w_hh.t()
    if b_hh is not None:
        gh = gh + b_hh
    new = cell.pointwise(gi, gh, state)
    if w_hr is not None:
        new = (new[0] @ w_hr.t(),) + tuple(new[1:])
    return new


def layer(cell: Cell, x: Tensor, state0: State, w_ih: Tensor, w_hh: Tensor,
          b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None,
          lengths: Optional[Tensor] = None, reverse: bool = False,
          w_hr: Optional[Tensor] = None) -> Tuple[Tensor, State]:
    """One layer, one direction of `cell` over x (T, B, I) from state0 (h (B, P), c (B, H); P = H
    without a projection w_hr).

    Item b takes part in steps t < lengths[b] only (all T without lengths), walked from T - 1 down
    to 0 when reverse: past its length its output is zero and its state stays. Returns the
    output (T, B, P) and the final state."""
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.cpu()
    state = tuple(state0)
    outs: List[Optional[Tensor]] = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        new = cell_step(cell, x[t], state, w_ih, w_hh, b_ih, b_hh, w_hr)
        active = (t < lengths).to(x.device).unsqueeze(1)
        outs[t] = torch.where(active, new[0], torch.zeros_like(new[0]))
        state = tuple(torch.where(active, n, s) for n, s in zip(new, state))
    out = torch.stack(outs) if T else x.new_zeros((0, B, H))
    return out, state


def stack(cell: Cell, input: Tensor, state0: State, params: Sequence[Tensor],
          batch_sizes: Optional[Tensor] = None, has_biases: bool = True, num_layers: int = 1,
          bidirectional: bool = False, dropout_noise: Optional[Sequence[Tensor]] = None
          ) -> Tuple[Tensor, State]:
    """The whole module: `num_layers` layers of `cell`, each in one or two directions, the
    directions' outputs concatenated as the next layer's input.

    input: (T, B, I), or a PackedSequence's data (N, I) with its batch_sizes (then each item runs
    for its own length and the output is packed the same way). state0: each (L * D, B, ·).
    params: nn.RNN's / nn.LSTM's `_flat_weights` order (per layer, per direction: w_ih, w_hh[,
    b_ih, b_hh][, w_hr]; w_hr, nn.LSTM's projection, counted from len(params)).
    dropout_noise: None, or one tensor per layer but the last, multiplying that layer's output
    before the next layer reads it, on the rows nn.RNN applies F.dropout to (the packed rows
    when packed): F.dropout's noise, 0 or 1 / (1 - p).
    Returns the output ((T, B, D * P) or packed (N, D * P)) and the final state (each (L * D, B, ·))."""
    D = 2 if bidirectional else 1
    P = 4 if has_biases else 2
    if cell.second_state and len(params) == num_layers * D * (P + 1):
        P += 1  # w_hr last
    if len(params) != num_layers * D * P:
        raise ValueError(f"expected {num_layers * D * P} parameter tensors, got {len(params)}")
    proj = P % 2 == 1
    if dropout_noise is not None and len(dropout_noise) != num_layers - 1:
        raise ValueError(f"expected {num_layers - 1} dropout noise tensors, got {len(dropout_noise)}")
    if batch_sizes is not None:
        T, B = len(batch_sizes), int(batch_sizes[0])
        lengths = (torch.arange(B).unsqueeze(0) < batch_sizes.cpu().unsqueeze(1)).sum(0)
        x = pad_packed_sequence(PackedSequence(input, batch_sizes), total_length=T)[0]
    else:
        lengths, x = None, input

    def pack(t: Tensor) -> Tensor:
        return pack_padded_sequence(t, lengths).data if batch_sizes is not None else t

    def unpack(rows: Tensor) -> Tensor:
        if batch_sizes is None:
            return rows
        return pad_packed_sequence(PackedSequence(rows, batch_sizes), total_length=x.shape[0])[0]

    finals: List[State] = []
    for l in range(num_layers):
        outs = []
        for d in range(D):
            k = l * D + d
            w = params[k * P:(k + 1) * P]
            out, state = layer(cell, x, tuple(s[k] for s in state0), w[0], w[1],
                               *(w[2:4] if has_biases else (None, None)), lengths=lengths, reverse=d == 1,
                               w_hr=w[-1] if proj else None)
            outs.append(out)
            finals.append(state)
        x = torch.cat(outs, 2)
        if l < num_layers - 1 and dropout_noise is not None:
            x = unpack(pack(x) * dropout_noise[l])
    n_states = len(state0)
    return pack(x), tuple(torch.stack([s[i] for s in finals]) for i in range(n_states))


def _active_noise(name: str, dropout: float, train: bool, num_layers: int,
                  dropout_noise: Optional[Sequence[Tensor]]) -> Optional[Sequence[Tensor]]:
    """The noise a module reference applies: the given one where the op would draw noise (train,
    dropout > 0, more than one layer; then it is required), else none."""
    active = dropout > 0 and train and num_layers > 1
    if active and dropout_noise is None:
        raise ValueError(f"{name}: dropout is active: pass the noise it applies (dropout_noise)")
    return dropout_noise if active else None


def rnn_cell_ref(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
                 b_hh: Optional[Tensor] = None, relu: bool = False) -> Tensor:
    """Same arguments and result as rnnfused.ops.rnn_cell (nn.RNNCell's forward)."""
    return cell_step(elman(relu), input, (hx,), w_ih, w_hh, b_ih, b_hh)[0]


def rnn_layer_ref(
    input: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    relu: bool = False,
    reverse: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.rnn_layer."""
    out, state = layer(elman(relu), input, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse)
    return out, state[0]


def rnn_ref(
    input: Tensor,
    hx: Tensor,
    params: Sequence[Tensor],
    batch_sizes: Optional[Tensor] = None,
    has_biases: bool = True,
    num_layers: int = 1,
    bidirectional: bool = False,
    relu: bool = False,
    dropout: float = 0.0,
    train: bool = False,
    dropout_noise: Optional[Sequence[Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.rnn (nn.RNN's forward), plus the dropout noise.

    The op draws its dropout noise itself (as F.dropout does, when train and dropout > 0 and there
    is more than one layer); the reference is given it: `dropout_noise`, see `stack`. It is
    required exactly when the op would draw noise and ignored otherwise."""
    noise = _active_noise("rnn_ref", dropout, train, num_layers, dropout_noise)
    out, state = stack(elman(relu), input, (hx,), params, batch_sizes, has_biases, num_layers,
                       bidirectional, noise)
    return out, state[0]


def lstm_cell_ref(input: Tensor, hx: Sequence[Tensor], w_ih: Tensor, w_hh: Tensor,
                  b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.lstm_cell (nn.LSTMCell's forward): (h', c')."""
    h, c = cell_step(LSTM, input, tuple(hx), w_ih, w_hh, b_ih, b_hh)
    return h, c


def lstm_layer_ref(
    input: Tensor,
    hx: Sequence[Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    w_hr: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.lstm_layer: (output, h_n, c_n)."""
    out, (h, c) = layer(LSTM, input, tuple(hx), w_ih, w_hh, b_ih, b_hh, lengths, reverse, w_hr)
    return out, h, c


def lstm_ref(
    input: Tensor,
    hx: Sequence[Tensor],
    params: Sequence[Tensor],
    batch_sizes: Optional[Tensor] = None,
    has_biases: bool = True,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    train: bool = False,
    dropout_noise: Optional[Sequence[Tensor]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.lstm (nn.LSTM's forward: (output, h_n, c_n)),
    plus the dropout noise (see rnn_ref)."""
    noise = _active_noise("lstm_ref", dropout, train, num_layers, dropout_noise)
    out, (h, c) = stack(LSTM, input, tuple(hx), params, batch_sizes, has_biases, num_layers,
                        bidirectional, noise)
    return out, h, c


def gru_cell_ref(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
                 b_hh: Optional[Tensor] = None) -> Tensor:
    """nn.GRUCell's forward: h' from input (B, I) and hx (B, H)."""
    return cell_step(GRU, input, (hx,), w_ih, w_hh, b_ih, b_hh)[0]


def gru_layer_ref(
    input: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
) -> Tuple[Tensor, Tensor]:
    """One GRU layer, one direction (as rnn_layer_ref): (output, h_n)."""
    out, state = layer(GRU, input, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse)
    return out, state[0]


def gru_ref(
    input: Tensor,
    hx: Tensor,
    params: Sequence[Tensor],
    batch_sizes: Optional[Tensor] = None,
    has_biases: bool = True,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    train: bool = False,
    dropout_noise: Optional[Sequence[Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    """nn.GRU's forward (the arguments of rnn_ref without relu): (output, h_n), plus the dropout
    noise (see rnn_ref)."""
    noise = _active_noise("gru_ref", dropout, train, num_layers, dropout_noise)
    out, state = stack(GRU, input, (hx,), params, batch_sizes, has_biases, num_layers, bidirectional,
                       noise)
    return out, state[0]
