"""Dtypes, error bounds, Config (the shape of one benchmark row) and the presets."""
import dataclasses
import itertools

import torch

from .targets import cpu_target_shapes

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAME = {v: k for k, v in DTYPES.items()}
# Error bound, relative to max(1, max|reference|) per tensor (output, h_n, each gradient).
ERR_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}
ERR_TOL_TF32 = 1e-2
MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}


@dataclasses.dataclass(frozen=True)
class Config:
    B: int
    H: int
    T: int
    I: int
    layers: int = 1
    bidir: bool = False
    dtype: torch.dtype = torch.float32
    proj: int = 0          # LSTM's proj_size (0: none)

    @property
    def out_size(self):
        """The size of h (and of each direction's output): proj_size where there is one, else H."""
        return self.proj or self.H

    def describe(self):
        return (f"B={self.B} H={self.H} I={self.I} T={self.T} L={self.layers} "
                + (f"P={self.proj} " if self.proj else "")
                + f"{'bi' if self.bidir else 'uni'} {DTYPE_NAME[self.dtype]}")


def cfg(B, H, T, I=None, **kw):
    return Config(B, H, T, H if I is None else I, **kw)


# The CPU quick preset's controlled sweeps per cell, (B, H, T) each, through the cell's targets so
# that no two target shapes form a sweep of their own. RNN: H at B=1, T=1000; B at H=64, T=1000;
# T at B=8, H=64. LSTM: H at B=1, T=500; T at B=1, H=64; B at H=128, T=500.
CPU_SWEEPS = {
    "rnn": ([(1, H, 1000) for H in (32, 64, 128, 256, 512)] + [(B, 64, 1000) for B in (1, 4, 8, 16, 64)]
            + [(8, 64, T) for T in (30, 100, 300, 1000, 3000)]),
    "lstm": ([(1, H, 500) for H in (32, 64, 128, 256, 512)] + [(1, 64, T) for T in (100, 200, 500, 1000, 2000)]
             + [(B, 128, 500) for B in (1, 4, 8, 16, 64)]),
}


def preset(device, full, cell="rnn"):
    f32, b16, f16, f64 = torch.float32, torch.bfloat16, torch.float16, torch.float64
    if device == "cpu":
        # The cell's five CPU target shapes, and its controlled sweeps of five points through them
        # (one of B, H, T varies; CPU_SWEEPS).
        targets = [cfg(B, H, T) for B, H, T in cpu_target_shapes(cell)]
        sweeps = [cfg(*shape) for shape in CPU_SWEEPS[cell]]
        quick = list(dict.fromkeys(targets + sweeps))
        if not full:
            return quick
        grid = [cfg(B, H, T) for B, H, T in itertools.product((1, 8, 64), (32, 128, 512), (100, 1000))]
        structure = [cfg(B, H, 300, I, layers=L, bidir=bi)
                     for B, H in ((8, 64), (64, 256)) for I in (H, H // 4)
                     for L, bi in ((2, False), (1, True), (2, True))]
        dtypes = [cfg(B, H, 300, dtype=dt) for B, H in ((1, 64), (64, 256)) for dt in (f64, b16)]
        return list(dict.fromkeys(quick + grid + structure + dtypes))
    # Two sweeps of five points crossing at B=16, H=1024: H at B=16, B at H=1024 (T = 1000).
    quick = [cfg(B, H, 1000, dtype=dt) for dt in (f32, b16)
             for B, H in dict.fromkeys([(16, H) for H in (128, 256, 512, 1024, 2048)]
                                       + [(B, 1024) for B in (1, 4, 16, 64, 256)])]
    if not full:
        return quick
    grid = [cfg(B, H, T, dtype=dt) for dt in (f32, b16, f16) for T in (100, 1000)
            for B in (1, 4, 16, 64, 256) for H in (64, 128, 256, 512, 1024, 2048)]
    structure = [cfg(B, H, 1000, I, layers=L, bidir=bi, dtype=dt) for dt in (f32, b16)
                 for B, H in ((16, 256), (64, 1024)) for I in (H, H // 4)
                 for L, bi in ((2, False), (1, True), (2, True))]
    return list(dict.fromkeys(quick + grid + structure))
