"""rnnfused: drop-in torch.nn.RNN and nn.LSTM whose recurrence runs in fused C++/CUDA kernels.

    from rnnfused import FusedRNN          # same constructor, parameters and outputs as nn.RNN
    from rnnfused import FusedRNNCell      # the same for nn.RNNCell
    from rnnfused import FusedLSTM, FusedLSTMCell  # the same for nn.LSTM, nn.LSTMCell
    model = rnnfused.convert(model)        # or swap every nn.RNN / RNNCell / LSTM / LSTMCell inside
"""
import warnings

with warnings.catch_warnings():
    # Without numpy, torch (2.13, 2.14) warns "Failed to initialize NumPy" once per process, from
    # inside its own import (or, in other versions, from the torch._dynamo import that module.py's
    # @torch.compiler.disable makes). numpy is optional for torch and unused by rnnfused: keep
    # that noise out of `import rnnfused`. torch still raises "Numpy is not available" where numpy
    # would really be needed (Tensor.numpy()).
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
    import torch  # loads libtorch before our extension

    from . import _build_mode
    from ._build import build_info, load_extension

    _C = load_extension()  # checks the torch it was built for first; registers torch.ops.rnnfused.*
    from . import ops
    from .cell import FusedRNNCell
    from .lstm import FusedLSTM, FusedLSTMCell
    from .module import FusedRNN, convert

# The installed version: "0.1.0+cpu" or "0.1.0+cu130", what the build compiled (rnnfused/_build_mode.py).
__version__ = (build_info() or {}).get("VERSION", _build_mode.VERSION)
__all__ = ["FusedRNN", "FusedRNNCell", "FusedLSTM", "FusedLSTMCell", "convert", "ops", "built_with_cuda", "cuda_kernel_name", "cpu_isa",
           "build_info"]


def built_with_cuda() -> bool:
    """True if this build of rnnfused has its CUDA kernels (FORCE_CUDA / a CUDA toolkit at build)."""
    return _C.built_with_cuda()


def cpu_isa() -> str:
    """The instruction set rnnfused's CPU kernels run with here: "avx512", "avx2", "default" (the
    baseline build, any processor) or "vec16" (the AVX-512 blocking in portable C++, for tests).
    It is the kernels' own choice: RNNFUSED_CPU_ISA if set (RuntimeError if this processor lacks
    the one named), else the best the processor has (AVX-512 F/BW/DQ/VL > AVX2 + FMA > default),
    capped by ATen's ATEN_CPU_CAPABILITY."""
    return _C.cpu_isa()


def cuda_kernel_name(B: int, H: int, dtype: torch.dtype = torch.float32, backward: bool = False) -> str:
    """The CUDA kernel ("stepwise" or "persistent") rnnfused picks for batch B and hidden size H,
    honouring the environment variable RNNFUSED_KERNEL. Raises RuntimeError in a CPU-only build."""
    if not _C.built_with_cuda():
        raise RuntimeError("rnnfused was built without CUDA kernels")
    if not torch.cuda.is_available():
        raise RuntimeError("rnnfused.cuda_kernel_name needs a CUDA device")
    return _C.cuda_kernel_name(int(B), int(H), str(dtype).replace("torch.", ""), bool(backward))
