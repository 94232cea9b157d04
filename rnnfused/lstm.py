"""FusedLSTM and FusedLSTMCell: torch.nn.LSTM's and torch.nn.LSTMCell's interfaces over rnnfused's
ops (csrc/host/: the LSTM cell, csrc/cells/lstm.h).

As FusedRNN (module.py): an nn.RNNBase (mode "LSTM": nn.LSTM's parameters, names, shapes, init,
proj_size, extra_repr, state_dict), argument handling here (batch_first, unbatched input,
PackedSequence, (h_0, c_0) default, autocast's casting rule), and ONE op call per forward
(rnnfused::lstm: every layer, direction and the dropout between them, autograd in C++). nn.LSTM's
own argument checks (check_forward_args, get_expected_cell_size, permute_hidden) are nn.LSTM's
functions themselves, so the messages are the same. The cell: one rnnfused::lstm_cell call.

On a CUDA tensor the LSTM runs as ATen ops for now (its CUDA kernels are a later step); the CPU
runs the LSTM kernels (csrc/cpu/rnn_cpu_lstm.cpp).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import onnx as _onnx
from . import _func
from . import ops  # noqa: F401  (the fake kernels of torch.ops.rnnfused.*)
from ._autocast import any_autocast, autocast_dtype, cast, cast_all
from ._common import SeqModule, adopt, cell_weights, graph_break_for_packed_input

__all__ = ["FusedLSTM", "FusedLSTMCell"]

_lstm_op = torch.ops.rnnfused.lstm.default
_lstm_cell_op = torch.ops.rnnfused.lstm_cell.default


class FusedLSTM(SeqModule, nn.RNNBase):
    r"""A drop-in replacement for :class:`torch.nn.LSTM`.

    Same constructor (input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None), parameter names
    (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
    ``weight_hr_l{k}`` with proj_size, ``_reverse`` suffix), shapes, initialisation, inputs
    (batched or unbatched, ``batch_first``, ``PackedSequence``, optional ``(h_0, c_0)``), outputs
    ``(output, (h_n, c_n))`` and exceptions as ``nn.LSTM``; a state_dict of one loads into the other.
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    # nn.LSTM's own argument checks and state permutation (the same messages).
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args  # type: ignore[assignment]
    permute_hidden = nn.LSTM.permute_hidden  # type: ignore[assignment]

    @torch._jit_internal._overload_method  # noqa: F811
    def forward(  # noqa: F811
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        pass

    @torch._jit_internal._overload_method  # noqa: F811
    def forward(  # noqa: F811
        self, input: PackedSequence, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[PackedSequence, Tuple[Tensor, Tensor]]:
        pass

    def forward(self, input, hx=None):  # noqa: F811
        orig_input = input
        batch_sizes: Optional[Tensor] = None
        sorted_indices: Optional[Tensor] = None
        unsorted_indices: Optional[Tensor] = None
        real_hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        is_batched = True
        batch_dim = 0 if self.batch_first else 1
        if isinstance(orig_input, PackedSequence):
            if not torch.jit.is_scripting() and torch.compiler.is_dynamo_compiling():
                graph_break_for_packed_input("FusedLSTM", "nn.LSTM")
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
            max_batch_size = int(batch_sizes[0])
            if hx is None:
                hx = self._zeros(input, max_batch_size, real_hidden_size)
            else:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            max_batch_size = input.size(0) if self.batch_first else input.size(1)
            if hx is None:
                hx = self._zeros(input, max_batch_size, real_hidden_size)
            else:
                if is_batched:
                    if hx[0].dim() != 3 or hx[1].dim() != 3:
                        raise RuntimeError(
                            "For batched 3-D input, hx and cx should "
                            f"also be 3-D but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                        )
                else:
                    if hx[0].dim() != 2 or hx[1].dim() != 2:
                        raise RuntimeError(
                            "For unbatched 2-D input, hx and cx should "
                            f"also be 2-D but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                        )
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(input, hx, batch_sizes)
        x = input.transpose(0, 1) if batch_sizes is None and self.batch_first else input
        if x.size(0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if not torch.jit.is_scripting():
            x, state, weights = cast_all(x, hx[0], self._weights())
            c0 = cast(hx[1], autocast_dtype(x.device.type)) if any_autocast() else hx[1]
            self._check_devices(x, weights[0], state, c0)
            if _onnx.in_dynamo_export():
                output, h_n, c_n = _onnx.lstm_symbolic(self, x, state, c0, weights, batch_sizes)
            else:
                lstm = _func.lstm if _func.transforms_active() else _lstm_op  # torch.func: rnnfused/_func.py
                output, h_n, c_n = lstm(
                    x, [state, c0], weights, batch_sizes, self.bias, self.num_layers, self.bidirectional,
                    float(self.dropout), self.training,
                )
        else:
            output, h_n, c_n = torch.ops.rnnfused.lstm(
                x, [hx[0], hx[1]], self._flat_weights, batch_sizes, self.bias, self.num_layers,
                self.bidirectional, float(self.dropout), self.training,
            )
        hidden = (h_n, c_n)
        if isinstance(orig_input, PackedSequence):
            output_packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output_packed, self.permute_hidden(hidden, unsorted_indices)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = (h_n.squeeze(1), c_n.squeeze(1))
        return output, hidden

    def _zeros(self, input: Tensor, batch: int, real_hidden_size: int) -> Tuple[Tensor, Tensor]:
        D = 2 if self.bidirectional else 1
        h = torch.zeros(self.num_layers * D, batch, real_hidden_size, dtype=input.dtype, device=input.device)
        c = torch.zeros(self.num_layers * D, batch, self.hidden_size, dtype=input.dtype, device=input.device)
        return h, c

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> "FusedLSTM":
        """A FusedLSTM computing what `lstm` computes, sharing its Parameter objects (so an
        optimizer built over lstm.parameters() keeps working), on its device and dtype, in its
        training mode."""
        if not isinstance(lstm, nn.RNNBase) or lstm.mode != "LSTM":
            raise TypeError(f"FusedLSTM.from_lstm expects a torch.nn.LSTM, got {type(lstm).__name__}")
        return adopt(
            cls, lstm, lstm._flat_weights_names, lstm.input_size, lstm.hidden_size,
            num_layers=lstm.num_layers, bias=lstm.bias, batch_first=lstm.batch_first,
            dropout=lstm.dropout, bidirectional=lstm.bidirectional, proj_size=lstm.proj_size,
            dtype=lstm.weight_ih_l0.dtype,
        )


class FusedLSTMCell(nn.RNNCellBase):
    r"""A drop-in replacement for :class:`torch.nn.LSTMCell`.

    Same constructor (input_size, hidden_size, bias=True, device=None, dtype=None), parameter
    names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), shapes, initialisation, inputs
    (batched ``(B, I)`` or unbatched ``(I,)``, optional ``(h, c)``), outputs ``(h', c')`` and
    exceptions as ``nn.LSTMCell``; a state_dict of one loads into the other.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros)
        else:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0)) if not is_batched else hx
        if not torch.jit.is_scripting():
            w_ih, w_hh, b_ih, b_hh = cell_weights(self)
            h, c = hx[0], hx[1]
            if any_autocast():
                dtype = autocast_dtype(input.device.type)
                input, h, c = cast(input, dtype), cast(h, dtype), cast(c, dtype)
                w_ih, w_hh = cast(w_ih, dtype), cast(w_hh, dtype)
                b_ih, b_hh = cast(b_ih, dtype), cast(b_hh, dtype)
            if _onnx.in_dynamo_export():
                ret = _onnx.lstm_cell_symbolic(input, h, c, w_ih, w_hh, b_ih, b_hh)
            else:
                cell = _func.lstm_cell if _func.transforms_active() else _lstm_cell_op  # torch.func: _func.py
                ret = cell(input, [h, c], w_ih, w_hh, b_ih, b_hh)
        else:
            ret = torch.ops.rnnfused.lstm_cell(input, [hx[0], hx[1]], self.weight_ih, self.weight_hh,
                                               self.bias_ih, self.bias_hh)
        if not is_batched:
            return ret[0].squeeze(0), ret[1].squeeze(0)
        return ret[0], ret[1]

    @classmethod
    def from_cell(cls, cell: nn.LSTMCell) -> "FusedLSTMCell":
        """A FusedLSTMCell computing what `cell` computes, sharing its Parameter objects, on its
        device and dtype, in its training mode."""
        if not isinstance(cell, nn.LSTMCell):
            raise TypeError(f"FusedLSTMCell.from_cell expects a torch.nn.LSTMCell, got {type(cell).__name__}")
        return adopt(cls, cell, [n for n, _ in cell.named_parameters()], cell.input_size,
                     cell.hidden_size, bias=cell.bias, dtype=cell.weight_ih.dtype)
