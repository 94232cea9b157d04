"""ONNX export: FusedRNN becomes the standard ONNX ``RNN`` operator, FusedLSTM the ``LSTM`` one,
the cells plain ONNX ops.

Both of torch.onnx.export's exporters are covered:

- ``dynamo=True`` (torch.export, then translation): while exporting, FusedRNN.forward emits ONNX
  ``RNN`` nodes itself through ``torch.onnx.ops.symbolic_multi_out`` (one per layer, both
  directions in one node), with symbolic shapes, so the batch size and sequence length stay
  dynamic where they are marked dynamic.
- ``dynamo=False`` (the TorchScript exporter): the traced ``rnnfused::rnn`` op is translated by the
  symbolic function registered here at import (``torch.onnx.register_custom_op_symbolic``);
  ``rnnfused::rnn_cell`` likewise.

Per layer: ``RNN(X, W, R, B, sequence_lens, initial_h)`` with W = stack of the directions' w_ih
(D, H, I), R = stack of w_hh (D, H, H), B = [b_ih, b_hh] per direction (D, 2H) or absent,
``activations`` Tanh/Relu per direction, ``direction`` forward or bidirectional; its output
Y (T, D, B, H) becomes the next layer's input (T, B, D·H). h_n is the layers' Y_h concatenated.
Dropout between layers is a training-time operation: exporting a module in training mode with
dropout > 0 raises (nn.RNN's exporter drops it silently).

The LSTM likewise: ``LSTM(X, W, R, B, sequence_lens, initial_h, initial_c)`` per layer, with the
gate blocks reordered from PyTorch's (i, f, g, o) to ONNX's (i, o, f, c), B = [b_ih, b_hh] in that
order too, and Y_c beside Y_h. The ONNX operator has no projection: FusedLSTM with proj_size > 0
raises (so does nn.LSTM under the TorchScript exporter).
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["in_dynamo_export", "rnn_symbolic", "cell_symbolic", "lstm_symbolic", "lstm_cell_symbolic"]

try:  # the dynamo exporter's "exporting now" flag (torch >= 2.6); absent: never exporting
    from torch.onnx._internal.exporter import _flags as _dynamo_flags
except ImportError:  # pragma: no cover - older torch
    _dynamo_flags = None


def in_dynamo_export() -> bool:
    """True while torch.onnx.export(..., dynamo=True) traces the model. A cheap read of the flag
    behind torch.onnx.is_in_onnx_export(), which costs microseconds on every call."""
    return _dynamo_flags is not None and bool(getattr(_dynamo_flags, "_is_onnx_exporting", False))


def _check_exportable(name: str, op: str, training: bool, dropout: float, batch_sizes: Optional[Tensor] = None,
                      proj_size: int = 0) -> None:
    if training and dropout > 0:
        raise RuntimeError(
            f"rnnfused: ONNX export of {name} with dropout in training mode is not supported "
            f"(the ONNX {op} operator has no dropout); call model.eval() before exporting"
        )
    if proj_size > 0:
        raise RuntimeError(
            f"rnnfused: ONNX export of {name} with proj_size > 0 is not supported (the ONNX {op} "
            "operator has no projection)"
        )
    if batch_sizes is not None:
        raise RuntimeError(
            "rnnfused: torch.onnx.export(dynamo=True) of a PackedSequence input is not supported; "
            "pass a padded tensor, or export with dynamo=False"
        )


# PyTorch's LSTM gate blocks are (i, f, g, o); ONNX's (i, o, f, c): the blocks in ONNX's order.
_ONNX_LSTM_BLOCKS = (0, 3, 1, 2)


def _iofc(w: Tensor, H: int) -> Tensor:
    return torch.cat([w[b * H : (b + 1) * H] for b in _ONNX_LSTM_BLOCKS])


def _layers_symbolic(op: str, module, x: Tensor, states: List[Tensor], weights: List[Tensor], order,
                     attrs: dict) -> Tuple[Tensor, List[Tensor]]:
    """The module's layers as ONNX `op` nodes (RNN or LSTM: the same inputs X, W, R, B,
    sequence_lens, then one initial state per element of `states`, each (L·D, B, H); Y then the
    final states). `order` puts a weight's or bias's gate blocks in ONNX's order. Returns the last
    layer's output (T, B, D·H) and each final state over the layers (L·D, B, H)."""
    D = 2 if module.bidirectional else 1
    P = 4 if module.bias else 2
    H = module.hidden_size
    T, B = x.shape[0], x.shape[1]
    layer_in = x
    finals: List[List[Tensor]] = [[] for _ in states]
    for layer in range(module.num_layers):
        per_dir = [weights[(layer * D + d) * P : (layer * D + d + 1) * P] for d in range(D)]
        W = torch.stack([order(w[0]) for w in per_dir])
        R = torch.stack([order(w[1]) for w in per_dir])
        bias = torch.stack([torch.cat([order(w[2]), order(w[3])]) for w in per_dir]) if module.bias else None
        s = slice(layer * D, (layer + 1) * D)
        y, *y_states = torch.onnx.ops.symbolic_multi_out(
            op,
            [layer_in, W, R, bias, None, *(st[s] for st in states)],
            {**attrs, "direction": "bidirectional" if D == 2 else "forward", "hidden_size": H},
            dtypes=[x.dtype] * (1 + len(states)),
            shapes=[(T, D, B, H)] + [(D, B, H)] * len(states),
        )
        layer_in = y.transpose(1, 2).reshape(T, B, D * H)
        for f, y_s in zip(finals, y_states):
            f.append(y_s)
    return layer_in, [torch.cat(f, 0) for f in finals]


def rnn_symbolic(module, x: Tensor, hx: Tensor, weights: List[Tensor], batch_sizes: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """FusedRNN's forward as ONNX RNN nodes (dynamo exporter). x (T, B, I), hx (L·D, B, H)."""
    _check_exportable("FusedRNN", "RNN", module.training, module.dropout, batch_sizes)
    act = "Relu" if module.mode == "RNN_RELU" else "Tanh"
    D = 2 if module.bidirectional else 1
    out, (h_n,) = _layers_symbolic("RNN", module, x, [hx], weights, lambda w: w, {"activations": [act] * D})
    return out, h_n


def cell_symbolic(x: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor], relu: bool) -> Tensor:
    """FusedRNNCell's step in plain ATen ops, which every exporter translates (as nn.RNNCell's)."""
    z = torch.nn.functional.linear(x, w_ih, b_ih) + torch.nn.functional.linear(hx, w_hh, b_hh)
    return torch.relu(z) if relu else torch.tanh(z)


def lstm_symbolic(module, x: Tensor, h0: Tensor, c0: Tensor, weights: List[Tensor],
                  batch_sizes: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """FusedLSTM's forward as ONNX LSTM nodes (dynamo exporter). x (T, B, I), h0 and c0 (L·D, B, H)."""
    _check_exportable("FusedLSTM", "LSTM", module.training, module.dropout, batch_sizes, module.proj_size)
    H = module.hidden_size
    out, (h_n, c_n) = _layers_symbolic("LSTM", module, x, [h0, c0], weights, lambda w: _iofc(w, H), {})
    return out, h_n, c_n


def lstm_cell_symbolic(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
                       b_hh: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """FusedLSTMCell's step in plain ATen ops, which every exporter translates (as nn.LSTMCell's)."""
    z = torch.nn.functional.linear(x, w_ih, b_ih) + torch.nn.functional.linear(h, w_hh, b_hh)
    i, f, g, o = z.chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


# ------------------------------------------------------------------------------------------------
# The TorchScript exporter (dynamo=False): symbolic functions for the traced ops.


def _register_torchscript_symbolics() -> None:
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx import symbolic_helper as sh

    def none_input(g):
        n = g.op("prim::Constant")
        n.setType(torch._C.OptionalType.ofTensor())
        return n

    def const(g, values):
        return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def unsqueeze0(g, v):
        return sh._unsqueeze_helper(g, v, [0])

    def layers(g, op, input, states, weights, num_layers, D, P, H, has_biases, seq_lens, order, attrs):
        """The layers as ONNX `op` nodes (RNN or LSTM: X, W, R, B, sequence_lens, then one initial
        state per element of `states`); `order` puts a weight's or bias's gate blocks in ONNX's
        order. Returns the last layer's output (T, B, D·H) and each final state over the layers."""
        def stack(vs):
            vs = [unsqueeze0(g, v) for v in vs]
            return vs[0] if D == 1 else g.op("Concat", *vs, axis_i=0)

        def cat(vs):
            return vs[0] if len(vs) == 1 else g.op("Concat", *vs, axis_i=0)

        layer_in = input
        finals = [[] for _ in states]
        for layer in range(num_layers):
            per_dir = [weights[(layer * D + d) * P : (layer * D + d + 1) * P] for d in range(D)]
            W = stack([order(w[0]) for w in per_dir])
            R = stack([order(w[1]) for w in per_dir])
            bias = (stack([g.op("Concat", order(w[2]), order(w[3]), axis_i=0) for w in per_dir])
                    if has_biases else none_input(g))
            init = [sh._slice_helper(g, v, axes=[0], starts=[layer * D], ends=[(layer + 1) * D]) for v in states]
            y, *y_states = g.op(
                op, layer_in, W, R, bias, seq_lens, *init,
                direction_s="bidirectional" if D == 2 else "forward",
                hidden_size_i=H,
                outputs=1 + len(states),
                **attrs,
            )
            y = g.op("Transpose", y, perm_i=[0, 2, 1, 3])
            layer_in = g.op("Reshape", y, const(g, [0, 0, -1]))
            for f, y_s in zip(finals, y_states):
                f.append(y_s)
        return layer_in, [cat(f) for f in finals]

    @sh.parse_args("v", "v", "v", "v", "b", "i", "b", "b", "f", "b")
    def rnn(g, input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train):
        _check_exportable("FusedRNN", "RNN", train, dropout)
        weights = sh._unpack_list(params)
        D = 2 if bidirectional else 1
        P = 4 if has_biases else 2
        hidden_size = sh._get_tensor_dim_size(weights[1], 0)
        act = "Relu" if relu else "Tanh"
        if sh._is_none(batch_sizes):
            seq_lens = none_input(g)
        else:
            # From pack_padded_sequence, exported as prim::PackPadded(padded input, int32 lengths):
            # torch's ONNX peephole pass moves the packing past the RNN nodes, so the RNN reads the
            # padded input, and these "batch sizes" become the lengths (sequence_lens), as for nn.RNN.
            seq_lens = batch_sizes
        out, (h_n,) = layers(g, "RNN", input, [hx], weights, num_layers, D, P, hidden_size, has_biases, seq_lens,
                             lambda v: v, {"activations_s": [act] * D})
        return out, h_n

    @sh.parse_args("v", "v", "v", "v", "v", "v", "b")
    def rnn_cell(g, input, hx, w_ih, w_hh, b_ih, b_hh, relu):
        def linear(x, w, b):
            y = g.op("MatMul", x, g.op("Transpose", w, perm_i=[1, 0]))
            return y if sh._is_none(b) else g.op("Add", y, b)

        z = g.op("Add", linear(input, w_ih, b_ih), linear(hx, w_hh, b_hh))
        return g.op("Relu" if relu else "Tanh", z)

    def iofc(g, v, H):  # the gate blocks of a (4H, ...) weight or a (4H,) bias in ONNX's order
        blocks = [sh._slice_helper(g, v, axes=[0], starts=[b * H], ends=[(b + 1) * H]) for b in _ONNX_LSTM_BLOCKS]
        return g.op("Concat", *blocks, axis_i=0)

    @sh.parse_args("v", "v", "v", "v", "b", "i", "b", "f", "b")
    def lstm(g, input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, dropout, train):
        weights = sh._unpack_list(params)
        h0, c0 = sh._unpack_list(hx)
        D = 2 if bidirectional else 1
        P = len(weights) // (num_layers * D)
        _check_exportable("FusedLSTM", "LSTM", train, dropout, proj_size=int(P > (4 if has_biases else 2)))
        H = sh._get_tensor_dim_size(weights[1], 1)
        seq_lens = none_input(g) if sh._is_none(batch_sizes) else batch_sizes  # as for the RNN, above
        out, (h_n, c_n) = layers(g, "LSTM", input, [h0, c0], weights, num_layers, D, P, H, has_biases, seq_lens,
                                 lambda v: iofc(g, v, H), {})
        return out, h_n, c_n

    @sh.parse_args("v", "v", "v", "v", "v", "v")
    def lstm_cell(g, input, hx, w_ih, w_hh, b_ih, b_hh):
        def linear(x, w, b):
            y = g.op("MatMul", x, g.op("Transpose", w, perm_i=[1, 0]))
            return y if sh._is_none(b) else g.op("Add", y, b)

        h, c = sh._unpack_list(hx)
        H = sh._get_tensor_dim_size(w_hh, 1)
        z = g.op("Add", linear(input, w_ih, b_ih), linear(h, w_hh, b_hh))
        i, f, gg, o = (g.op("Tanh" if k == 2 else "Sigmoid",
                            sh._slice_helper(g, z, axes=[1], starts=[k * H], ends=[(k + 1) * H])) for k in range(4))
        c_new = g.op("Add", g.op("Mul", f, c), g.op("Mul", i, gg))
        return g.op("Mul", o, g.op("Tanh", c_new)), c_new

    register_custom_op_symbolic("rnnfused::lstm", lstm, 9)
    register_custom_op_symbolic("rnnfused::lstm_cell", lstm_cell, 9)
    register_custom_op_symbolic("rnnfused::rnn", rnn, 9)
    register_custom_op_symbolic("rnnfused::rnn_cell", rnn_cell, 9)


_register_torchscript_symbolics()
