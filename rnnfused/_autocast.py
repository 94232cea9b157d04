"""torch.autocast's casting rule as nn.RNN and nn.RNNCell follow it, for FusedRNN (module.py) and
FusedRNNCell (cell.py)."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype nn.RNN computes in under torch.autocast on this device type, or None when
    autocast is off. nn.RNN's matmuls are on autocast's lower-precision list (on the CPU it
    runs the whole recurrence in the autocast dtype; cuDNN casts input, h0 and weights)."""
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def cast(t: Optional[Tensor], dtype: Optional[torch.dtype]) -> Optional[Tensor]:
    """Autocast's eligibility rule: floating tensors other than float64 are cast."""
    if dtype is None or t is None or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    return t.to(dtype)


# One cheap call that says whether autocast is on for any device (the per-device query needs the
# tensor's device first, which costs more than the whole check when autocast is off).
any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def cast_all(x: Tensor, hx: Tensor, weights: List[Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
    """x, hx and the weights as nn.RNN computes with them under autocast (unchanged when it is
    off). Eager mode only: TorchScript has no autocast state to read here."""
    if not any_autocast():
        return x, hx, weights
    dtype = autocast_dtype(x.device.type)
    if dtype is None:
        return x, hx, weights
    return cast(x, dtype), cast(hx, dtype), [cast(w, dtype) for w in weights]
