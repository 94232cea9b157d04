"""Install traps, simulated: an extension built for another torch, one that fails to load, one
never built, and `import rnnfused` without numpy.

Each case imports a copy of the installed package in a fresh interpreter (a subprocess), with the
build record (rnnfused/_build_info.py) or the compiled _C replaced; no second torch is needed.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import rnnfused
from rnnfused import _build

PKG = Path(rnnfused.__file__).resolve().parent


def copy_package(dest, *, build_info=None, so_bytes=None, drop_so=False):
    """Copy the installed rnnfused into dest/rnnfused; optionally replace its build record (a dict
    of the variables to write) or its compiled _C (bytes), or leave _C out. Returns dest."""
    target = dest / "rnnfused"
    shutil.copytree(PKG, target, ignore=shutil.ignore_patterns("__pycache__"))
    if build_info is not None:
        (target / "_build_info.py").write_text("".join(f"{k} = {v!r}\n" for k, v in build_info.items()))
    so_files = list(target.glob("_C*.so")) + list(target.glob("_C*.pyd"))
    assert so_files, f"no compiled _C in {PKG}"
    for so in so_files:
        if drop_so:
            so.unlink()
        elif so_bytes is not None:
            so.write_bytes(so_bytes)
    return dest


def run_python(code, path_dirs, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "RNNFUSED_ALLOW_TORCH_MISMATCH"}
    env.update(env_extra or {}, PYTHONPATH=os.pathsep.join(str(p) for p in path_dirs))
    code = textwrap.dedent(NO_EDITABLE_FINDER) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], cwd=path_dirs[0], env=env,
                          capture_output=True, text=True, timeout=300)


OTHER_TORCH = {
    "TORCH_VERSION": "1.0.0+fake",
    "TORCH_CUDA_VERSION": "99.9",
    "TORCH_PATH": "/tmp/pip-build-env-abc123/overlay/lib/python3.11/site-packages/torch",
    "WITH_CUDA": True,
}

# An editable install (pip install -e) puts a finder on sys.meta_path that would find the real
# rnnfused._C / _build_info for a copy that lacks them; the copies are tried without it.
NO_EDITABLE_FINDER = """
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "__module__", "").startswith("__editable__")]
"""

# One interpreter tries each broken copy in turn (none of them loads a working _C, so they can
# share a process; importing torch once keeps this test fast) and reports what import said.
TRY_EACH = """
    import importlib, json, sys
    report = {}
    for name in sys.argv[1:]:
        sys.path.insert(0, name)
        for m in [m for m in sys.modules if m == "rnnfused" or m.startswith("rnnfused.")]:
            del sys.modules[m]
        try:
            importlib.import_module("rnnfused")
            report[name] = {"error": None}
        except ImportError as e:
            report[name] = {"error": str(e), "C_loaded": "rnnfused._C" in sys.modules}
        sys.path.remove(name)
    print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def import_errors(tmp_path_factory):
    """{case: {"error": the ImportError's text or None, "C_loaded": bool}} for three broken copies."""
    root = tmp_path_factory.mktemp("broken")
    same = dict(rnnfused.build_info() or {}, TORCH_VERSION=torch.__version__)
    copy_package(root / "other_torch", build_info=OTHER_TORCH)
    copy_package(root / "damaged", build_info=same, so_bytes=b"not an ELF file, a damaged build" * 64)
    copy_package(root / "not_built", drop_so=True)
    (root / "not_built" / "rnnfused" / "_build_info.py").unlink()
    cases = ["other_torch", "damaged", "not_built"]
    env = {k: v for k, v in os.environ.items() if k not in ("RNNFUSED_ALLOW_TORCH_MISMATCH", "PYTHONPATH")}
    code = textwrap.dedent(NO_EDITABLE_FINDER) + textwrap.dedent(TRY_EACH)
    proc = subprocess.run([sys.executable, "-c", code, *cases], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_build_record_names_this_torch():
    info = rnnfused.build_info()
    assert info is not None, "setup.py did not write rnnfused/_build_info.py"
    assert info["TORCH_VERSION"] == torch.__version__
    assert info["TORCH_CUDA_VERSION"] == torch.version.cuda
    assert info["WITH_CUDA"] == rnnfused.built_with_cuda()


@pytest.mark.skipif(not rnnfused.built_with_cuda(), reason="needs a CUDA build (CI compiles one without a GPU)")
def test_cuda_build_knows_its_architectures():
    """setup.py hands the architectures it compiled for to the C++ code (build/generated/
    rnnfused_cuda_archs.h), which names them when a GPU has no code: they are the build's
    TORCH_CUDA_ARCH_LIST (machine code for each entry, PTX for the +PTX ones)."""
    entries = rnnfused.build_info()["CUDA_ARCH_LIST"].replace(" ", ";").split(";")
    if not all(e.replace("+PTX", "").replace(".", "").isdigit() for e in entries if e):
        pytest.skip(f"a named architecture in {entries}")
    num = lambda e: int(e.replace("+PTX", "").replace(".", ""))  # noqa: E731
    sass = sorted({num(e) for e in entries if e})
    ptx = sorted({num(e) for e in entries if e.endswith("+PTX")})
    assert rnnfused._C.cuda_archs() == (sass, ptx)


@pytest.mark.slow
@pytest.mark.skipif(not rnnfused.built_with_cuda(), reason="needs the CUDA toolkit of a CUDA build")
def test_arch_list_below_7_0_is_refused_plainly():
    """A TORCH_CUDA_ARCH_LIST with a capability the kernels cannot run on (the group barrier's
    ld.acquire and __nanosleep need 7.0) stops setup.py at once with a plain message, before any
    compilation (and before it writes the build's architecture header)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST="6.1;8.0")
    env.pop("RNNFUSED_CPU_ONLY", None)
    r = subprocess.run([sys.executable, "setup.py", "--version"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0
    assert ("TORCH_CUDA_ARCH_LIST='6.1;8.0' names compute capabilities below 7.0 (6.1); rnnfused's CUDA "
            "kernels need 7.0 or newer. Remove them from the list.") in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_other_torch_raises_before_loading_the_extension(import_errors):
    r = import_errors["other_torch"]
    out = r["error"]
    assert out is not None, "a build recorded for torch 1.0.0 imported"
    # the cause: both versions, and that the build ran in pip's isolated environment
    assert "torch 1.0.0+fake (CUDA 99.9)" in out
    assert f"torch {torch.__version__}" in out
    assert "isolated build environment" in out
    # the fix
    assert "pip install --no-build-isolation ." in out
    assert "pip install torch==1.0.0" in out
    # checked before _C was loaded (loading a mismatched _C may crash or misbehave)
    assert r["C_loaded"] is False


@pytest.mark.slow
def test_extension_that_fails_to_load_names_the_cause(import_errors):
    out = import_errors["damaged"]["error"]
    assert out is not None, "a damaged _C imported"
    assert "rnnfused._C) failed to load" in out
    assert f"torch {torch.__version__}" in out
    assert "pip install --no-build-isolation ." in out


@pytest.mark.slow
def test_extension_never_built(import_errors):
    out = import_errors["not_built"]["error"]
    assert out is not None and "It was not built" in out, out
    assert "python setup.py build_ext --inplace" in out


@pytest.mark.slow
def test_other_torch_can_be_allowed_explicitly(tmp_path):
    copy_package(tmp_path, build_info=OTHER_TORCH)
    proc = run_python("import rnnfused; print('IMPORTED', rnnfused.__file__)", [tmp_path],
                      {"RNNFUSED_ALLOW_TORCH_MISMATCH": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMPORTED " + str(tmp_path) in proc.stdout
    assert "RuntimeWarning" in proc.stderr and "1.0.0+fake" in proc.stderr


@pytest.mark.parametrize("loader_error, cause", [
    ("libc10_cuda.so: cannot open shared object file: No such file or directory", "CUDA build of torch"),
    ("/x/_C.so: undefined symbol: _ZN3c1015SmallVectorBase", "another torch than the one imported"),
])
def test_load_error_message_names_the_likely_cause(loader_error, cause):
    msg = _build.load_error_message(ImportError(loader_error), dict(OTHER_TORCH))
    assert loader_error in msg
    assert cause in msg
    assert "torch 1.0.0+fake" in msg and f"torch {torch.__version__}" in msg
    assert "pip install --no-build-isolation ." in msg


def test_matching_record_passes_check():
    _build.check_torch(dict(OTHER_TORCH, TORCH_VERSION=torch.__version__))   # no raise
    with pytest.raises(ImportError, match="1.0.0"):
        _build.check_torch(dict(OTHER_TORCH))


# ---------------------------------------------------------------------------- without numpy
NO_NUMPY_SITE = '''
import sys
from importlib.machinery import PathFinder


class _NoNumpy(PathFinder):
    """numpy is not installed, as far as this interpreter can tell."""
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_NoNumpy if f is PathFinder else f for f in sys.meta_path]
'''


@pytest.mark.slow
def test_import_without_numpy_prints_nothing(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(NO_NUMPY_SITE)
    code = """
        import importlib.util, warnings
        assert importlib.util.find_spec("numpy") is None, "the numpy blocker did not work"
        filters = list(warnings.filters)
        import rnnfused, torch
        assert warnings.filters == filters, "rnnfused changed the warning filters"
        # and it works without numpy: forward and backward against nn.RNN
        torch.manual_seed(0)
        ref = torch.nn.RNN(3, 5)
        fused = rnnfused.FusedRNN(3, 5)
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(7, 2, 3)
        a, b = ref(x)[0], fused(x)[0]
        assert torch.allclose(a, b, atol=1e-6)
        b.sum().backward()
        print("OK")
    """
    proc = run_python(code, [tmp_path, PKG.parent])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "OK"
    assert "NumPy" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- README and CI
ROOT = PKG.parent if (PKG.parent / "README.md").exists() else Path(__file__).resolve().parents[1]


def _readme_quickstart_commands():
    """The command lines of README.md's Quickstart code blocks (comments stripped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = section.split("```")[1::2]
    return [line.split("  #")[0].strip() for b in blocks for line in b.strip().splitlines()]


def test_readme_quickstart_is_two_commands_with_one_install_and_ci_runs_the_test_one():
    """README's quickstart: two commands, each installing the same thing (so the second finds it
    built) then running the benchmark, resp. the full test suite; .ci/run runs that test command
    verbatim (and fails if its install recompiled anything)."""
    commands = [c for c in _readme_quickstart_commands() if c.startswith("pip install")]
    assert len(commands) == 2, commands
    bench, tests = commands
    install = " && ".join(tests.split(" && ")[:2])
    assert bench.startswith(install + " && ") and '".[bench,test]"' in install, (bench, tests)
    assert bench.endswith("python bench/bench_rnn.py"), bench
    assert tests == install + " && python -m pytest tests -q", tests
    assert 'python -m pytest tests -q -m "not slow and not emulated"' in _readme_quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()
    assert "-newer .ci-mark" in ci
