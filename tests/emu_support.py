"""Builds of the SIMT emulator for the emulated CUDA tests (docs/emulator.md).

Two kinds of build, both from the very kernel sources of csrc/cuda, compiled as host C++ with
RNNFUSED_EMULATE:

- extension(): the test-only Python extension `rnnfused_emu` (the host code, csrc/host/, with its
  ops in the namespace rnnfused_emu, where CPU tensors take the CUDA path; the CPU kernels; the
  emulated CUDA kernels; control ops in rnnfused_emu_ctl). Built with torch.utils.cpp_extension.load into
  build/emu-ext/ on first use by the tests and rebuilt when a source changes. `route_to_emulator`
  makes FusedRNN's CPU calls of rnnfused::<op> run rnnfused_emu::<op>.
- check_binary(variant): the standalone checker csrc/emu/check_main.cpp (no Python), plain or
  with AddressSanitizer + UBSan ("asan") or ThreadSanitizer ("tsan"), for the sanitizer runs and
  the mutation check (tools/emu_mutate.py). Built into build/emu-check/<variant>/.
"""
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"

EMU_FLAGS = ["-DRNNFUSED_EMULATE", "-fno-strict-aliasing", "-Wno-unknown-pragmas"]


def _torch_dir():
    return Path(torch.__file__).resolve().parent


def _sources_digest(paths, extra=""):
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p).encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def _kernel_tree(root=CSRC):
    """Every file an emulation build depends on: all of csrc/."""
    return [f for f in root.rglob("*") if f.is_file()]


def host_sources(root=CSRC):
    """The extension's C++ sources without the CUDA ones, as setup.py lists them."""
    return sorted(root.glob("*.cpp")) + sorted(root.glob("host/*.cpp")) + sorted(root.glob("cpu/*.cpp"))


# ------------------------------------------------------------------------------------------------
# The Python extension.

_ext = None


def extension():
    """The rnnfused_emu extension module (built on first use, then cached in build/emu-ext)."""
    global _ext
    if _ext is not None:
        return _ext
    from torch.utils import cpp_extension

    sources = host_sources()
    sources += [CSRC / "emu" / f for f in ("emu_entry.cpp", "emu_f32.cpp", "emu_f64.cpp", "emu_f16.cpp",
                                           "emu_bf16.cpp", "simt.cpp", "runtime_emu.cpp", "emu_module.cpp")]
    build = ROOT / "build" / "emu-ext"
    build.mkdir(parents=True, exist_ok=True)
    flags = ["-O2", *EMU_FLAGS, "-DRNNFUSED_OPS_NAMESPACE=rnnfused_emu"]
    os.environ.setdefault("MAX_JOBS", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No CUDA runtime is found": none is needed
        _ext = cpp_extension.load(
            name="rnnfused_emu",
            sources=[str(s) for s in sources],
            extra_cflags=flags,
            build_directory=str(build),
            verbose=False,
        )
    return _ext


def ctl():
    """The emulator's control ops (torch.ops.rnnfused_emu_ctl)."""
    extension()
    return torch.ops.rnnfused_emu_ctl


@contextlib.contextmanager
def route_to_emulator():
    """Within the block, every rnnfused::<op> called on CPU tensors runs rnnfused_emu::<op>: the
    CUDA path (heuristic, plans, launchers, kernels) under the emulator, through FusedRNN itself.
    Autograd and fake kernels stay those of the rnnfused ops."""
    extension()
    names = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                   if n.startswith("rnnfused::"))
    lib = torch.library.Library("rnnfused", "IMPL")  # noqa: TOR901 (test-only override)

    def forward_to(emu_op):
        return lambda *args: emu_op(*args)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Overriding a previously registered kernel.*")
        for name in names:
            base = name.split(".", 1)[0]
            emu_packet = getattr(torch.ops.rnnfused_emu, base)
            overload = name.split(".", 1)[1] if "." in name else "default"
            lib.impl(name, forward_to(getattr(emu_packet, overload)), "CPU")
    try:
        yield
    finally:
        lib._destroy()


@contextlib.contextmanager
def emulated(device="h100", schedule="in-order", seed=1, preempt_prob=0.05, memory_model=True, kernel=None):
    """FusedRNN on CPU tensors runs the CUDA code path on an emulated device `device` (a preset:
    h100, a100, l4, rtx4090, tiny) under `schedule`; `kernel` forces RNNFUSED_KERNEL."""
    c = ctl()
    old_kernel = os.environ.get("RNNFUSED_KERNEL")
    c.set_device(device)
    c.set_schedule(schedule, seed, preempt_prob, memory_model)
    if kernel is not None:
        os.environ["RNNFUSED_KERNEL"] = kernel
    try:
        with route_to_emulator():
            yield c
    finally:
        c.set_schedule("in-order", 1, 0.05, True)
        if old_kernel is None:
            os.environ.pop("RNNFUSED_KERNEL", None)
        else:
            os.environ["RNNFUSED_KERNEL"] = old_kernel


# ------------------------------------------------------------------------------------------------
# The standalone checker.

VARIANTS = {
    # name: (flags for the kernel sources, flags for the emulator's own sources, link flags)
    "plain": (["-O2"], ["-O2"], []),
    "asan": (["-O1", "-g", "-fsanitize=address,alignment", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"],
             ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"],
             ["-fsanitize=address,alignment"]),
    # The emulator's own bookkeeping is left uninstrumented (it annotates fibers and
    # synchronisation for ThreadSanitizer instead): only the kernels' accesses are checked.
    "tsan": (["-O1", "-g", "-fsanitize=thread"], ["-O1", "-g", "-DSIMT_WITH_TSAN=1"], ["-fsanitize=thread"]),
}

KERNEL_SOURCES = ["emu_f32.cpp", "emu_f64.cpp", "emu_f16.cpp", "emu_bf16.cpp", "emu_entry.cpp", "check_main.cpp"]
EMULATOR_SOURCES = ["simt.cpp", "runtime_emu.cpp", "emu_switches.cpp"]


def check_binary(variant="plain", root=CSRC, out_dir=None, jobs=2, reuse=None, rebuild=None):
    """Builds csrc/emu/check_main.cpp with the kernels of `root` (a csrc tree: the project's, or
    a mutated copy) for `variant`; returns the executable's path. Rebuilt only when a source or
    the flags change. With `reuse` (the directory of another build of the same variant), only the
    sources named in `rebuild` are compiled from `root` and the other objects are taken from it."""
    kflags, eflags, lflags = VARIANTS[variant]
    cxx = os.environ.get("CXX", "g++")
    tdir = _torch_dir()
    common = ["-std=c++20", *EMU_FLAGS, "-Wall", f"-I{tdir / 'include'}"]
    out = Path(out_dir) if out_dir else ROOT / "build" / "emu-check" / variant
    digest = _sources_digest(_kernel_tree(Path(root)), extra=" ".join([cxx, variant, *kflags, *eflags, str(tdir)]))
    exe = out / "emu_check"
    stamp = out / "stamp"
    if exe.exists() and stamp.exists() and stamp.read_text() == digest:
        return exe
    out.mkdir(parents=True, exist_ok=True)
    jobs_list = [(src, kflags) for src in KERNEL_SOURCES] + [(src, eflags) for src in EMULATOR_SOURCES]
    if reuse is not None:
        for src, _ in jobs_list:
            if src not in rebuild:
                shutil.copy2(Path(reuse) / (Path(src).stem + ".o"), out / (Path(src).stem + ".o"))
        jobs_list = [j for j in jobs_list if j[0] in rebuild]

    def compile_one(item):
        src, flags = item
        obj = out / (Path(src).stem + ".o")
        cmd = [cxx, *common, *flags, "-c", str(Path(root) / "emu" / src), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"emulator build ({variant}) failed:\n$ {' '.join(cmd)}\n{r.stderr[-6000:]}")
        return obj

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(compile_one, jobs_list))
    objs = [out / (Path(src).stem + ".o") for src in KERNEL_SOURCES + EMULATOR_SOURCES]
    link = [cxx, *[str(o) for o in objs], "-o", str(exe), *lflags, f"-L{tdir / 'lib'}", "-lc10",
            f"-Wl,-rpath,{tdir / 'lib'}", "-pthread"]
    r = subprocess.run(link, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"emulator link ({variant}) failed:\n$ {' '.join(link)}\n{r.stderr[-6000:]}")
    stamp.write_text(digest)
    return exe


def sanitizer_env(variant):
    """Environment for running a sanitizer build: findings are fatal and named."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    env["TSAN_OPTIONS"] = "halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0"
    return env


def run_check(exe, *args, variant="plain", timeout=1800):
    """Runs the checker; returns (returncode, combined output)."""
    cmd = [str(exe), *args]
    if variant == "tsan" and shutil.which("setarch"):
        # ThreadSanitizer needs the address layout it expects: no ASLR for this process.
        cmd = ["setarch", os.uname().machine, "-R", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, env=sanitizer_env(variant), timeout=timeout)
    return r.returncode, r.stdout + r.stderr


if __name__ == "__main__":  # python tests/emu_support.py [plain|asan|tsan] [checker args...]
    v = sys.argv[1] if len(sys.argv) > 1 else "plain"
    rc, out = run_check(check_binary(v), *sys.argv[2:], variant=v)
    print(out)
    sys.exit(rc)
