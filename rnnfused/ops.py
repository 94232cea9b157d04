"""torch.library glue for the rnnfused ops: typed wrappers and the fake (shape-only) kernels that
torch.compile, torch.export and meta tensors use.

The ops themselves (schemas, validation, CPU/CUDA kernels) and their autograd (C++
torch::autograd::Functions registered for the Autograd key, with exact double backward) live in
csrc/host/ (registration.cpp, autograd.cpp). Their vmap rules and the autograd.Functions that run
under torch.func's transforms (which refuse C++ autograd) are in rnnfused/_func.py.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers torch.ops.rnnfused.*)
from . import _func

__all__ = ["rnn", "rnn_layer", "rnn_layer_backward", "rnn_cell", "rnn_cell_backward", "lstm", "lstm_layer",
           "lstm_layer_backward", "lstm_cell", "lstm_cell_backward"]


def rnn(
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
) -> Tuple[Tensor, Tensor]:
    """nn.RNN's whole forward in one op call: every layer and direction, and the dropout between
    layers (when ``train`` and ``dropout > 0``). The arguments are those of ``torch._VF.rnn_tanh``
    (time-major):

    input (T, B, I), or a PackedSequence's data (N, I) with its ``batch_sizes``; hx
    (num_layers * num_directions, B, H); params in nn.RNN's ``_flat_weights`` order (per layer,
    per direction: w_ih, w_hh[, b_ih, b_hh]). Returns output (T, B, D*H) or packed (N, D*H), and
    h_n (num_layers * num_directions, B, H).
    """
    op = _func.rnn if _func.transforms_active() else torch.ops.rnnfused.rnn.default  # torch.func: _func.py
    return op(
        input, hx, list(params), batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train
    )


def rnn_layer(
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
    """One layer, one direction of an Elman RNN over a whole time-major sequence.

    input (T, B, I), h0 (B, H), w_ih (H, I), w_hh (H, H), biases (H,) or None, lengths (B,) int64
    on input's device or None. Returns output (T, B, H) and h_n (B, H). With lengths, item b is
    active at step t iff t < lengths[b]; inactive steps output zeros and keep the state; the
    reverse direction starts at t = lengths[b] - 1.
    """
    return torch.ops.rnnfused.rnn_layer.default(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse)


def rnn_layer_backward(
    grad_output: Optional[Tensor],
    grad_hn: Optional[Tensor],
    input: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    output: Tensor,
    lengths: Optional[Tensor],
    relu: bool,
    reverse: bool,
    output_mask: List[bool],
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of rnn_layer: (d input, d h0, d w_ih, d w_hh, d bias). output_mask says which of
    (input, w_ih, w_hh, bias) are wanted; the others come back as empty tensors of shape (0,)."""
    return torch.ops.rnnfused.rnn_layer_backward.default(
        grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths, relu, reverse, output_mask
    )


def rnn_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    relu: bool = False,
) -> Tensor:
    """One fused step, nn.RNNCell's forward: act(input W_ihᵀ + b_ih + hx W_hhᵀ + b_hh), with
    input (B, I) and hx (B, H); one kernel call, no intermediate tensor."""
    op = _func.rnn_cell if _func.transforms_active() else torch.ops.rnnfused.rnn_cell.default
    return op(input, hx, w_ih, w_hh, b_ih, b_hh, relu)


def rnn_cell_backward(
    grad_hy: Tensor,
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    hy: Tensor,
    relu: bool,
    output_mask: List[bool],
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of rnn_cell: (d input, d hx, d w_ih, d w_hh, d bias). output_mask says which of
    (input, hx, w_ih, w_hh, bias) are wanted; the others come back as empty tensors of shape (0,)."""
    return torch.ops.rnnfused.rnn_cell_backward.default(grad_hy, input, hx, w_ih, w_hh, hy, relu, output_mask)


def lstm(
    input: Tensor,
    hx: Sequence[Tensor],
    params: Sequence[Tensor],
    batch_sizes: Optional[Tensor] = None,
    has_biases: bool = True,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    train: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """nn.LSTM's whole forward in one op call, with the arguments of ``torch._VF.lstm``
    (time-major): hx = (h0 (L*D, B, P), c0 (L*D, B, H)), params in nn.LSTM's ``_flat_weights``
    order (per layer, per direction: w_ih, w_hh[, b_ih, b_hh][, w_hr]; P = proj_size with w_hr,
    else H). Returns output (T, B, D*P) or packed (N, D*P), h_n (L*D, B, P), c_n (L*D, B, H)."""
    op = _func.lstm if _func.transforms_active() else torch.ops.rnnfused.lstm.default
    return op(
        input, list(hx), list(params), batch_sizes, has_biases, num_layers, bidirectional, dropout, train
    )


def lstm_layer(
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
    """One LSTM layer, one direction over a time-major sequence: input (T, B, I), hx = (h0 (B, P),
    c0 (B, H)), w_ih (4H, I), w_hh (4H, P), biases (4H,) or None, w_hr (P, H) or None (P = H),
    lengths as rnn_layer's. Returns output (T, B, P), h_n (B, P), c_n (B, H)."""
    return torch.ops.rnnfused.lstm_layer.default(input, list(hx), w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse)


def lstm_layer_backward(grad_output, grad_hn, grad_cn, input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                        output_mask):
    """Backward of lstm_layer (recomputing its forward): (d input, d h0, d c0, d w_ih, d w_hh, d bias,
    d w_hr). output_mask says which of (input, w_ih, w_hh, bias, w_hr) are wanted; the others come
    back as empty tensors of shape (0,)."""
    return torch.ops.rnnfused.lstm_layer_backward.default(
        grad_output, grad_hn, grad_cn, input, list(hx), w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, output_mask
    )


def lstm_cell(
    input: Tensor,
    hx: Sequence[Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One LSTM step, nn.LSTMCell's forward: (h', c') from input (B, I) and hx = (h (B, H), c (B, H))."""
    op = _func.lstm_cell if _func.transforms_active() else torch.ops.rnnfused.lstm_cell.default
    return op(input, list(hx), w_ih, w_hh, b_ih, b_hh)


def lstm_cell_backward(grad_hy, grad_cy, input, hx, w_ih, w_hh, b_ih, b_hh, output_mask):
    """Backward of lstm_cell (recomputing its forward): (d input, d hx, d cx, d w_ih, d w_hh, d bias).
    output_mask says which of (input, w_ih, w_hh, bias) are wanted."""
    return torch.ops.rnnfused.lstm_cell_backward.default(grad_hy, grad_cy, input, list(hx), w_ih, w_hh, b_ih,
                                                         b_hh, output_mask)


# ------------------------------------------------------------------------------------------------
# Fake kernels: output shapes only (no data), for FakeTensor / meta tensors.


def _rnn_shapes(input, hx, params, batch_sizes, num_layers, bidirectional):
    D = 2 if bidirectional else 1
    H = params[1].shape[0]
    if batch_sizes is not None:
        torch._check(input.dim() == 2, lambda: f"rnnfused: packed input must be 2-D, got {input.dim()}-D")
        out = (input.shape[0], D * H)
    else:
        torch._check(input.dim() == 3, lambda: f"rnnfused: input must be 3-D, got {input.dim()}-D")
        out = (input.shape[0], input.shape[1], D * H)
    return out, (num_layers * D, hx.shape[1], H)


def _maybe(wanted, t):
    """A wanted gradient's fake: t's shape where wanted, else empty (0,), as the ops return."""
    return t.new_empty(t.shape if wanted else (0,))


@torch.library.register_fake("rnnfused::rnn")
def _rnn_fake(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train):
    out, hn = _rnn_shapes(input, hx, params, batch_sizes, num_layers, bidirectional)
    return input.new_empty(out), input.new_empty(hn)


@torch.library.register_fake("rnnfused::rnn_train")
def _rnn_train_fake(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train):
    out, hn = _rnn_shapes(input, hx, params, batch_sizes, num_layers, bidirectional)
    # Each layer's output but the last, then (dropout active) the noise applied to each.
    n_saved = (num_layers - 1) * (2 if dropout > 0 and train and num_layers > 1 else 1)
    return input.new_empty(out), input.new_empty(hn), [input.new_empty(out) for _ in range(n_saved)]


@torch.library.register_fake("rnnfused::rnn_backward")
def _rnn_backward_fake(
    grad_output, grad_hn, input, hx, params, batch_sizes, output, saved, has_biases, num_layers,
    bidirectional, relu, dropout, train, output_mask,
):
    return (
        _maybe(output_mask[0], input),
        _maybe(output_mask[1], hx),
        [_maybe(m, p) for m, p in zip(output_mask[2:], params)],
    )


@torch.library.register_fake("rnnfused::rnn_layer")
def _rnn_layer_fake(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse):
    torch._check(input.dim() == 3, lambda: f"rnnfused: input must be 3-D, got {input.dim()}-D")
    T, B, _ = input.shape
    H = w_hh.shape[0]
    return input.new_empty((T, B, H)), input.new_empty((B, H))


@torch.library.register_fake("rnnfused::rnn_layer_backward")
def _rnn_layer_backward_fake(grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths, relu, reverse, output_mask):
    T, B, I = input.shape
    H = w_hh.shape[0]

    def maybe_shape(wanted, shape):
        return input.new_empty(shape if wanted else (0,))

    return (
        maybe_shape(output_mask[0], (T, B, I)),
        input.new_empty((B, H)),
        maybe_shape(output_mask[1], (H, I)),
        maybe_shape(output_mask[2], (H, H)),
        maybe_shape(output_mask[3], (H,)),
    )


@torch.library.register_fake("rnnfused::rnn_cell")
def _rnn_cell_fake(input, hx, w_ih, w_hh, b_ih, b_hh, relu):
    torch._check(input.dim() == 2, lambda: f"rnnfused: input must be 2-D, got {input.dim()}-D")
    return input.new_empty((input.shape[0], w_hh.shape[0]))


@torch.library.register_fake("rnnfused::rnn_cell_backward")
def _rnn_cell_backward_fake(grad_hy, input, hx, w_ih, w_hh, hy, relu, output_mask):
    return (
        _maybe(output_mask[0], input),
        _maybe(output_mask[1], hx),
        _maybe(output_mask[2], w_ih),
        _maybe(output_mask[3], w_hh),
        input.new_empty((w_hh.shape[0],) if output_mask[4] else (0,)),
    )


# The LSTM's fakes. Its saved tensors (lstm_train) are in the kernels' dtype: float32 for the half
# types (the CPU kernels compute them in float32), else the input's.


def _kernel_dtype(t):
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _lstm_shapes(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional):
    D = 2 if bidirectional else 1
    P = params[1].shape[1]
    H = params[1].shape[0] // 4
    if batch_sizes is not None:
        torch._check(input.dim() == 2, lambda: f"rnnfused: packed input must be 2-D, got {input.dim()}-D")
        rows = (input.shape[0],)
    else:
        torch._check(input.dim() == 3, lambda: f"rnnfused: input must be 3-D, got {input.dim()}-D")
        rows = (input.shape[0], input.shape[1])
    per = (4 if has_biases else 2)
    proj = len(params) == num_layers * D * (per + 1)
    return rows, D, P, H, proj


@torch.library.register_fake("rnnfused::lstm")
def _lstm_fake(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, dropout, train):
    rows, D, P, H, _ = _lstm_shapes(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional)
    B = hx[0].shape[1]
    return (input.new_empty((*rows, D * P)), input.new_empty((num_layers * D, B, P)),
            input.new_empty((num_layers * D, B, H)))


@torch.library.register_fake("rnnfused::lstm_train")
def _lstm_train_fake(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, dropout, train):
    rows, D, P, H, proj = _lstm_shapes(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional)
    out, hn, cn = _lstm_fake(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, dropout, train)
    # Each layer's output but the last, the noise (dropout active), then per layer-direction the
    # gate activations, c_t and (proj) h̃_t.
    n_out = (num_layers - 1) * (2 if dropout > 0 and train and num_layers > 1 else 1)
    saved = [input.new_empty(out.shape) for _ in range(n_out)]
    kd = _kernel_dtype(input)
    for _ in range(num_layers * D):
        saved.append(input.new_empty((*rows, 4 * H), dtype=kd))
        saved.append(input.new_empty((*rows, H), dtype=kd))
        if proj:
            saved.append(input.new_empty((*rows, H), dtype=kd))
    return out, hn, cn, saved


@torch.library.register_fake("rnnfused::lstm_backward")
def _lstm_backward_fake(
    grad_output, grad_hn, grad_cn, input, hx, params, batch_sizes, output, saved, has_biases, num_layers,
    bidirectional, dropout, train, output_mask,
):
    return (
        _maybe(output_mask[0], input),
        _maybe(output_mask[1], hx[0]),
        _maybe(output_mask[2], hx[1]),
        [_maybe(m, p) for m, p in zip(output_mask[3:], params)],
    )


@torch.library.register_fake("rnnfused::lstm_layer")
def _lstm_layer_fake(input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
    torch._check(input.dim() == 3, lambda: f"rnnfused: input must be 3-D, got {input.dim()}-D")
    T, B, _ = input.shape
    P = w_hh.shape[1]
    H = w_hh.shape[0] // 4
    return input.new_empty((T, B, P)), input.new_empty((B, P)), input.new_empty((B, H))


@torch.library.register_fake("rnnfused::lstm_layer_backward")
def _lstm_layer_backward_fake(grad_output, grad_hn, grad_cn, input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                              reverse, output_mask):
    def maybe_opt(wanted, t):  # t None: w_hr absent, its gradient empty
        return input.new_empty(t.shape if (wanted and t is not None) else (0,))

    return (
        _maybe(output_mask[0], input),
        hx[0].new_empty(hx[0].shape),
        hx[1].new_empty(hx[1].shape),
        _maybe(output_mask[1], w_ih),
        _maybe(output_mask[2], w_hh),
        input.new_empty((w_hh.shape[0],) if output_mask[3] else (0,)),
        maybe_opt(output_mask[4], w_hr),
    )


@torch.library.register_fake("rnnfused::lstm_cell")
def _lstm_cell_fake(input, hx, w_ih, w_hh, b_ih, b_hh):
    torch._check(input.dim() == 2, lambda: f"rnnfused: input must be 2-D, got {input.dim()}-D")
    H = w_hh.shape[1]
    return input.new_empty((input.shape[0], H)), input.new_empty((input.shape[0], H))


@torch.library.register_fake("rnnfused::lstm_cell_backward")
def _lstm_cell_backward_fake(grad_hy, grad_cy, input, hx, w_ih, w_hh, b_ih, b_hh, output_mask):
    return (
        _maybe(output_mask[0], input),
        hx[0].new_empty(hx[0].shape),
        hx[1].new_empty(hx[1].shape),
        _maybe(output_mask[1], w_ih),
        _maybe(output_mask[2], w_hh),
        input.new_empty((w_hh.shape[0],) if output_mask[3] else (0,)),
    )
