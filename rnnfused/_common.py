"""What the fused modules share, whatever their cell: the weights as the ops take them, the device
and dtype checks nn.RNNBase leaves to cuDNN / ATen, and adopting a torch.nn module's Parameters.

FusedRNN and FusedLSTM (nn.RNNBase) take SeqModule's methods; FusedRNNCell and FusedLSTMCell
(nn.RNNCellBase) take cell_weights and adopt.
"""
import warnings
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn


def _check_state(x: Tensor, s: Tensor, name: str) -> None:
    if s.device != x.device:
        raise RuntimeError(
            f"Input and {name} tensors are not at the same device, found input tensor at "
            f"{x.device} and {name} tensor at {s.device}"
        )
    if s.dtype != x.dtype:
        raise RuntimeError(f"Expected {name} state dtype {x.dtype} (the input's), got {s.dtype}")


class SeqModule:
    """Methods of the fused nn.RNNBase modules (mixed in before nn.RNNBase)."""

    def _weights(self) -> List[Tensor]:
        """The current weights in nn.RNNBase's order. nn.RNNBase's own _update_flat_weights()
        costs microseconds a call (weak references, getattr per name); this checks identity
        against _parameters and rebuilds only when a weight was replaced or is computed
        (parametrize)."""
        weights = self._flat_weights
        params = self._parameters
        for name, w in zip(self._flat_weights_names, weights):
            if params.get(name) is not w:
                self._init_flat_weights()
                return self._flat_weights
        return weights

    def _check_devices(self, x: Tensor, w: Tensor, h: Tensor, c: Optional[Tensor] = None) -> None:
        """nn.RNNBase's messages for a parameter or a state on another device than the input;
        a state of another dtype than the input's."""
        if x.device != w.device:
            raise RuntimeError(
                f"Input and parameter tensors are not at the same device, found input tensor at "
                f"{x.device} and parameter tensor at {w.device}"
            )
        _check_state(x, h, "hidden")
        if c is not None:
            _check_state(x, c, "cell")

    def flatten_parameters(self) -> None:
        """A no-op kept for compatibility: code written for nn.RNN / nn.LSTM calls it to reset
        cuDNN's weight layout, which rnnfused's kernels do not need (they read torch.nn's layout
        as is)."""


_CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def cell_weights(cell: nn.Module):
    """(weight_ih, weight_hh, bias_ih, bias_hh) of a cell module from _parameters directly
    (Module.__getattr__ costs about a microsecond each); through getattr where a weight is not a
    registered parameter (parametrize, or one replaced by a plain tensor)."""
    p = cell._parameters
    if all(n in p for n in _CELL_WEIGHTS):
        return p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    return tuple(getattr(cell, n) for n in _CELL_WEIGHTS)


def adopt(cls, src: nn.Module, names: Sequence[str], *args, **kwargs):
    """cls(*args, **kwargs) built on the meta device, then given src's Parameter objects under
    `names` (so an optimizer built over src.parameters() keeps working), in src's training mode.
    Constructor warnings are silenced: src's own constructor already gave them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = cls(*args, device="meta", **kwargs)
    for name in names:
        setattr(fused, name, getattr(src, name))
    if isinstance(fused, nn.RNNBase):
        fused._init_flat_weights()  # refresh the weak references to the (replaced) meta weights
    fused.train(src.training)
    return fused


def packed_under_compile(name: str, torch_name: str) -> str:
    """The message a PackedSequence under torch.compile(fullgraph=True) raises with."""
    return (
        f"{name} got a PackedSequence under torch.compile. Its batch sizes are data (batch_sizes[0] "
        f"is h_0's batch size, as {torch_name} reads it), which Dynamo cannot trace, so the graph "
        "breaks here; with fullgraph=True that is an error. To compile one graph, pass a padded "
        "tensor (and h_0) instead of a PackedSequence and pick each sequence's outputs by its "
        "length; or compile without fullgraph=True: the packed call then runs between two graphs, "
        "with eager's results.")


# graph_break(msg=...) in the torch versions rnnfused is tested with; older ones break without it.
_GRAPH_BREAK_TAKES_MSG = torch.torch_version.TorchVersion(torch.__version__) >= (2, 12)


def graph_break_for_packed_input(name: str, torch_name: str) -> None:
    """Under Dynamo only: break the graph where a packed input starts, with the message a user of
    fullgraph=True gets (instead of Dynamo's "Could not guard on data-dependent expression")."""
    if _GRAPH_BREAK_TAKES_MSG:
        torch._dynamo.graph_break(msg=packed_under_compile(name, torch_name))
    else:
        torch._dynamo.graph_break()
