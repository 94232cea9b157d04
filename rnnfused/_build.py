"""Loading the compiled extension, rnnfused._C, with the install traps turned into clear errors.

A C++ extension works only with the torch it was compiled against. The usual way to get another
one is `pip install .` without `--no-build-isolation`: pip then builds in a temporary environment
with whatever torch it downloads there, the build "succeeds", and importing it later fails with
"libc10_cuda.so: cannot open shared object file" or an undefined symbol, saying nothing of why.

setup.py records the torch of the build in rnnfused/_build_info.py (git-ignored). load_extension()
compares it with the torch found here BEFORE loading _C (which may be the very thing that fails to
load, or may load and then misbehave), and turns a failing `import _C` into an ImportError that
names the likely cause and the fix.

RNNFUSED_ALLOW_TORCH_MISMATCH=1 makes a version mismatch a warning instead of an error (for those
who know their two torch builds are binary compatible); a failing _C still raises.
"""
import importlib
import os
import warnings

import torch

FIX = ("Rebuild rnnfused against the torch you have, from its source folder:\n"
       "    pip install --no-build-isolation .        (or: pip install --no-build-isolation -e .)\n"
       "(plain `pip install .` builds in an isolated environment against whatever torch pip "
       "downloads there, and the result works only with that torch)")


def build_info():
    """The build's record as a dict (TORCH_VERSION, TORCH_CUDA_VERSION, WITH_CUDA, ...), or None
    when there is none (a build by an older setup.py, or a source tree that was never built)."""
    try:
        mod = importlib.import_module(__package__ + "._build_info")
    except ImportError:
        return None
    return {k: v for k, v in vars(mod).items() if k.isupper()}


def _describe_build(info):
    if info is None:
        return "an unknown torch (no rnnfused/_build_info.py was recorded)"
    cuda = info.get("TORCH_CUDA_VERSION")
    text = f"torch {info.get('TORCH_VERSION')} ({'CUDA ' + cuda if cuda else 'CPU-only torch'})"
    path = info.get("TORCH_PATH") or ""
    if "pip-build-env" in path or "build-env-" in path:
        text += ", in pip's temporary isolated build environment"
    return text


def _describe_here():
    cuda = torch.version.cuda
    where = os.path.dirname(os.path.abspath(torch.__file__))
    return f"torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU-only torch'}) at {where}"


def mismatch_message(info):
    """The error text for a build recorded for another torch than this one."""
    return (f"rnnfused was compiled against {_describe_build(info)}, but this Python imports "
            f"{_describe_here()}. A compiled extension works only with the torch it was built "
            f"against.\n{FIX}\nor install the torch it was built for "
            f"(pip install torch=={str(info.get('TORCH_VERSION')).split('+')[0]}, of the same "
            f"CPU/CUDA flavour).")


def load_error_message(exc, info):
    """The error text for an `import rnnfused._C` that failed with exc."""
    text = str(exc)
    head = f"rnnfused's compiled extension (rnnfused._C) failed to load: {type(exc).__name__}: {text}\n"
    if isinstance(exc, ModuleNotFoundError) and "_C" in text:
        return (head + "It was not built. " + FIX.replace("Rebuild", "Build", 1) +
                "\nor, for a source checkout on sys.path: python setup.py build_ext --inplace")
    cause = []
    if "libc10_cuda" in text or "libcudart" in text or "libtorch_cuda" in text:
        cause.append("it was compiled against a CUDA build of torch and this torch "
                     f"({torch.__version__}) has no such library: a CPU-only torch, or another one")
    elif "undefined symbol" in text or "cannot open shared object" in text:
        cause.append("it was compiled against another torch than the one imported here")
    else:
        cause.append("it was compiled for another torch or Python, or the file is damaged")
    return (head + f"Likely cause: {cause[0]}.\nThis Python imports {_describe_here()}; the build "
            f"was for {_describe_build(info)}.\n{FIX}")


def check_torch(info=None):
    """Raise ImportError (or warn, with RNNFUSED_ALLOW_TORCH_MISMATCH=1) if the recorded build is
    for another torch than the one imported. Does nothing without a record."""
    info = build_info() if info is None else info
    if info is None or info.get("TORCH_VERSION") == torch.__version__:
        return
    msg = mismatch_message(info)
    if os.environ.get("RNNFUSED_ALLOW_TORCH_MISMATCH", "0") == "1":
        warnings.warn(msg + "\n(RNNFUSED_ALLOW_TORCH_MISMATCH=1: loading it anyway)", RuntimeWarning,
                      stacklevel=3)
        return
    raise ImportError(msg)


def load_extension():
    """Check the recorded torch, then import and return rnnfused._C (registers torch.ops.rnnfused.*)."""
    info = build_info()
    check_torch(info)
    try:
        return importlib.import_module(__package__ + "._C")
    except ImportError as e:   # OSError from the loader arrives as ImportError
        raise ImportError(load_error_message(e, info)) from e
