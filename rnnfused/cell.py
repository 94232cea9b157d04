"""FusedRNNCell: torch.nn.RNNCell's interface over rnnfused's fused cell step.

One call is one op call (rnnfused::rnn_cell): h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) in one
kernel, no intermediate tensor; autograd in C++ (csrc/host/). For stepping one input at a time
(autoregressive generation, online control, RL, teaching code written with nn.RNNCell).
"""
from typing import Optional

import torch
from torch import Tensor, nn

from . import onnx as _onnx
from . import _func
from . import ops  # noqa: F401  (the fake kernels of torch.ops.rnnfused.*)
from ._autocast import any_autocast, autocast_dtype, cast
from ._common import adopt, cell_weights

__all__ = ["FusedRNNCell"]

_cell_op = torch.ops.rnnfused.rnn_cell.default  # the fused step (csrc/host/), autograd included


# ATen's names of the dtypes, as its messages print them.
_ATEN_NAME = {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half", torch.bfloat16: "BFloat16",
              torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char",
              torch.uint8: "Byte", torch.bool: "Bool", torch.complex64: "ComplexFloat",
              torch.complex128: "ComplexDouble"}


def _check_dtypes(input, hx, w_ih, w_hh):
    """nn.RNNCell's error for an input or hx whose dtype is not the weights' (its matmul's words:
    the input against weight_ih first, then hx against weight_hh). nn.RNNCell checks the shapes
    first: where one is wrong, the op raises nn's shape error instead (input and hx are 2-D here)."""
    if input.size(1) != w_ih.size(1) or hx.size(1) != w_hh.size(1) or hx.size(0) != input.size(0):
        return
    for a, w in ((input, w_ih), (hx, w_hh)):
        if a.dtype != w.dtype:
            raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                               f"{_ATEN_NAME.get(a.dtype, a.dtype)} and {_ATEN_NAME.get(w.dtype, w.dtype)}")


class FusedRNNCell(nn.RNNCellBase):
    r"""A drop-in replacement for :class:`torch.nn.RNNCell` (Elman cell, tanh or relu).

    Same constructor (input_size, hidden_size, bias=True, nonlinearity='tanh', device=None,
    dtype=None), parameter names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), shapes,
    initialisation, inputs (batched ``(B, I)`` or unbatched ``(I,)``, optional ``hx``), output and
    exceptions as ``nn.RNNCell``; a state_dict of one loads into the other.
    """

    __constants__ = ["input_size", "hidden_size", "bias", "nonlinearity"]
    nonlinearity: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
        else:
            hx = hx.unsqueeze(0) if not is_batched else hx
        if self.nonlinearity == "tanh":
            relu = False
        elif self.nonlinearity == "relu":
            relu = True
        else:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        if not torch.jit.is_scripting():
            w_ih, w_hh, b_ih, b_hh = cell_weights(self)
            if any_autocast():
                dtype = autocast_dtype(input.device.type)
                input, hx = cast(input, dtype), cast(hx, dtype)
                w_ih, w_hh = cast(w_ih, dtype), cast(w_hh, dtype)
                b_ih, b_hh = cast(b_ih, dtype), cast(b_hh, dtype)
            _check_dtypes(input, hx, w_ih, w_hh)
            if _onnx.in_dynamo_export():
                ret = _onnx.cell_symbolic(input, hx, w_ih, w_hh, b_ih, b_hh, relu)
            else:
                cell = _func.rnn_cell if _func.transforms_active() else _cell_op  # torch.func: rnnfused/_func.py
                ret = cell(input, hx, w_ih, w_hh, b_ih, b_hh, relu)
        else:
            ret = torch.ops.rnnfused.rnn_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, relu)
        if not is_batched:
            ret = ret.squeeze(0)
        return ret

    @classmethod
    def from_cell(cls, cell: nn.RNNCell) -> "FusedRNNCell":
        """A FusedRNNCell computing what `cell` computes, sharing its Parameter objects (so an
        optimizer built over cell.parameters() keeps working), on its device and dtype, in its
        training mode."""
        if not isinstance(cell, nn.RNNCell):
            raise TypeError(f"FusedRNNCell.from_cell expects a torch.nn.RNNCell, got {type(cell).__name__}")
        return adopt(cls, cell, [n for n, _ in cell.named_parameters()], cell.input_size,
                     cell.hidden_size, bias=cell.bias, nonlinearity=cell.nonlinearity,
                     dtype=cell.weight_ih.dtype)
