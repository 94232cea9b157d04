"""The build-mode rule (rnnfused/_build_mode.py, which setup.py applies), and that pip's own output
names the mode. Nothing here compiles anything.

The rule, as pytorch/extension-cpp has it: CUDA kernels when a CUDA toolkit and a CUDA build of
torch are present and a GPU is visible or FORCE_CUDA=1; RNNFUSED_CPU_ONLY=1 always CPU-only.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnfused
from rnnfused import _build_mode as bm

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = "/usr/local/cuda-13.0"

# (cpu_only, force_cuda, torch_cuda, cuda_home, gpu_visible) -> CUDA kernels?, words of the reason
RULE = [
    # a toolkit alone is not enough: without a GPU or FORCE_CUDA=1 the build is CPU-only
    ((False, False, "13.0", TOOLKIT, False), False, "no GPU visible"),
    ((False, False, "13.0", TOOLKIT, True), True, "a GPU is visible"),
    ((False, True, "13.0", TOOLKIT, False), True, "FORCE_CUDA=1"),
    ((False, True, "13.0", TOOLKIT, True), True, "FORCE_CUDA=1"),
    # no toolkit, or a CPU-only torch: CPU-only, GPU or not
    ((False, False, "13.0", None, True), False, "no CUDA toolkit found"),
    ((False, False, None, TOOLKIT, True), False, "CPU-only build"),
    ((False, False, None, None, False), False, "CPU-only build"),
    # RNNFUSED_CPU_ONLY=1 wins over everything, FORCE_CUDA=1 included
    ((True, False, "13.0", TOOLKIT, True), False, "RNNFUSED_CPU_ONLY=1"),
    ((True, True, "13.0", TOOLKIT, True), False, "overrides FORCE_CUDA=1"),
    ((True, True, None, None, False), False, "RNNFUSED_CPU_ONLY=1"),
]


@pytest.mark.parametrize("inputs, with_cuda, reason", RULE)
def test_mode_rule(inputs, with_cuda, reason):
    cpu_only, force_cuda, torch_cuda, cuda_home, gpu = inputs
    got, why = bm.decide(cpu_only=cpu_only, force_cuda=force_cuda, torch_cuda=torch_cuda,
                         cuda_home=cuda_home, gpu_visible=gpu)
    assert got is with_cuda
    assert reason in why, why
    line = bm.describe(got, why, "8.0;9.0+PTX")
    assert ("CPU-only" in line) is (not with_cuda) and reason in line, line
    assert bm.version(got, torch_cuda) == ("0.1.0+cu130" if with_cuda else "0.1.0+cpu")


@pytest.mark.parametrize("torch_cuda, cuda_home, missing", [
    (None, TOOLKIT, "this torch is a CPU-only build"),
    ("13.0", None, "no CUDA toolkit found"),
])
@pytest.mark.parametrize("gpu", [False, True])
def test_force_cuda_without_a_cuda_build_fails(torch_cuda, cuda_home, missing, gpu):
    with pytest.raises(bm.BuildModeError, match="FORCE_CUDA=1 but no CUDA build is possible") as e:
        bm.decide(cpu_only=False, force_cuda=True, torch_cuda=torch_cuda, cuda_home=cuda_home, gpu_visible=gpu)
    assert missing in str(e.value)


@pytest.mark.parametrize("torch_cuda, label", [("13.0", "cu130"), ("12.8", "cu128"), ("11.8", "cu118")])
def test_local_label_follows_torch(torch_cuda, label):
    assert bm.local_label(True, torch_cuda) == label
    assert bm.local_label(False, torch_cuda) == "cpu"


def test_this_install_records_its_mode():
    info = rnnfused.build_info()
    assert info is not None
    assert info["WITH_CUDA"] is rnnfused.built_with_cuda()
    assert info["VERSION"] == rnnfused.__version__ == bm.version(info["WITH_CUDA"], info["TORCH_CUDA_VERSION"])
    assert info["MODE_REASON"], info


def test_python_m_rnnfused_names_the_build():
    from rnnfused.__main__ import summary
    text = "\n".join(summary())
    info = rnnfused.build_info()
    assert rnnfused.__version__ in text
    assert info["MODE_REASON"] in text
    assert ("CPU kernels only" in text) is (not rnnfused.built_with_cuda())
    assert f"CPU kernels run with: {rnnfused.cpu_isa()}" in text


def _source_copy(dest):
    """What pip needs to read the package's metadata (no C++ sources: nothing is compiled)."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "rnnfused", dest / "rnnfused",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "_build_info.py"))
    return dest


def _pip_dry_run(src, env_extra):
    """`pip install --dry-run`: pip runs setup.py to get the metadata, as a real install does, and
    prints the version it would install ("Would install rnnfused-0.1.0+cpu") with no -v, exactly
    as a real install ends with "Successfully installed rnnfused-0.1.0+cpu"."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_CUDA", "RNNFUSED_CPU_ONLY")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                           "--no-build-isolation", str(src)],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_plain_pip_install_output_names_the_mode(tmp_path):
    src = _source_copy(tmp_path)
    cu = bm.local_label(True, torch.version.cuda) if torch.version.cuda else None

    cpu = _pip_dry_run(src, {"RNNFUSED_CPU_ONLY": "1"})
    assert cpu.returncode == 0, cpu.stdout[-3000:] + cpu.stderr[-3000:]
    assert "Would install rnnfused-0.1.0+cpu" in cpu.stdout, cpu.stdout

    forced = _pip_dry_run(src, {"FORCE_CUDA": "1"})
    if forced.returncode == 0:
        assert torch.version.cuda is not None
        assert f"Would install rnnfused-0.1.0+{cu}" in forced.stdout, forced.stdout
    else:
        # only where no toolkit is found (then this install has no CUDA kernels either) or torch is CPU-only
        assert "FORCE_CUDA=1 but no CUDA build is possible" in forced.stdout + forced.stderr
        assert torch.version.cuda is None or not rnnfused.built_with_cuda()

    default = _pip_dry_run(src, {})
    assert default.returncode == 0, default.stdout[-3000:] + default.stderr[-3000:]
    if not torch.cuda.is_available():
        # the newcomer's case: toolkit or not, no GPU means a CPU-only build
        assert "Would install rnnfused-0.1.0+cpu" in default.stdout, default.stdout
    else:
        assert ("Would install rnnfused-0.1.0+cpu" in default.stdout
                or f"Would install rnnfused-0.1.0+{cu}" in default.stdout), default.stdout
