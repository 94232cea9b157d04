"""The one table of performance targets, and the check of a finished row against it."""
import dataclasses

import torch

# Per-step latency floor of a sequential step on a GPU: one barrier + one L2 round trip (about
# 1-2 us on an H100). The floor of a row is max(compute floor, this) per sequential pass.
LATENCY_FLOOR_US = 1.0
SMALL_STEP_FLOP = 34e6  # 2*B*H^2 at or below this: the GPU forward target is absolute (2 us/step)


@dataclasses.dataclass(frozen=True)
class Target:
    device: str                   # "cpu" | "cuda"
    mode: str                     # "fwd" | "fwdbwd"
    where: object                 # (B, H, T) for one shape, or a predicate on a Config
    metric: str                   # a row key: "x_ref" (speed-up), "fused_us" (us/step), "x_floor"
    op: str                       # ">=" | "<="
    bound: float
    label: str

    def applies(self, cfg):
        if isinstance(self.where, tuple):
            return (cfg.B, cfg.H, cfg.T) == self.where
        return self.where(cfg)


def _small(c):
    return 2 * c.B * c.H * c.H <= SMALL_STEP_FLOP


def _cpu_targets(nn_name, rows):
    """CPU targets vs nn's module forward and forward+backward, and vs ONNX Runtime forward, at
    1 and 2 threads, on AVX2 and AVX-512 processors alike. rows: ((B, H, T), fwd, fwdbwd, ort)."""
    return [Target("cpu", mode, shape, metric, ">=", bound, f">={bound:g}x {who}")
            for shape, fwd, fwdbwd, ort in rows
            for mode, metric, bound, who in (("fwd", "x_ref", fwd, nn_name),
                                             ("fwdbwd", "x_ref", fwdbwd, nn_name),
                                             ("fwd", "x_ort", ort, "ORT"))]


# The one table of targets, per cell (--cell). Scope, all rows: one layer, one direction, I = H,
# no proj_size. CPU: float32 (the numbers hold at 1 and 2 threads; the header shows the thread
# count). GPU: T = 1000, float32 with TF32 off, or bfloat16. "x_ref" is nn's time / rnnfused's
# (cuDNN on the GPU, nn's own CPU path on the CPU: native for nn.RNN, oneDNN for nn.LSTM).
TARGETS = {
    "rnn": [
        # CPU (issue 11): vs nn.RNN, vs ONNX Runtime.
        *_cpu_targets("nn.RNN", (((1, 32, 1000), 15, 30, 2.5), ((8, 64, 1000), 6, 8, 5),
                                 ((1, 256, 1000), 3.5, 6, 3), ((64, 256, 300), 1.3, 1.3, 2.5),
                                 ((256, 1024, 20), 1.05, 1.05, 1.5))),
        Target("cuda", "fwd",    _small,                      "fused_us", "<=", 2.0, "<=2us/step"),
        Target("cuda", "fwd",    lambda c: not _small(c),     "x_floor",  "<=", 1.5, "<=1.5x floor"),
        Target("cuda", "fwd",    lambda c: True,              "x_ref",    ">=", 1.0, ">=1x cuDNN"),
        Target("cuda", "fwdbwd", lambda c: c.B <= 64,         "x_ref",    ">=", 1.5, ">=1.5x cuDNN"),
    ],
    # CPU (issue 17): vs nn.LSTM (oneDNN), vs ONNX Runtime's LSTM; "never slower" is >= 1x. The
    # GPU rows are pending a GPU (none set yet).
    "lstm": _cpu_targets("nn.LSTM", (((1, 64, 1000), 2.0, 2.0, 1.3), ((8, 128, 500), 1.1, 1.1, 1.1),
                                     ((1, 256, 500), 1.5, 1.5, 1.4), ((64, 256, 200), 1.0, 1.0, 1.0),
                                     ((256, 512, 20), 1.0, 1.0, 1.0))),
}


def cpu_target_shapes(cell="rnn"):
    return list(dict.fromkeys(t.where for t in TARGETS[cell] if t.device == "cpu"))


def in_target_scope(cfg, device, tf32):
    if cfg.layers != 1 or cfg.bidir or cfg.I != cfg.H or cfg.proj:
        return False
    if device == "cpu":
        return cfg.dtype == torch.float32
    return cfg.T == 1000 and (cfg.dtype == torch.bfloat16 or (cfg.dtype == torch.float32 and not tf32))


def check_targets(row, c, mode, args):
    if not in_target_scope(c, args.device, args.tf32):
        return
    results = []
    for t in TARGETS[getattr(args, "cell", "rnn")]:
        if t.device == args.device and t.mode == mode and t.applies(c):
            if t.metric not in ("x_ref", "x_floor", "fused_us") and f"{t.metric[2:]}_ms" not in row:
                continue  # a contender that did not run here (e.g. ONNX Runtime not installed)
            v = row.get(t.metric)
            met = v is not None and row["acc"] == "ok" and (v >= t.bound if t.op == ">=" else v <= t.bound)
            results.append((t.label, met))
    if results:
        row["target"] = ", ".join(label for label, _ in results)
        missed = [label for label, m in results if not m]
        row["met"] = "met" if not missed else "MISSED" if len(results) == 1 else "MISSED " + ", ".join(missed)
