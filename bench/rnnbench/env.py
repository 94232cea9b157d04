"""The environment block printed with every table: device, processor, threads, load, versions."""
import contextlib
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time

import torch

from .cells import onednn_rule
from .config import DTYPE_NAME



@contextlib.contextmanager
def tf32_pinned(on):
    """TF32 pinned the same for both sides while the benchmark runs (nn.RNN's cuDNN path would use
    it by default), restored after. cuDNN's flag goes through cudnn.flags(), the sanctioned way:
    once torch's own test utilities are imported (the tests run the scripts in-process), a plain
    assignment to torch.backends.cudnn.allow_tf32 raises."""
    b, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    prev = matmul.allow_tf32
    matmul.allow_tf32 = on
    try:
        with b.flags(enabled=b.enabled, benchmark=b.benchmark, deterministic=b.deterministic, allow_tf32=on):
            yield
    finally:
        matmul.allow_tf32 = prev

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(fused_mod=None):
    """The instruction set rnnfused's CPU kernels run with here, as the kernels themselves report
    it (rnnfused.cpu_isa(): RNNFUSED_CPU_ISA if set, else the best the processor has), with the
    processor's vector extensions beside it."""
    flags = cpu_flags()
    have = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                                "amx_tile") if f in flags) or "none of avx2/avx512"
    if fused_mod is None or not hasattr(fused_mod, "cpu_isa"):
        return f"(no rnnfused kernels in this run); processor has: {have}"
    try:
        isa = fused_mod.cpu_isa()
    except RuntimeError as e:  # RNNFUSED_CPU_ISA names one this processor lacks
        isa = f"error: {e}"
    forced = os.environ.get("RNNFUSED_CPU_ISA", "")
    how = " (RNNFUSED_CPU_ISA)" if forced and forced != "auto" else ""
    return f"{isa}{how}; processor has: {have}"


def git_rev(path):
    try:
        rev = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return rev or "no commit"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class OtherLoad:
    """CPU time other processes used while we ran, in cores: /proc/stat busy time minus our own.
    Above ~0.2 cores on a small machine, CPU timings (and thread-parallel nn.RNN most) are unreliable."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait
        t = os.times()
        return busy, t.user + t.system, time.perf_counter()

    def cores(self):
        end = self._sample()
        if self.start is None or end is None:
            return None
        (b0, o0, w0), (b1, o1, w1) = self.start, end
        return max(0.0, ((b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9))


def load_average():
    try:
        return "%.2f %.2f %.2f (1/5/15 min) on %d cores" % (*os.getloadavg(), os.cpu_count())
    except OSError:
        return "unknown"


def env_info(args, setup):
    dev = args.device
    cell = setup.cell
    info = {
        "cell": f"{cell.name} (rnnfused.{cell.fused_name} vs torch.{cell.torch_name})",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({cpu_model()})",
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "tf32": f"matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}",
        "python": platform.python_version(),
        "load": load_average(),
        "fused": (f"{cell.torch_name} stand-in (--self-test)" if setup.fused_mod is None else
                  f"rnnfused {getattr(setup.fused_mod, '__version__', '?')} @ "
                  f"{git_rev(os.path.dirname(os.path.abspath(setup.fused_mod.__file__)))}"),
        "RNNFUSED_KERNEL": os.environ.get("RNNFUSED_KERNEL", "(unset: heuristic)"),
        "RNNFUSED_CPU_KERNEL": os.environ.get("RNNFUSED_CPU_KERNEL", "(unset: auto)"),
        "command": " ".join(shlex.quote(a) for a in ["python"] + sys.argv),
    }
    if cell.name == "rnn":
        info["nonlinearity"] = args.nonlinearity
    if dev == "cpu":
        if cell.onednn:
            info["native_path"] = (f"{cell.torch_name} on the CPU runs oneDNN where torch allows it: "
                                   f"{onednn_rule()}; per row: column '{cell.torch_name} path'")
        info["cpu_isa"] = cpu_isa(setup.fused_mod)
        from .ort import ORT_VERSION
        info["onnxruntime"] = ORT_VERSION or "not installed"
        if setup.cpu_rates:
            info["cpu_floor_rates"] = (f"{setup.cpu_rates[2]} {setup.cpu_rates[0] / 1e9:.1f} GFLOP/s, "
                                       f"L2 read {setup.cpu_rates[1] / 1e9:.1f} GB/s "
                                       f"({torch.get_num_threads()} threads)")
    if dev == "cuda":
        info["gemm_tflops"] = {DTYPE_NAME[d]: round(r / 1e12, 1) for d, r in setup.gemm_rate.items()}
    return info


def header_lines(info):
    keys = ["date", "cell", "device", "cpu", "cpu_isa", "threads", "load", "load_end", "other_load", "torch", "cuda", "cudnn",
            "tf32", "python", "fused", "RNNFUSED_KERNEL", "RNNFUSED_CPU_KERNEL", "onnxruntime", "cpu_floor_rates",
            "nonlinearity", "native_path", "gemm_tflops", "command"]
    return [f"{k}: {info[k]}" for k in keys if k in info]


