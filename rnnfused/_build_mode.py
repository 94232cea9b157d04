"""Which kernels a build compiles, and why: the rule setup.py applies and tests/test_build_mode.py
checks. Plain Python without torch, so setup.py can load it before anything is built.

The rule follows pytorch/extension-cpp: the CUDA kernels are compiled when a CUDA toolkit and a
CUDA build of torch are present AND either a GPU is visible or FORCE_CUDA=1 asks for them (CI
and wheel builders set it: they build where no GPU is). RNNFUSED_CPU_ONLY=1 always means
CPU-only. A toolkit alone does not: a machine without a GPU would spend most of the build on
kernels it cannot run.

pip shows none of a build's own output without `pip -v` (it logs the build backend's stdout and
stderr at its verbose level), so the mode is also in the version pip prints at the end
("Successfully installed rnnfused-0.1.0+cpu", torch's own convention: +cpu, +cu130), and
`python -m rnnfused` prints it with its reason after the install.
"""

VERSION = "0.1.0"


class BuildModeError(Exception):
    """FORCE_CUDA=1 where no CUDA build is possible."""


def decide(*, cpu_only, force_cuda, torch_cuda, cuda_home, gpu_visible):
    """(with_cuda, reason) for a build.

    cpu_only: RNNFUSED_CPU_ONLY=1; force_cuda: FORCE_CUDA=1; torch_cuda: torch.version.cuda (None
    for a CPU-only torch); cuda_home: the toolkit root found, or None; gpu_visible: whether torch
    sees a GPU (torch.cuda.is_available()). Raises BuildModeError for FORCE_CUDA=1 without a
    toolkit or a CUDA build of torch."""
    if cpu_only:
        return False, "RNNFUSED_CPU_ONLY=1" + (" (it overrides FORCE_CUDA=1)" if force_cuda else "")
    if torch_cuda is None or cuda_home is None:
        missing = ("this torch is a CPU-only build" if torch_cuda is None
                   else "no CUDA toolkit found (CUDA_HOME, nvcc on PATH, /usr/local/cuda*)")
        if force_cuda:
            raise BuildModeError(
                f"rnnfused: FORCE_CUDA=1 but no CUDA build is possible: {missing} "
                f"(torch.version.cuda={torch_cuda}, CUDA toolkit root={cuda_home}). "
                "Install a CUDA build of torch and point CUDA_HOME at the toolkit.")
        return False, missing
    if force_cuda:
        return True, "FORCE_CUDA=1"
    if gpu_visible:
        return True, "a GPU is visible and a CUDA toolkit is installed"
    return False, "no GPU visible; FORCE_CUDA=1 compiles the CUDA kernels anyway"


def local_label(with_cuda, torch_cuda):
    """The version's local label, as torch's wheels have it: "cpu", or "cu130" for CUDA 13.0."""
    if not with_cuda:
        return "cpu"
    return "cu" + "".join(str(torch_cuda).split(".")[:2])


def version(with_cuda, torch_cuda):
    """The package version pip prints when it installs the build: "0.1.0+cpu", "0.1.0+cu130"."""
    return f"{VERSION}+{local_label(with_cuda, torch_cuda)}"


def describe(with_cuda, reason, arch_list=None):
    """The one line a build prints (and `python -m rnnfused` repeats) about its mode."""
    if with_cuda:
        return f"rnnfused: building with CUDA kernels for TORCH_CUDA_ARCH_LIST={arch_list} ({reason})"
    return f"rnnfused: building CPU-only ({reason}); CUDA tensors will raise a clear error"
