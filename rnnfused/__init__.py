"""rnnfused: a drop-in torch.nn.RNN whose recurrence runs in fused C++/CUDA kernels.

    from rnnfused import FusedRNN          # same constructor, parameters and outputs as nn.RNN
    from rnnfused import FusedRNNCell      # the same for nn.RNNCell
    model = rnnfused.convert(model)        # or swap every nn.RNN / nn.RNNCell inside a model
"""
import torch  # noqa: F401  (loads libtorch before our extension)

from . import _C  # noqa: F401  (registers torch.ops.rnnfused.*)
from . import ops
from .cell import FusedRNNCell
from .module import FusedRNN, convert

__version__ = "0.1.0"
__all__ = ["FusedRNN", "FusedRNNCell", "convert", "ops", "built_with_cuda", "cuda_kernel_name"]


def built_with_cuda() -> bool:
    """True if this build of rnnfused has its CUDA kernels (FORCE_CUDA / a CUDA toolkit at build)."""
    return _C.built_with_cuda()


def cuda_kernel_name(B: int, H: int, dtype: torch.dtype = torch.float32, backward: bool = False) -> str:
    """The CUDA kernel ("stepwise" or "persistent") rnnfused picks for batch B and hidden size H,
    honouring the environment variable RNNFUSED_KERNEL. Raises RuntimeError in a CPU-only build."""
    if not _C.built_with_cuda():
        raise RuntimeError("rnnfused was built without CUDA kernels")
    if not torch.cuda.is_available():
        raise RuntimeError("rnnfused.cuda_kernel_name needs a CUDA device")
    return _C.cuda_kernel_name(int(B), int(H), str(dtype).replace("torch.", ""), bool(backward))
