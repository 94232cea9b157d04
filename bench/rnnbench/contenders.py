"""What is timed. A small registry of contenders: each row builds every contender that applies to
the device from one seeded torch module of the cell (--cell: nn.RNN, nn.LSTM; the reference),
and times them side by side.

To add a contender, register a ContenderSpec (see bench/README.md, "Adding a contender"):

    register(ContenderSpec(
        key="ort", label="onnxruntime", devices=("cpu",), modes=("fwd",),
        build=lambda b: OrtModule(b.ref, ...),    # any callable module(x, hx) -> (out, hx), nn's layouts
        available=lambda args: None if have_ort else "pip install onnxruntime"))

Its columns (`ort ms`, `ort us/step`, `x ort` = its time / FusedRNN's) follow by themselves.
Keys "fused" (the contender under test) and "ref" (the speed-up reference: nn.RNN / nn.LSTM) are
special.
"""
import contextlib
import dataclasses
from typing import Callable, Optional

import torch

from .cells import CELLS, Cell


@dataclasses.dataclass(frozen=True)
class Build:
    """What a contender's build function gets for one configuration."""
    ref: torch.nn.Module        # the seeded reference nn.RNN / nn.LSTM (weights every contender must use)
    cfg: object                 # the Config of the row
    kw: dict                    # its keyword arguments (num_layers, nonlinearity / proj_size, ..., device, dtype)
    setup: object               # the Setup (cell, fused class, rnnfused module, GEMM rates)


@dataclasses.dataclass(frozen=True)
class ContenderSpec:
    key: str                                    # row keys: {key}_ms, {key}_us, x_{key}
    label: object                               # column label: a str, or {device: str}
    build: Callable[[Build], torch.nn.Module]   # -> module(x, hx) -> (output, hx), the cell's nn layouts
    devices: tuple = ("cpu", "cuda")
    modes: tuple = ("fwd", "fwdbwd")            # the passes it can run (fwdbwd: needs autograd)
    ctx: Callable = contextlib.nullcontext      # entered around every call
    available: Callable = lambda args: None     # None, or why it cannot run here (then skipped)
    applies: Callable = lambda cfg: True        # False: not built or timed for this row (e.g. a dtype it lacks)


REGISTRY = []   # in column and timing order


def register(spec):
    if any(s.key == spec.key for s in REGISTRY):
        raise ValueError(f"contender key {spec.key!r} registered twice")
    REGISTRY.append(spec)
    return spec


@dataclasses.dataclass
class Contender:
    """One contender in a run: its spec, and the module built for the current row."""
    key: str                       # "fused", "ref" (the speed-up reference), "nocudnn"
    label: str                     # column label
    module: Optional[torch.nn.Module] = None
    ctx: Callable = contextlib.nullcontext
    params: list = dataclasses.field(default_factory=list)  # in the reference's parameter order
    spec: Optional[ContenderSpec] = None
    cell: Cell = CELLS["rnn"]     # how its module takes and returns the state

    def runs(self, mode):
        return mode in self.spec.modes and self.module is not None


def cudnn_disabled():
    """cudnn.flags(enabled=False) that keeps the other cuDNN flags (flags() would reset TF32 to on)."""
    b = torch.backends.cudnn
    return b.flags(enabled=False, benchmark=b.benchmark, deterministic=b.deterministic,
                   allow_tf32=b.allow_tf32)


def _build_fused(b):
    m = b.setup.fused_cls(b.cfg.I, b.cfg.H, **b.kw)
    m.load_state_dict(b.ref.state_dict())   # the drop-in contract under test
    return m


def _build_ref(b):
    return b.ref


register(ContenderSpec("fused", "fused", _build_fused))
register(ContenderSpec("ref", {"cpu": "native", "cuda": "cudnn"}, _build_ref))
register(ContenderSpec("nocudnn", "nocudnn", _build_ref, devices=("cuda",), ctx=cudnn_disabled))


def contender_specs(device, self_test, args=None, cell=None):
    """The contenders of a run, in registry order. With self_test, "fused" is a stand-in: the
    cell's torch module (nn.RNN, nn.LSTM). cell: the Cell (default nn.RNN's); it labels "ref"."""
    cell = cell or CELLS["rnn"]
    out = []
    for spec in REGISTRY:
        if device not in spec.devices:
            continue
        why = spec.available(args) if args is not None else None
        if why:
            print(f"contender {spec.key} skipped: {why}")
            continue
        label = spec.label.get(device, spec.key) if isinstance(spec.label, dict) else spec.label
        if spec.key == "ref":
            label = cell.ref_label[device]
        if spec.key == "fused" and self_test:
            label = "stand-in"
        out.append(Contender(spec.key, label, ctx=spec.ctx, spec=spec))
    return out


@dataclasses.dataclass
class Setup:
    fused_cls: type          # FusedRNN / FusedLSTM, or nn.RNN / nn.LSTM with --self-test
    fused_mod: object        # the rnnfused module; None with --self-test
    gemm_rate: dict          # GPU: dtype -> measured torch.mm flop/s
    cpu_rates: tuple = None  # CPU: (flop/s, L2 read bytes/s, what the flop rate is) (cpu_floor.py)
    cell: Cell = CELLS["rnn"]


@dataclasses.dataclass
class Inputs:
    x: torch.Tensor
    hx: tuple                # the state tensors: (h0,) or (h0, c0)
    gout: torch.Tensor
    ghx: tuple               # upstream gradients of the final state tensors


def make_inputs(c, n_sets, device, seed, cell=CELLS["rnn"]):
    g = torch.Generator().manual_seed(seed)
    D = 2 if c.bidir else 1
    sizes = (c.out_size, c.H)[:cell.states]   # h: proj_size or H; c (LSTM): H

    def rnd(*shape, grad=False):
        return torch.randn(*shape, generator=g).to(device, c.dtype).requires_grad_(grad)

    def one():   # drawn in this order: x, the states, the output's gradient, the states' gradients
        x = rnd(c.T, c.B, c.I, grad=True)
        hx = tuple(rnd(c.layers * D, c.B, n, grad=True) for n in sizes)
        gout = rnd(c.T, c.B, D * c.out_size)
        return Inputs(x, hx, gout, tuple(rnd(c.layers * D, c.B, n) for n in sizes))
    return [one() for _ in range(n_sets)]


def run_fwd(con, inp):
    """(output, *final state tensors) under no_grad."""
    with con.ctx(), torch.no_grad():
        return con.cell.flat(con.module(inp.x, con.cell.hx(inp.hx)))


def run_fwdbwd(con, inp):
    """(output, *final state tensors, *gradients w.r.t. x, the initial states and every parameter)."""
    with con.ctx():
        out, *states = con.cell.flat(con.module(inp.x, con.cell.hx(inp.hx)))
        grads = torch.autograd.grad((out, *states), (inp.x, *inp.hx, *con.params), (inp.gout, *inp.ghx))
    return (out, *states, *grads)


RUNNERS = {"fwd": run_fwd, "fwdbwd": run_fwdbwd}


def build_modules(c, contenders, device, nonlinearity, setup, seed):
    """Seeds, builds the reference (the cell's torch module), then every contender's module from it."""
    torch.manual_seed(seed)
    kw = dict(num_layers=c.layers, **setup.cell.module_kwargs(nonlinearity, c.proj), bidirectional=c.bidir,
              device=device, dtype=c.dtype)
    ref = setup.cell.torch_cls(c.I, c.H, **kw)
    names = [n for n, _ in ref.named_parameters()]
    b = Build(ref, c, kw, setup)
    for con in contenders:
        con.cell = setup.cell
        con.module = con.spec.build(b) if con.spec.applies(c) else None
        named = dict(con.module.named_parameters()) if isinstance(con.module, torch.nn.Module) else {}
        con.params = [named[n] for n in names if n in named]


from . import ort  # noqa: E402,F401  (registers the ONNX Runtime contender, CPU forward)
