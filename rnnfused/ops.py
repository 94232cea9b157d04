"""torch.library glue for the rnnfused ops: typed wrappers, fake (shape-only) kernels for
torch.compile / meta tensors, and the autograd rule (backward = the rnn_bwd op).

The ops themselves (schemas, validation, CPU/CUDA kernels) live in csrc/ops.cpp.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers torch.ops.rnnfused.*)

__all__ = ["rnn_fwd", "rnn_bwd"]


def rnn_fwd(
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
    """One layer, one direction of an Elman RNN over a whole time-major sequence.

    input (T, B, I), h0 (B, H), w_ih (H, I), w_hh (H, H), biases (H,) or None, lengths (B,) int64
    on input's device or None. Returns output (T, B, H) and h_n (B, H). With lengths, item b is
    active at step t iff t < lengths[b]; inactive steps output zeros and keep the state; the
    reverse direction starts at t = lengths[b] - 1.
    """
    return torch.ops.rnnfused.rnn_fwd.default(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse)


def rnn_bwd(
    grad_output: Optional[Tensor],
    grad_hn: Optional[Tensor],
    input: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    output: Tensor,
    lengths: Optional[Tensor],
    relu: bool,
    reverse: bool,
    output_mask: List[bool],
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of rnn_fwd: (d input, d h0, d w_ih, d w_hh, d bias). output_mask says which of
    (input, w_ih, w_hh, bias) are wanted; the others come back as empty tensors of shape (0,)."""
    return torch.ops.rnnfused.rnn_bwd.default(
        grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths, relu, reverse, output_mask
    )


@torch.library.register_fake("rnnfused::rnn_fwd")
def _rnn_fwd_fake(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse):
    torch._check(input.dim() == 3, lambda: f"rnnfused: input must be 3-D, got {input.dim()}-D")
    T, B, _ = input.shape
    H = w_hh.shape[0]
    return input.new_empty((T, B, H)), input.new_empty((B, H))


@torch.library.register_fake("rnnfused::rnn_bwd")
def _rnn_bwd_fake(grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths, relu, reverse, output_mask):
    T, B, I = input.shape
    H = w_hh.shape[0]

    def maybe(wanted, shape):
        return input.new_empty(shape if wanted else (0,))

    return (
        maybe(output_mask[0], (T, B, I)),
        input.new_empty((B, H)),
        maybe(output_mask[1], (H, I)),
        maybe(output_mask[2], (H, H)),
        maybe(output_mask[3], (H,)),
    )


def _setup_context(ctx, inputs, output):
    input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse = inputs
    out, _ = output
    ctx.relu = relu
    ctx.reverse = reverse
    # With lengths (a PackedSequence, padded by module.py), keep only the active steps of input and
    # output: ragged batches pad to several times their data, and nn.RNN keeps packed data only.
    # Inactive steps contribute nothing to any gradient (dz is 0 there), so zeros restore them
    # exactly. Not while compiling: the packed size depends on the lengths' values.
    ctx.compact = lengths is not None and not torch.compiler.is_compiling()
    if ctx.compact:
        active = _active(lengths, input.shape[0])
        ctx.shapes = (input.shape, out.shape)
        ctx.save_for_backward(_compact_input(input, lengths, active), h0, w_ih, w_hh, out[active], lengths)
    else:
        ctx.save_for_backward(input, h0, w_ih, w_hh, out, lengths)


def _compact_input(input, lengths, active):
    """input[active], shared by the ops that read the same input with the same lengths (the two
    directions of a bidirectional layer), so it is kept once. Cached on the input tensor itself,
    so it lives no longer than that tensor, and keyed on its version, so an in-place change
    invalidates it."""
    cached = getattr(input, "_rnnfused_compact", None)
    if cached is not None and cached[0] is lengths and cached[1] == input._version:
        return cached[2]
    compact = input[active]
    input._rnnfused_compact = (lengths, input._version, compact)
    return compact


def _active(lengths, T):
    """(T, B) bool: item b is active at step t."""
    return torch.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


def _saved(ctx):
    """(input, h0, w_ih, w_hh, output, lengths) as the forward saw them."""
    if not ctx.compact:
        return ctx.saved_tensors
    input_act, h0, w_ih, w_hh, out_act, lengths = ctx.saved_tensors
    shape_in, shape_out = ctx.shapes
    active = _active(lengths, shape_in[0])
    input = input_act.new_zeros(shape_in).index_put_((active,), input_act)
    out = out_act.new_zeros(shape_out).index_put_((active,), out_act)
    return input, h0, w_ih, w_hh, out, lengths


def _backward(ctx, grad_output, grad_hn):
    input, h0, w_ih, w_hh, out, lengths = _saved(ctx)
    need = ctx.needs_input_grad  # input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse
    if not any(need[:6]):
        return (None,) * 9
    mask = [need[0], need[2], need[3], need[4] or need[5]]
    d_in, d_h0, d_wih, d_whh, d_b = rnn_bwd(
        grad_output, grad_hn, input, h0, w_ih, w_hh, out, lengths, ctx.relu, ctx.reverse, mask
    )
    # b_ih and b_hh get the same gradient; two tensors, so their .grad never alias.
    d_b_ih = d_b if need[4] else None
    d_b_hh = (d_b.clone() if need[4] else d_b) if need[5] else None
    return (
        d_in if need[0] else None,
        d_h0 if need[1] else None,
        d_wih if need[2] else None,
        d_whh if need[3] else None,
        d_b_ih,
        d_b_hh,
        None,
        None,
        None,
    )


torch.library.register_autograd("rnnfused::rnn_fwd", _backward, setup_context=_setup_context)
