"""A pure-PyTorch reference of the rnnfused ops, step by step, for tests: slow and plain.

It defines the ops' semantics (csrc/rnn.h) independently of the kernels, including what nn.RNN
cannot express: per-item lengths of 0, unsorted lengths, either direction. Autograd through it
gives the reference gradients."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def rnn_fwd_ref(
    input: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    relu: bool = False,
    reverse: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Same arguments and results as rnnfused.ops.rnn_fwd."""
    T, B, _ = input.shape
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.cpu()
    act = torch.relu if relu else torch.tanh
    h = h0
    outs = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        z = input[t] @ w_ih.t() + h @ w_hh.t()
        if b_ih is not None:
            z = z + b_ih
        if b_hh is not None:
            z = z + b_hh
        active = (t < lengths).to(input.device).unsqueeze(1)
        h_new = act(z)
        outs[t] = torch.where(active, h_new, torch.zeros_like(h_new))
        h = torch.where(active, h_new, h)
    return torch.stack(outs), h
