"""Build rnnfused: one extension module, rnnfused._C, with the CPU kernels and, where a CUDA
toolkit and a CUDA build of torch are present (or FORCE_CUDA=1), the CUDA kernels.

Knobs: FORCE_CUDA=1 (compile the CUDA sources even without a GPU), RNNFUSED_CPU_ONLY=1 (never),
CUDA_HOME, TORCH_CUDA_ARCH_LIST (default DEFAULT_CUDA_ARCHS below), MAX_JOBS, RNNFUSED_DEBUG=1
(-O0 -g, and a group barrier that traps after RNNFUSED_SPIN_LIMIT spins instead of hanging).
Build with: pip install --no-build-isolation .   (it compiles against the torch you have)

Every build also writes rnnfused/_build_info.py beside the compiled rnnfused._C (git-ignored): the
torch (and CUDA) it was compiled against. rnnfused/_build.py reads it before loading _C, so an
extension built for another torch fails at import with the cause and the fix, not with a bare
"libc10_cuda.so: cannot open shared object file" or an undefined symbol.
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# The default TORCH_CUDA_ARCH_LIST: machine code for 7.5 (T4), 8.0 (A100; it also runs on 8.6 and
# 8.9: L4, RTX 30xx/40xx, A10), 9.0 (H100/H200), and 9.0's PTX, which the driver compiles for
# newer GPUs (Blackwell) at load time. nvcc 13 has no 7.0 (V100) any more; with nvcc 12 the
# default adds it. tools/cuda_resources.py reads DEFAULT_CUDA_ARCHS (CI's resource check).
DEFAULT_CUDA_ARCHS = "7.5;8.0;9.0+PTX"
DEFAULT_CUDA_ARCHS_NVCC12 = "7.0;7.5;8.0;9.0+PTX"
# Debug builds: spins of the group barrier before it traps with a message (device/persist.cuh).
DEBUG_SPIN_LIMIT = 1 << 26


def _has_cuda_runtime(root):
    return bool(root) and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def _find_cuda_home():
    """A CUDA root that really holds the toolkit, or None. Checked before torch guesses one:
    torch takes dirname(dirname(which nvcc)), which is wrong when nvcc is a wrapper script."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in candidates:
        if _has_cuda_runtime(root):
            return root
    return None


def _load_build_mode():
    """rnnfused/_build_mode.py (the mode rule, shared with tests/test_build_mode.py), loaded by path:
    importing the package would import its compiled part, which is what is being built."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "rnnfused_build_mode", os.path.join(HERE, "rnnfused", "_build_mode.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build_mode = _load_build_mode()
FORCE_CUDA = os.environ.get("FORCE_CUDA", "0") == "1"
CPU_ONLY = os.environ.get("RNNFUSED_CPU_ONLY", "0") == "1"
_cuda_home = None if CPU_ONLY else _find_cuda_home()
if _cuda_home:
    os.environ["CUDA_HOME"] = _cuda_home  # before torch.utils.cpp_extension reads it

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

# Asked only where it decides something (it initialises torch's CUDA state).
_gpu_visible = (not CPU_ONLY and not FORCE_CUDA and torch.version.cuda is not None
                and _cuda_home is not None and torch.cuda.is_available())
try:
    WITH_CUDA, MODE_REASON = build_mode.decide(cpu_only=CPU_ONLY, force_cuda=FORCE_CUDA,
                                               torch_cuda=torch.version.cuda, cuda_home=_cuda_home,
                                               gpu_visible=_gpu_visible)
except build_mode.BuildModeError as e:
    sys.exit(str(e))


def _nvcc_major(root):
    """The CUDA toolkit's major version (nvcc --version), or None."""
    import re
    import subprocess
    try:
        out = subprocess.run([os.path.join(root, "bin", "nvcc"), "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else None


GENERATED = os.path.join(HERE, "build", "generated")  # headers written by this script (git-ignored)


def _write_arch_header():
    """The architectures torch.utils.cpp_extension compiles for (from TORCH_CUDA_ARCH_LIST), as the
    header csrc/cuda/archs.h includes: build/generated/rnnfused_cuda_archs.h, defining
    RNNFUSED_CUDA_SASS (75, 80, 90) and RNNFUSED_CUDA_PTX (90). A header, not -D flags: nvcc
    splits -D values at commas. Refuses, with a plain message, a list with an architecture older
    than 7.0."""
    import re
    from torch.utils.cpp_extension import _get_cuda_arch_flags

    sass, ptx = set(), set()
    for flag in _get_cuda_arch_flags():
        for kind, num in re.findall(r"(sm|compute)_(\d+)", flag.rsplit("code=", 1)[-1]):
            (sass if kind == "sm" else ptx).add(int(num))
    old = sorted(a for a in sass | ptx if a < 70)
    if old:
        sys.exit(f"rnnfused: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']!r} names compute "
                 f"capabilities below 7.0 ({', '.join(f'{a // 10}.{a % 10}' for a in old)}); rnnfused's CUDA "
                 "kernels need 7.0 or newer. Remove them from the list.")
    os.makedirs(GENERATED, exist_ok=True)
    text = ("// Written by setup.py: the architectures of this build (TORCH_CUDA_ARCH_LIST="
            f"{os.environ['TORCH_CUDA_ARCH_LIST']}).\n"
            f"#define RNNFUSED_CUDA_SASS {', '.join(map(str, sorted(sass)))}\n"
            f"#define RNNFUSED_CUDA_PTX {', '.join(map(str, sorted(ptx)))}\n")
    path = os.path.join(GENERATED, "rnnfused_cuda_archs.h")
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


if WITH_CUDA and "TORCH_CUDA_ARCH_LIST" not in os.environ:
    major = _nvcc_major(_cuda_home)
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS_NVCC12 if major is not None and major < 13 else DEFAULT_CUDA_ARCHS
MODE_LINE = build_mode.describe(WITH_CUDA, MODE_REASON, os.environ.get("TORCH_CUDA_ARCH_LIST"))
# The version names the mode too: pip prints it without -v ("Successfully installed
# rnnfused-0.1.0+cpu"), and hides everything the build itself prints (MODE_LINE included) unless -v.
VERSION = build_mode.version(WITH_CUDA, torch.version.cuda)

debug = os.environ.get("RNNFUSED_DEBUG", "0") == "1"
# -g0: Python's own CFLAGS (which setuptools passes first) hold -g. Debug info for these template-
# heavy kernels cost ~40 % of the C++ compile time (the AVX-512 file: 71 s -> 43 s of CPU) and
# made its object file 19x larger; RNNFUSED_DEBUG=1 keeps it.
cxx_flags = ["-O0", "-g"] if debug else ["-O3", "-g0"]
# No -std: torch.utils.cpp_extension adds the standard this torch needs (C++17, or C++20 from 2.10).
cxx_flags += ["-fdiagnostics-color=always"]
# torch's headers as system headers (-isystem; GCC then ignores the -I that cpp_extension adds for
# the same folders): ATen's `#pragma unroll` and `#pragma clang diagnostic`, unknown to GCC, and
# its -Wpsabi notes are torch's, not ours, and drowned ours out (74 lines of a FORCE_CUDA build with
# torch 2.14). Our own code keeps every warning of -Wall. (The other class, GCC 12's
# -Wmaybe-uninitialized false positive in its AVX-512 intrinsics, is silenced in
# csrc/cpu/rnn_cpu_avx512.cpp, the one file where it arises.)
_torch_include = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "include")
system_includes = []
for d in (_torch_include, os.path.join(_torch_include, "torch", "csrc", "api", "include")):
    system_includes += ["-isystem", d]
cxx_flags += system_includes
# at::parallel_for is a header template: in a file compiled without OpenMP its `omp parallel`
# is ignored and every call runs on one thread. The CPU kernels split work across torch's
# intra-op threads through it, so compile with OpenMP where torch itself uses it (Linux + GCC
# builds link libgomp; the extension then shares torch's copy, same soname).
link_flags = []
if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
    cxx_flags += ["-fopenmp"]
    link_flags += ["-fopenmp"]
nvcc_flags = ["-O0", "-g", "-lineinfo", f"-DRNNFUSED_SPIN_LIMIT={DEBUG_SPIN_LIMIT}"] if debug else ["-O3", "-lineinfo"]
nvcc_flags += ["--expt-relaxed-constexpr", "-DRNNFUSED_WITH_CUDA"]

sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/host/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
if WITH_CUDA:
    _write_arch_header()
    sources += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    ext = CUDAExtension(
        "rnnfused._C",
        sources,
        include_dirs=[GENERATED],
        extra_compile_args={"cxx": cxx_flags + ["-DRNNFUSED_WITH_CUDA"], "nvcc": nvcc_flags},
        extra_link_args=link_flags,
    )
else:
    ext = CppExtension("rnnfused._C", sources, extra_compile_args={"cxx": cxx_flags},
                       extra_link_args=link_flags)


def build_info_text():
    """rnnfused/_build_info.py: what this build is for. Plain literals only (read without torch)."""
    info = {
        "TORCH_VERSION": torch.__version__,
        "TORCH_CUDA_VERSION": torch.version.cuda,          # None: a CPU-only torch
        "TORCH_GIT_VERSION": getattr(torch.version, "git_version", None),
        "TORCH_PATH": os.path.dirname(os.path.abspath(torch.__file__)),
        "CXX11_ABI": bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)),
        "VERSION": VERSION,                                # 0.1.0+cpu / 0.1.0+cu130
        "WITH_CUDA": WITH_CUDA,                            # the CUDA kernels were compiled
        "MODE_REASON": MODE_REASON,                        # why (rnnfused/_build_mode.py)
        "CUDA_ARCH_LIST": os.environ["TORCH_CUDA_ARCH_LIST"] if WITH_CUDA else None,
        "CUDA_HOME": _cuda_home if WITH_CUDA else None,
        "PYTHON": "%d.%d.%d" % sys.version_info[:3],
    }
    lines = ['"""Written by setup.py when rnnfused._C was built (not in git): the torch it was compiled',
             'against. rnnfused/_build.py compares it with the torch found at import."""']
    lines += [f"{k} = {v!r}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


class BuildExtensionWithInfo(BuildExtension.with_options(use_ninja=True)):
    """build_ext that also writes _build_info.py beside the compiled extension."""

    def _info_path(self):
        # Beside _C: in the source package for in-place and editable builds, else in build_lib.
        return os.path.join(os.path.dirname(os.path.abspath(self.get_ext_fullpath("rnnfused._C"))),
                            "_build_info.py")

    def finalize_options(self):
        super().finalize_options()
        if getattr(self, "editable_mode", False):
            # `pip install -e` compiles in a fresh temporary folder every time (setuptools'
            # editable_wheel), so a second install (the README's second command, or a rerun)
            # recompiled everything. Keep the objects and ninja's record in build/ instead: a
            # rerun recompiles only what changed (ninja compares each command and its inputs).
            self.build_temp = os.path.join(HERE, "build", "editable-" + build_mode.local_label(
                WITH_CUDA, torch.version.cuda))

    def run(self):
        print(MODE_LINE, flush=True)    # once, as the build starts (setup.py runs several times)
        super().run()
        path = self._info_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(build_info_text())
        print(f"rnnfused: built for torch {torch.__version__} (CUDA {torch.version.cuda}); recorded in {path}")

    def get_outputs(self):
        return super().get_outputs() + ([] if self.inplace else [self._info_path()])


setup(
    version=VERSION,
    packages=find_packages(include=["rnnfused", "rnnfused.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtensionWithInfo},
)
