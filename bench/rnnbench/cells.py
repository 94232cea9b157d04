"""What differs per cell (--cell): the one small table the benchmark reads it from.

Everything else (inputs, runners, accuracy, timing, floors, ONNX Runtime, report, figures) is one
code path over a Cell: the torch.nn classes, rnnfused's classes (by name: --self-test runs
without rnnfused), the gate blocks of W_ih / W_hh, the state tensors (h, or (h, c)), the ONNX
operator nn's module exports to, and whether torch's CPU forward can take oneDNN.
"""
import dataclasses

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


@dataclasses.dataclass(frozen=True)
class Cell:
    name: str              # --cell
    torch_cls: type        # the sequence module: nn.RNN, nn.LSTM
    torch_cell: type       # the cell: nn.RNNCell, nn.LSTMCell
    fused_name: str        # rnnfused's drop-in for torch_cls
    fused_cell_name: str   # rnnfused's drop-in for torch_cell
    from_seq: str          # the fused class's constructor from a torch module (from_rnn, from_lstm)
    gates: int             # gate blocks stacked in W_ih / W_hh (rows: gates * H)
    states: int            # state tensors: 1 (h) or 2 (h, c)
    onnx_op: str           # the ONNX operator torch.onnx.export(dynamo=False) writes for torch_cls
    ref_label: dict        # the label of torch_cls as the speed-up reference, per device
    onednn: bool           # torch's CPU forward can run oneDNN (aten::mkldnn_rnn_layer) for it
    cuda_kernel_name: bool  # rnnfused.cuda_kernel_name() names this cell's CUDA kernel

    @property
    def torch_name(self):
        return f"nn.{self.torch_cls.__name__}"

    @property
    def torch_cell_name(self):
        return f"nn.{self.torch_cell.__name__}"

    def hx(self, states):
        """The state argument torch's module takes, from the tuple of state tensors."""
        return states[0] if self.states == 1 else tuple(states)

    def flat_state(self, hx):
        """The tuple of state tensors, from what torch's module takes or returns as the state."""
        return (hx,) if self.states == 1 else tuple(hx)

    def flat(self, result):
        """(output, *state tensors) from a sequence module's result (output, state)."""
        out, hx = result
        return (out, *self.flat_state(hx))

    def module_kwargs(self, nonlinearity=None, proj=0):
        """The keyword arguments of torch_cls that only this cell has."""
        if self.name == "rnn":
            return {"nonlinearity": nonlinearity or "tanh"}
        return {"proj_size": proj} if proj else {}


CELLS = {
    "rnn": Cell("rnn", nn.RNN, nn.RNNCell, "FusedRNN", "FusedRNNCell", "from_rnn", gates=1, states=1,
                onnx_op="RNN", ref_label={"cpu": "native", "cuda": "cudnn"}, onednn=False,
                cuda_kernel_name=True),
    # nn.LSTM on the CPU runs oneDNN where torch allows it (so its label is not "native"); the row
    # says which path it took (column "nn.LSTM path").
    "lstm": Cell("lstm", nn.LSTM, nn.LSTMCell, "FusedLSTM", "FusedLSTMCell", "from_lstm", gates=4,
                 states=2, onnx_op="LSTM", ref_label={"cpu": "nn.LSTM", "cuda": "cudnn"}, onednn=True,
                 cuda_kernel_name=False),
}


def onednn_rule():
    """torch's switches for its oneDNN RNN path, and the rule it applies (aten/src/ATen/native/
    RNN.cpp, use_mkldnn and lstm()): built with oneDNN, torch.backends.mkldnn.enabled, every tensor
    on the CPU, float32 (bfloat16 / float16 where the processor has them; float16 only without
    grad), a non-empty input, no proj_size, no symbolic sizes; otherwise ATen's loop of matmuls."""
    return (f"torch.backends.mkldnn.is_available()={torch.backends.mkldnn.is_available()}, "
            f"torch.backends.mkldnn.enabled={torch.backends.mkldnn.enabled} "
            f"(torch._C._get_mkldnn_enabled()={torch._C._get_mkldnn_enabled()}); taken for CPU tensors in "
            "float32 (bf16/fp16 only where the processor has them, fp16 only without grad) without "
            "proj_size, else ATen's native loop")


class _OpNames(TorchDispatchMode):
    """Records the name of every aten op that runs under it (below autograd)."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._schema.name)
        return func(*args, **(kwargs or {}))


def torch_path(fn):
    """Which path torch took in fn(): "oneDNN" if it ran aten::mkldnn_rnn_layer (or its backward),
    else "native". Runs fn once, recording the aten ops it dispatches."""
    with _OpNames() as ops:
        fn()
    return "oneDNN" if any("mkldnn_rnn" in n for n in ops.names) else "native"
