"""torch.func over the fused ops (vmap, grad, vjp, jacrev, jacfwd, functional_call; gradcheck's
batched gradients).

The ops' autograd is C++ (csrc/host/autograd.h), which torch.func refuses ("cannot use C++
torch::autograd::Function with functorch transforms") and which left the ops without batching
rules. Two pieces, here:

1. A vmap rule for every op (``torch.library.register_vmap``). Where the semantics allow it, the
   vmapped dimension is folded into the op's own batch dimension: one call over N·B rows (sample
   n's rows are n·B .. n·B + B - 1), then the results split again. That needs the weights
   unbatched, a padded (not packed) input, and, for a backward op, no weight gradient asked for
   (the op sums the weight gradients over its batch, so N samples' gradients cannot be told apart
   in one call). Otherwise the rule loops over the N samples, one op call each. The ops that
   draw dropout noise follow vmap's ``randomness``: "error" raises as torch's random ops do,
   "different" draws independent noise per sample, "same" replays the generator's state for
   each sample.
2. ``torch.autograd.Function`` twins of the differentiable ops (``rnn``, ``rnn_cell``, ``lstm``,
   ``lstm_cell``), which the modules call instead of the op while a torch.func transform is
   active (``torch._C._are_functorch_transforms_active()``: a check of ~0.1 µs; outside
   transforms nothing changes). Forward: the op's training variant (``*_train``: the outputs and
   what backward needs, returned as outputs marked non-differentiable so that vmap's generated
   rule splits them too). Backward: a second Function whose forward is the fused backward op and
   whose own backward (second derivatives) differentiates the reference (rnnfused/reference.py)
   with torch.func.vjp, as the C++ double backward differentiates its composite. Forward-mode
   (jvp, jacfwd) runs torch.func.jvp over the reference.
"""
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _C  # noqa: F401  (registers torch.ops.rnnfused.*)
from . import reference as _ref

__all__ = ["transforms_active", "rnn", "rnn_cell", "lstm", "lstm_cell"]

transforms_active: Callable[[], bool] = torch._C._are_functorch_transforms_active

_ops = torch.ops.rnnfused

# ------------------------------------------------------------------------------------------------
# 1. vmap rules
#
# Each op's arguments and results, for folding: a pair (d, r) is a tensor (or a list of tensors)
# of r dimensions whose dimension d is the batch (_SEQ: time-major sequences and the states
# (L·D, B, H); _ROWS: a cell's rows and a layer's state; _LEN: lengths); "w" a weight (or a list
# of weights): folding needs it unbatched, and a result "w" is a weight gradient (empty where not
# asked for); "packed" the batch_sizes (folding needs it None); None anything else (not a tensor).


@dataclass(frozen=True)
class _Layout:
    args: Tuple[Any, ...]
    results: Tuple[Any, ...]
    # The indices of (dropout, train, num_layers) for the ops that draw noise.
    noise: Optional[Tuple[int, int, int]] = None
    # The index of the output mask and the first of its flags that asks for a weight gradient.
    mask: Optional[Tuple[int, int]] = None


_SEQ, _ROWS, _LEN, _W = (1, 3), (0, 2), (0, 1), "w"
_S, _R, _N = _SEQ, _ROWS, None
_LAYOUTS = {
    "rnn": _Layout((_S, _S, _W, "packed") + (_N,) * 6, (_S, _S), noise=(8, 9, 5)),
    "rnn_train": _Layout((_S, _S, _W, "packed") + (_N,) * 6, (_S, _S, _S), noise=(8, 9, 5)),
    "rnn_backward": _Layout((_S, _S, _S, _S, _W, "packed", _S, _S) + (_N,) * 7, (_S, _S, _W), mask=(14, 2)),
    "rnn_layer": _Layout((_S, _R, _W, _W, _W, _W, _LEN, _N, _N), (_S, _R)),
    "rnn_layer_backward": _Layout((_S, _R, _S, _R, _W, _W, _S, _LEN, _N, _N, _N), (_S, _R, _W, _W, _W),
                                  mask=(10, 1)),
    "rnn_cell": _Layout((_R, _R, _W, _W, _W, _W, _N), (_R,)),
    "rnn_cell_backward": _Layout((_R, _R, _R, _W, _W, _R, _N, _N), (_R, _R, _W, _W, _W), mask=(7, 2)),
    "lstm": _Layout((_S, _S, _W, "packed") + (_N,) * 5, (_S, _S, _S), noise=(7, 8, 5)),
    "lstm_train": _Layout((_S, _S, _W, "packed") + (_N,) * 5, (_S, _S, _S, _S), noise=(7, 8, 5)),
    "lstm_backward": _Layout((_S, _S, _S, _S, _S, _W, "packed", _S, _S) + (_N,) * 6, (_S, _S, _S, _W),
                             mask=(14, 3)),
    "lstm_layer": _Layout((_S, _R, _W, _W, _W, _W, _W, _LEN, _N), (_S, _R, _R)),
    "lstm_layer_backward": _Layout((_S, _R, _R, _S, _R, _W, _W, _W, _W, _W, _LEN, _N, _N),
                                   (_S, _R, _R, _W, _W, _W, _W), mask=(12, 1)),
    "lstm_cell": _Layout((_R, _R, _W, _W, _W, _W), (_R, _R)),
    "lstm_cell_backward": _Layout((_R, _R, _R, _R, _W, _W, _W, _W, _N), (_R, _R, _R, _W, _W, _W), mask=(8, 1)),
}

_RANDOMNESS_ERROR = (
    "vmap: called random operation while in randomness error mode. Please either use the 'same' or "
    "'different' randomness flags on vmap or perform the randomness operation out of vmap"
)


def _is_batched(dim: Any) -> bool:
    if isinstance(dim, (list, tuple)):
        return any(d is not None for d in dim)
    return dim is not None


def _empty_grad(t: Tensor) -> bool:
    """An op's result for a gradient that was not asked for: an empty (0,) tensor."""
    return t.dim() == 1 and t.shape[0] == 0


def _each(a: Sequence[Any], d: Any) -> List[Any]:
    """A list argument's per-tensor vmapped dimensions (vmap gives one for the list, or a list)."""
    return list(d) if isinstance(d, (list, tuple)) else [d] * len(a)


def _rank_is(a: Any, d: Any, rank: int) -> bool:
    """Whether a (a tensor or a list of them, vmapped at d) has `rank` dimensions per sample."""
    if a is None:
        return True
    if isinstance(a, (list, tuple)):
        return all(_rank_is(t, dt, rank) for t, dt in zip(a, _each(a, d)))
    return a.dim() - (d is not None) == rank


def _can_fold(layout: _Layout, args: Sequence[Any], in_dims: Sequence[Any]) -> bool:
    for kind, a, d in zip(layout.args, args, in_dims):
        if kind == _W and _is_batched(d):
            return False
        if kind == "packed" and a is not None:
            return False
        # A sample of another shape than the op takes: the loop calls the op, which says so.
        if isinstance(kind, tuple) and not _rank_is(a, d, kind[1]):
            return False
    if layout.mask is not None:
        at, first = layout.mask
        if any(args[at][first:]):
            return False
    return True


def _fold_arg(a: Any, d: Any, at: int, n: int) -> Any:
    """An argument whose dimension `at` is the batch, with the vmapped dimension d (None:
    unbatched, then repeated n times) folded in front of it."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return [_fold_arg(t, dt, at, n) for t, dt in zip(a, _each(a, d))]
    if d is None:
        a = a.unsqueeze(at).expand(*a.shape[:at], n, *a.shape[at:])
    else:
        a = a.movedim(d, at)
    return a.flatten(at, at + 1)


def _unfold_result(r: Any, at: Any, n: int) -> Tuple[Any, Any]:
    if isinstance(r, (list, tuple)):
        parts = [_unfold_result(t, at, n) for t in r]
        return [p[0] for p in parts], [p[1] for p in parts]
    if at == _W or _empty_grad(r):
        return r, None
    return r.unflatten(at[0], (n, r.shape[at[0]] // n)), at[0]


def _select(a: Any, d: Any, i: int) -> Any:
    if isinstance(a, (list, tuple)):
        return [_select(t, dt, i) for t, dt in zip(a, _each(a, d))]
    return a if d is None or a is None else a.select(d, i)


def _stack(rs: List[Any]) -> Tuple[Any, Any]:
    first = rs[0]
    if isinstance(first, (list, tuple)):
        parts = [_stack([r[j] for r in rs]) for j in range(len(first))]
        return [p[0] for p in parts], [p[1] for p in parts]
    if _empty_grad(first):
        return first, None
    return torch.stack(rs), 0


class _ReplayRng:
    """Each sample draws the same noise ("same" randomness): the generators' state restored before
    each call, left as after one call."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.index = device.index
        if self.cuda and self.index is None:
            self.index = torch.cuda.current_device()
        self.state = self._get()

    def _get(self) -> Tensor:
        return torch.cuda.get_rng_state(self.index) if self.cuda else torch.get_rng_state()

    def replay(self) -> None:
        if self.cuda:
            torch.cuda.set_rng_state(self.state, self.index)
        else:
            torch.set_rng_state(self.state)


def _vmap_rule(name: str) -> Callable:
    layout = _LAYOUTS[name]
    op = getattr(_ops, name).default

    def rule(info, in_dims, *args):
        n = info.batch_size
        replay = None
        if layout.noise is not None:
            p_at, train_at, layers_at = layout.noise
            if args[p_at] > 0 and args[train_at] and args[layers_at] > 1:
                if info.randomness == "error":
                    raise RuntimeError(_RANDOMNESS_ERROR)
                if info.randomness == "same":
                    replay = _ReplayRng(args[0].device)
        if replay is None and _can_fold(layout, args, in_dims):
            folded = [_fold_arg(a, d, kind[0], n) if isinstance(kind, tuple) else a
                      for kind, a, d in zip(layout.args, args, in_dims)]
            out = op(*folded)
            out = out if isinstance(out, tuple) else (out,)
            parts = [_unfold_result(r, at, n) for r, at in zip(out, layout.results)]
        else:
            outs = []
            for i in range(n):
                if replay is not None:
                    replay.replay()
                r = op(*[_select(a, d, i) for a, d in zip(args, in_dims)])
                outs.append(r if isinstance(r, tuple) else (r,))
            parts = [_stack([o[j] for o in outs]) for j in range(len(outs[0]))]
        results = tuple(p[0] for p in parts)
        dims = tuple(p[1] for p in parts)
        if len(layout.results) == 1:
            return results[0], dims[0]
        return results, dims

    return rule


for _name in _LAYOUTS:
    torch.library.register_vmap(f"rnnfused::{_name}", _vmap_rule(_name))


# ------------------------------------------------------------------------------------------------
# 2. autograd.Function twins, for torch.func's grad / vjp / jvp


@dataclass(frozen=True)
class _Family:
    """One differentiable op as the Functions see it: its differentiable inputs as a flat tuple of
    tensors (None for an absent bias), its other arguments (cfg, hashable), and three functions:
    forward(xs, cfg) -> (outputs, saved); backward(grads, xs, outputs, saved, cfg, wanted) -> one
    gradient per xs (None where not wanted); reference(xs, cfg, saved) -> outputs (differentiable
    ATen ops: the second derivatives and forward mode)."""

    name: str
    n_outputs: int
    forward: Callable
    backward: Callable
    reference: Callable


def _need(g: Tensor, wanted: bool) -> Optional[Tensor]:
    return g if wanted and not _empty_grad(g) else None


def _noise(saved: Sequence[Tensor], num_layers: int, dropout: float, train: bool) -> Optional[List[Tensor]]:
    # rnn_train / lstm_train save each layer's output but the last, then the noise (when drawn).
    if dropout > 0 and train and num_layers > 1:
        return list(saved[num_layers - 1:2 * (num_layers - 1)])
    return None


def _module_family(name: str, n_states: int, relu_arg: bool) -> _Family:
    train_op = getattr(_ops, f"{name}_train").default
    backward_op = getattr(_ops, f"{name}_backward").default
    ref = getattr(_ref, f"{name}_ref")

    def op_args(cfg):
        batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train = cfg
        return (batch_sizes, has_biases, num_layers, bidirectional) + ((relu,) if relu_arg else ()) + (dropout, train)

    def states_arg(states):
        return states[0] if n_states == 1 else list(states)

    def forward(xs, cfg):
        states, params = xs[1:1 + n_states], xs[1 + n_states:]
        r = train_op(xs[0], states_arg(states), list(params), *op_args(cfg))
        return r[:-1], r[-1]

    def backward(grads, xs, outputs, saved, cfg, wanted):
        states, params = xs[1:1 + n_states], xs[1 + n_states:]
        g = backward_op(*grads, xs[0], states_arg(states), list(params), cfg[0], outputs[0], list(saved),
                        *op_args(cfg)[1:], list(wanted))
        flat = list(g[:-1]) + list(g[-1])
        return [_need(t, w) for t, w in zip(flat, wanted)]

    def reference(xs, cfg, saved):
        states, params = xs[1:1 + n_states], xs[1 + n_states:]
        noise = _noise(saved, cfg[2], cfg[5], cfg[6])
        return ref(xs[0], states_arg(states), list(params), *op_args(cfg), dropout_noise=noise)

    return _Family(name, 1 + n_states, forward, backward, reference)


def _cell_family(name: str, n_states: int, relu_arg: bool) -> _Family:
    op = getattr(_ops, name).default
    backward_op = getattr(_ops, f"{name}_backward").default
    ref = getattr(_ref, f"{name}_ref")

    def states_arg(states):
        return states[0] if n_states == 1 else list(states)

    def forward(xs, cfg):
        states, (w_ih, w_hh, b_ih, b_hh) = xs[:n_states + 1], xs[n_states + 1:]
        r = op(states[0], states_arg(states[1:]), w_ih, w_hh, b_ih, b_hh, *cfg)
        return (r if isinstance(r, tuple) else (r,)), ()

    def backward(grads, xs, outputs, saved, cfg, wanted):
        x, states, (w_ih, w_hh, b_ih, b_hh) = xs[0], xs[1:n_states + 1], xs[n_states + 1:]
        wb = wanted[-2] or wanted[-1]
        if relu_arg:  # rnn_cell_backward: the output's gradient, the output; mask over every input
            g = backward_op(grads[0], x, states[0], w_ih, w_hh, outputs[0], *cfg,
                            [wanted[0], wanted[1], wanted[2], wanted[3], wb])
        else:  # lstm_cell_backward: recomputes; mask over (input, w_ih, w_hh, bias)
            g = backward_op(*grads, x, list(states), w_ih, w_hh, b_ih, b_hh,
                            [wanted[0], wanted[n_states + 1], wanted[n_states + 2], wb])
        flat = list(g) + [g[-1]]  # one bias gradient, for b_ih and b_hh alike
        return [_need(t, w) for t, w in zip(flat, wanted)]

    def reference(xs, cfg, saved):
        x, states, w = xs[0], xs[1:n_states + 1], xs[n_states + 1:]
        r = ref(x, states_arg(states), *w, *cfg)
        return r if isinstance(r, tuple) else (r,)

    return _Family(name, n_states, forward, backward, reference)


_RNN = _module_family("rnn", 1, True)
_LSTM = _module_family("lstm", 2, False)
_RNN_CELL = _cell_family("rnn_cell", 1, True)
_LSTM_CELL = _cell_family("lstm_cell", 2, False)


def _present(xs: Sequence[Optional[Tensor]]) -> List[int]:
    return [i for i, t in enumerate(xs) if t is not None]


def _ref_vjp(fam: _Family, cfg, saved, xs: Sequence[Optional[Tensor]], grads: Sequence[Optional[Tensor]]):
    """The reference's vector-Jacobian product at xs: one gradient per present input (a function
    of xs and grads in differentiable ops)."""
    at = _present(xs)

    def f(*present):
        full = list(xs)
        for i, t in zip(at, present):
            full[i] = t
        return tuple(fam.reference(full, cfg, saved))

    outs, vjp_fn = torch.func.vjp(f, *[xs[i] for i in at])
    cts = tuple(torch.zeros_like(o) if g is None else g for o, g in zip(outs, grads))
    return at, vjp_fn(cts)


@dataclass(frozen=True)
class _Call:
    """A Function's arguments that are not tensors, as one object: torch.func's generated vmap
    rule treats a tuple argument as a tree of inputs (each needing a gradient slot), an object as
    one leaf."""

    fam: _Family
    cfg: Tuple[Any, ...]
    wanted: Tuple[bool, ...] = ()
    n_grads: int = 0
    n_xs: int = 0


class _Fused(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(call: _Call, *xs):
        outputs, saved = call.fam.forward(xs, call.cfg)
        return tuple(outputs) + tuple(saved)

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, *xs = inputs
        fam = call.fam
        ctx.fam, ctx.cfg, ctx.n_xs = fam, call.cfg, len(xs)
        saved = output[fam.n_outputs:]
        ctx.mark_non_differentiable(*saved)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*xs, *output)
        ctx.save_for_forward(*xs, *saved)

    @staticmethod
    def backward(ctx, *grads):
        fam = ctx.fam
        s = ctx.saved_tensors
        xs, outputs = s[:ctx.n_xs], s[ctx.n_xs:ctx.n_xs + fam.n_outputs]
        saved = s[ctx.n_xs + fam.n_outputs:]
        wanted = tuple(bool(w) and x is not None for w, x in zip(ctx.needs_input_grad[1:], xs))
        grads = grads[:fam.n_outputs]
        if not any(wanted) or all(g is None for g in grads):
            return (None,) * (1 + ctx.n_xs)
        grads = tuple(torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads))
        call = _Call(fam, ctx.cfg, wanted, len(grads), len(xs))
        g = _FusedBackward.apply(call, *grads, *xs, *outputs, *saved)
        return (None,) + tuple(t if w else None for t, w in zip(g, wanted))

    @staticmethod
    def jvp(ctx, call_t, *tangents):
        fam = ctx.fam
        s = ctx.saved_tensors
        xs, saved = s[:ctx.n_xs], s[ctx.n_xs:]
        at = [i for i in _present(xs) if tangents[i] is not None]

        def f(*moving):
            full = list(xs)
            for i, t in zip(at, moving):
                full[i] = t
            return tuple(fam.reference(full, ctx.cfg, saved))

        _, out_t = torch.func.jvp(f, tuple(xs[i] for i in at), tuple(tangents[i] for i in at))
        return tuple(out_t) + (None,) * len(saved)


class _FusedBackward(torch.autograd.Function):
    """The fused backward op as a differentiable function of the output gradients and the inputs:
    its own backward (second derivatives) through the reference."""

    generate_vmap_rule = True

    @staticmethod
    def forward(call: _Call, *tensors):
        fam, cfg, wanted, n_grads, n_xs = call.fam, call.cfg, call.wanted, call.n_grads, call.n_xs
        grads = tensors[:n_grads]
        xs = tensors[n_grads:n_grads + n_xs]
        outputs = tensors[n_grads + n_xs:n_grads + n_xs + fam.n_outputs]
        saved = tensors[n_grads + n_xs + fam.n_outputs:]
        g = fam.backward(grads, xs, outputs, saved, cfg, wanted)
        # A Function's results are tensors: an empty one where no gradient was asked for.
        empty = grads[0].new_empty(0)
        return tuple(empty if t is None else t for t in g)

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, *tensors = inputs
        ctx.fam, ctx.cfg, ctx.wanted, ctx.n_grads, ctx.n_xs = call.fam, call.cfg, call.wanted, call.n_grads, call.n_xs
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    @staticmethod
    def _first(ctx):
        """(the reference's first derivatives as a function of the present inputs and the output
        gradients, those arguments, the present inputs' indices)."""
        fam = ctx.fam
        s = ctx.saved_tensors
        grads, xs = s[:ctx.n_grads], s[ctx.n_grads:ctx.n_grads + ctx.n_xs]
        saved = s[ctx.n_grads + ctx.n_xs + fam.n_outputs:]
        at = _present(xs)

        def first(*moving):
            ps, gs = moving[:len(at)], moving[len(at):]
            full = list(xs)
            for i, t in zip(at, ps):
                full[i] = t
            _, g = _ref_vjp(fam, ctx.cfg, saved, full, gs)
            return tuple(g)

        return first, [xs[i] for i in at] + list(grads), at

    @staticmethod
    def backward(ctx, *gg):
        first, args, at = _FusedBackward._first(ctx)
        g1, vjp_fn = torch.func.vjp(first, *args)
        cts = tuple(torch.zeros_like(t) if gg[i] is None or not ctx.wanted[i] else gg[i]
                    for t, i in zip(g1, at))
        d = vjp_fn(cts)
        d_xs, d_grads = d[:len(at)], d[len(at):]
        full_xs: List[Optional[Tensor]] = [None] * ctx.n_xs
        for i, t in zip(at, d_xs):
            full_xs[i] = t
        n_rest = len(ctx.saved_tensors) - ctx.n_grads - ctx.n_xs
        return (None,) + tuple(d_grads) + tuple(full_xs) + (None,) * n_rest

    @staticmethod
    def jvp(ctx, *tangents):
        first, args, at = _FusedBackward._first(ctx)
        t = tangents[1:]
        t_grads, t_xs = t[:ctx.n_grads], t[ctx.n_grads:ctx.n_grads + ctx.n_xs]
        moving = [t_xs[i] for i in at] + list(t_grads)
        _, out_t = torch.func.jvp(first, tuple(args),
                                  tuple(torch.zeros_like(a) if m is None else m for a, m in zip(args, moving)))
        full: List[Optional[Tensor]] = [None] * ctx.n_xs
        for i, o in zip(at, out_t):
            full[i] = o
        empty = args[0].new_zeros(0)  # as forward: an empty result where no gradient was asked for
        return tuple(o if o is not None and ctx.wanted[i] else empty for i, o in enumerate(full))


# ------------------------------------------------------------------------------------------------
# The ops as the modules call them under a transform: the arguments of rnnfused.ops'.


def rnn(input: Tensor, hx: Tensor, params: Sequence[Tensor], batch_sizes: Optional[Tensor], has_biases: bool,
        num_layers: int, bidirectional: bool, relu: bool, dropout: float, train: bool) -> Tuple[Tensor, Tensor]:
    cfg = (batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train)
    r = _Fused.apply(_Call(_RNN, cfg), input, hx, *params)
    return r[0], r[1]


def lstm(input: Tensor, hx: Sequence[Tensor], params: Sequence[Tensor], batch_sizes: Optional[Tensor],
         has_biases: bool, num_layers: int, bidirectional: bool, dropout: float,
         train: bool) -> Tuple[Tensor, Tensor, Tensor]:
    cfg = (batch_sizes, has_biases, num_layers, bidirectional, None, dropout, train)
    r = _Fused.apply(_Call(_LSTM, cfg), input, hx[0], hx[1], *params)
    return r[0], r[1], r[2]


def rnn_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
             b_hh: Optional[Tensor], relu: bool) -> Tensor:
    return _Fused.apply(_Call(_RNN_CELL, (relu,)), input, hx, w_ih, w_hh, b_ih, b_hh)[0]


def lstm_cell(input: Tensor, hx: Sequence[Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
              b_hh: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    r = _Fused.apply(_Call(_LSTM_CELL, ()), input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)
    return r[0], r[1]
