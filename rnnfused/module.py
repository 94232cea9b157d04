"""FusedRNN: torch.nn.RNN's interface over rnnfused's fused kernels.

Argument handling lives here: batch_first, unbatched input, PackedSequence, h0 default, autocast's
casting rule. Everything else (every layer and direction, the dropout between layers, and autograd)
is ONE call of the rnnfused::rnn op, so a short sequence pays Python once per call, not once per
layer-direction.

FusedRNN derives from nn.RNNBase (the parameter machinery behind nn.RNN: the same parameter names,
shapes, initialisation, extra_repr, state_dict, argument checks and `_flat_weights`), not from
nn.RNN itself: torch.compile(fullgraph=True) refuses any nn.RNN/GRU/LSTM instance ("Attempted to
wrap RNN, GRU, or LSTM"), and FusedRNN is meant to compile. Its forward is TorchScript-compatible
(the same overloads as nn.RNN's); under torch.onnx.export it emits the standard ONNX RNN operator
(rnnfused/onnx.py).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import onnx as _onnx
from . import _func
from . import ops  # noqa: F401  (the fake kernels of torch.ops.rnnfused.*)
from ._autocast import cast_all
from ._common import SeqModule, adopt, graph_break_for_packed_input
from .cell import FusedRNNCell
from .lstm import FusedLSTM, FusedLSTMCell

__all__ = ["FusedRNN", "convert"]

_rnn_op = torch.ops.rnnfused.rnn.default  # the op (csrc/host/): every layer, direction, dropout

class FusedRNN(SeqModule, nn.RNNBase):
    r"""A drop-in replacement for :class:`torch.nn.RNN` (Elman RNN, tanh or relu).

    Same constructor, parameter names (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, ``_reverse`` suffix), shapes, initialisation, inputs (batched or unbatched,
    ``batch_first``, ``PackedSequence``, optional ``h_0``) and outputs as ``nn.RNN``; a state_dict
    of one loads into the other. The recurrence runs in rnnfused's fused C++/CUDA kernels.

    Args: input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None.
    """

    def __init__(self, *args, **kwargs):
        # nn.RNN's own argument rules, so the same calls are accepted and rejected alike.
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)

    # The overloads nn.RNN declares, so torch.jit.script compiles forward once per input type.
    @torch._jit_internal._overload_method  # noqa: F811
    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:  # noqa: F811
        pass

    @torch._jit_internal._overload_method  # noqa: F811
    def forward(  # noqa: F811
        self, input: PackedSequence, hx: Optional[Tensor] = None
    ) -> Tuple[PackedSequence, Tensor]:
        pass

    def forward(self, input, hx=None):  # noqa: F811
        num_directions = 2 if self.bidirectional else 1
        orig_input = input
        batch_sizes: Optional[Tensor] = None
        sorted_indices: Optional[Tensor] = None
        unsorted_indices: Optional[Tensor] = None
        is_batched = True
        batch_dim = 0 if self.batch_first else 1
        if isinstance(orig_input, PackedSequence):
            if not torch.jit.is_scripting() and torch.compiler.is_dynamo_compiling():
                graph_break_for_packed_input("FusedRNN", "nn.RNN")
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
            if hx is None:
                hx = torch.zeros(
                    self.num_layers * num_directions,
                    int(batch_sizes[0]),
                    self.hidden_size,
                    dtype=input.dtype,
                    device=input.device,
                )
            else:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(batch_dim)
                if hx is not None:
                    if hx.dim() != 2:
                        raise RuntimeError(
                            f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor"
                        )
                    hx = hx.unsqueeze(1)
            elif hx is not None and hx.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            if hx is None:
                max_batch_size = input.size(0) if self.batch_first else input.size(1)
                hx = torch.zeros(
                    self.num_layers * num_directions,
                    max_batch_size,
                    self.hidden_size,
                    dtype=input.dtype,
                    device=input.device,
                )
        self.check_forward_args(input, hx, batch_sizes)
        x = input.transpose(0, 1) if batch_sizes is None and self.batch_first else input
        if x.size(0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        relu = self.mode == "RNN_RELU"
        if not torch.jit.is_scripting():
            x, hx, weights = cast_all(x, hx, self._weights())
            self._check_devices(x, weights[0], hx)
            if _onnx.in_dynamo_export():
                output, hidden = _onnx.rnn_symbolic(self, x, hx, weights, batch_sizes)
            else:
                rnn = _func.rnn if _func.transforms_active() else _rnn_op  # torch.func: rnnfused/_func.py
                output, hidden = rnn(
                    x, hx, weights, batch_sizes, self.bias, self.num_layers, self.bidirectional, relu,
                    float(self.dropout), self.training,
                )
        else:
            output, hidden = torch.ops.rnnfused.rnn(
                x, hx, self._flat_weights, batch_sizes, self.bias, self.num_layers, self.bidirectional, relu,
                float(self.dropout), self.training,
            )

        if isinstance(orig_input, PackedSequence):
            output_packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output_packed, self.permute_hidden(hidden, unsorted_indices)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = hidden.squeeze(1)
        return output, hidden

    @classmethod
    def from_rnn(cls, rnn: nn.RNN) -> "FusedRNN":
        """A FusedRNN computing what `rnn` computes, sharing its Parameter objects (so an
        optimizer built over rnn.parameters() keeps working), on its device and dtype, in its
        training mode."""
        if not isinstance(rnn, nn.RNNBase) or rnn.mode not in ("RNN_TANH", "RNN_RELU"):
            raise TypeError(f"FusedRNN.from_rnn expects a torch.nn.RNN, got {type(rnn).__name__}")
        return adopt(
            cls, rnn, rnn._flat_weights_names, rnn.input_size, rnn.hidden_size,
            num_layers=rnn.num_layers, nonlinearity="relu" if rnn.mode == "RNN_RELU" else "tanh",
            bias=rnn.bias, batch_first=rnn.batch_first, dropout=rnn.dropout,
            bidirectional=rnn.bidirectional, dtype=rnn.weight_ih_l0.dtype,
        )


def convert(model: nn.Module) -> nn.Module:
    """Replace every torch.nn.RNN, nn.RNNCell, nn.LSTM and nn.LSTMCell inside `model` (in place) by
    a FusedRNN, FusedRNNCell, FusedLSTM or FusedLSTMCell sharing its parameters. Returns the model;
    if `model` itself is one of them, returns its replacement."""

    def swap(m: nn.Module) -> Optional[nn.Module]:
        if isinstance(m, nn.RNN):
            return FusedRNN.from_rnn(m)
        if isinstance(m, nn.RNNCell):
            return FusedRNNCell.from_cell(m)
        if isinstance(m, nn.LSTM):
            return FusedLSTM.from_lstm(m)
        if isinstance(m, nn.LSTMCell):
            return FusedLSTMCell.from_cell(m)
        return None

    replaced = swap(model)
    if replaced is not None:
        return replaced
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = swap(child)
            if new is not None:
                setattr(parent, name, new)
    return model
