"""FusedRNN: torch.nn.RNN's interface over rnnfused's fused kernels.

Argument handling lives here: batch_first, unbatched input, PackedSequence, h0 default, layers ×
directions, dropout between layers. Each layer-direction is one call of the rnnfused::rnn_fwd op.

FusedRNN derives from nn.RNNBase (the parameter machinery behind nn.RNN: the same parameter names,
shapes, initialisation, extra_repr, state_dict and argument checks), not from nn.RNN itself:
torch.compile(fullgraph=True) refuses any nn.RNN/GRU/LSTM instance ("Attempted to wrap RNN, GRU,
or LSTM"), and FusedRNN is meant to compile.
"""
import warnings
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import ops

__all__ = ["FusedRNN", "convert"]


class FusedRNN(nn.RNNBase):
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
        # Parameter names per (layer, direction), in the order the op takes them.
        self._layer_param_names: List[List[Tuple[str, ...]]] = []
        for layer in range(self.num_layers):
            per_dir = []
            for direction in range(2 if self.bidirectional else 1):
                sfx = f"l{layer}" + ("_reverse" if direction == 1 else "")
                names = (f"weight_ih_{sfx}", f"weight_hh_{sfx}")
                if self.bias:
                    names += (f"bias_ih_{sfx}", f"bias_hh_{sfx}")
                per_dir.append(names)
            self._layer_param_names.append(per_dir)

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        num_directions = 2 if self.bidirectional else 1
        is_packed = isinstance(input, PackedSequence)
        lengths = None
        unsorted_indices = None
        if is_packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
            self.check_input(data, batch_sizes)
            x, lengths, lengths_cpu, max_batch_size = _pad_packed(data, batch_sizes)
            check_ref, check_sizes = data, batch_sizes
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
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
            max_batch_size = input.size(0) if self.batch_first else input.size(1)
            x = input.transpose(0, 1) if self.batch_first else input
            check_ref, check_sizes = input, None
        if hx is None:
            hx = torch.zeros(
                self.num_layers * num_directions,
                max_batch_size,
                self.hidden_size,
                dtype=x.dtype,
                device=x.device,
            )
        self.check_forward_args(check_ref, hx, check_sizes)
        cast_dtype = _autocast_dtype(x.device.type)  # weights are cast in _run
        x, hx = _autocast(x, cast_dtype), _autocast(hx, cast_dtype)
        self._check_devices(x, hx)
        if x.size(0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

        output, h_n = self._run(x, hx, lengths)

        if is_packed:
            packed = PackedSequence(_pack_padded(output, lengths_cpu), batch_sizes, sorted_indices, unsorted_indices)
            return packed, self.permute_hidden(h_n, unsorted_indices)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            output = output.squeeze(batch_dim)
            h_n = h_n.squeeze(1)
        return output, h_n

    def _check_devices(self, x: Tensor, hx: Tensor) -> None:
        w = self._flat_weights[0]
        if x.device != w.device:
            raise RuntimeError(
                f"Input and parameter tensors are not at the same device, found input tensor at "
                f"{x.device} and parameter tensor at {w.device}"
            )
        if hx.device != x.device:
            raise RuntimeError(
                f"Input and hidden tensors are not at the same device, found input tensor at "
                f"{x.device} and hidden tensor at {hx.device}"
            )
        if hx.dtype != x.dtype:
            raise RuntimeError(f"Expected hidden state dtype {x.dtype} (the input's), got {hx.dtype}")

    def _run(self, x: Tensor, hx: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        relu = self.mode == "RNN_RELU"
        cast_dtype = _autocast_dtype(x.device.type)
        layer_input = x
        h_n: List[Tensor] = []
        for layer, per_dir in enumerate(self._layer_param_names):
            outs = []
            for direction, names in enumerate(per_dir):
                params = [_autocast(getattr(self, n), cast_dtype) for n in names]
                b_ih, b_hh = (params[2], params[3]) if self.bias else (None, None)
                out, h = ops.rnn_fwd(
                    layer_input,
                    hx[layer * len(per_dir) + direction],
                    params[0],
                    params[1],
                    b_ih,
                    b_hh,
                    lengths,
                    relu,
                    direction == 1,
                )
                outs.append(out)
                h_n.append(h)
            layer_input = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        return layer_input, torch.stack(h_n, 0)

    def flatten_parameters(self) -> None:
        """A no-op kept for compatibility: code written for nn.RNN calls it to reset cuDNN's
        weight layout, which rnnfused's kernels do not need (they read nn.RNN's layout as is)."""

    @classmethod
    def from_rnn(cls, rnn: nn.RNN) -> "FusedRNN":
        """A FusedRNN computing what `rnn` computes, sharing its Parameter objects (so an
        optimizer built over rnn.parameters() keeps working), on its device and dtype, in its
        training mode."""
        if not isinstance(rnn, nn.RNNBase) or rnn.mode not in ("RNN_TANH", "RNN_RELU"):
            raise TypeError(f"FusedRNN.from_rnn expects a torch.nn.RNN, got {type(rnn).__name__}")
        w = rnn.weight_ih_l0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nn.RNN already warned about its own arguments
            fused = cls(
                rnn.input_size,
                rnn.hidden_size,
                num_layers=rnn.num_layers,
                nonlinearity="relu" if rnn.mode == "RNN_RELU" else "tanh",
                bias=rnn.bias,
                batch_first=rnn.batch_first,
                dropout=rnn.dropout,
                bidirectional=rnn.bidirectional,
                device="meta",
                dtype=w.dtype,
            )
        for name in rnn._flat_weights_names:
            setattr(fused, name, getattr(rnn, name))
        fused.train(rnn.training)
        return fused


@torch.compiler.disable
def _pad_packed(data: Tensor, batch_sizes: Tensor) -> Tuple[Tensor, Tensor, Tensor, int]:
    """A PackedSequence's data as a time-major padded batch (sorted order, lengths
    non-increasing, on data's device) and its batch size. Shapes depend on batch_sizes' values,
    so torch.compile runs this eagerly (a graph break) rather than failing on fake tensors."""
    x, lengths = torch._VF._pad_packed_sequence(data, batch_sizes, False, 0.0, batch_sizes.size(0))
    # lengths on data's device for the kernels, and on the CPU for packing back (no device sync)
    return x, lengths.to(device=data.device), lengths, int(batch_sizes[0])


@torch.compiler.disable
def _pack_padded(output: Tensor, lengths_cpu: Tensor) -> Tensor:
    """The inverse of _pad_packed: a padded time-major output back to packed data."""
    data_out, _ = torch._VF._pack_padded_sequence(output, lengths_cpu, False)
    return data_out


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype nn.RNN computes in under torch.autocast on this device type, or None when
    autocast is off. nn.RNN's matmuls are on autocast's lower-precision list (on the CPU it
    runs the whole recurrence in the autocast dtype; cuDNN casts input, h0 and weights)."""
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _autocast(t: Optional[Tensor], dtype: Optional[torch.dtype]) -> Optional[Tensor]:
    """Autocast's eligibility rule: floating tensors other than float64 are cast."""
    if dtype is None or t is None or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    return t.to(dtype)


def convert(model: nn.Module) -> nn.Module:
    """Replace every torch.nn.RNN inside `model` (in place) by a FusedRNN sharing its parameters.
    Returns the model; if `model` itself is an nn.RNN, returns its FusedRNN."""
    if isinstance(model, nn.RNN):
        return FusedRNN.from_rnn(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.RNN):
                setattr(parent, name, FusedRNN.from_rnn(child))
    return model
