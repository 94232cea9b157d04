"""bench/gpu_check.sh without a GPU: its first-contact preset runs up to the first step that needs
a device, under its limits, writing its logs as it goes, and says NO-GO; a step past its limit is
killed and reported. (The build step is left out: it is this test environment's own build.)"""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
# The first-contact preset's steps, without the build.
STEPS = "environment import device coresidency test_cuda stress memcheck synccheck benchmark"
AFTER_DEVICE = ["coresidency", "test_cuda", "stress", "memcheck", "synccheck", "benchmark"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(torch.cuda.is_available(), reason="checks the script's no-GPU behaviour")]


def run_check(tmp_path, python=sys.executable, timeouts="", budget=None):
    env = dict(os.environ, GPU_CHECK_STEPS=STEPS, PYTHON=python, GPU_CHECK_TIMEOUTS=timeouts)
    if budget is not None:
        env["GPU_CHECK_BUDGET"] = str(budget)
    logdir = tmp_path / "logs"
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPT), str(logdir), "first-contact"], capture_output=True, text=True,
                       env=env, timeout=300)
    return r, logdir, time.monotonic() - t0


def summary(logdir):
    return (logdir / "summary.txt").read_text().splitlines()


def test_first_contact_stops_at_the_device_step(tmp_path):
    r, logdir, _ = run_check(tmp_path)
    lines = summary(logdir)
    assert r.returncode != 0 and r.stdout.strip().splitlines()[-1] == "NO-GO", r.stdout + r.stderr
    assert lines[-1] == "NO-GO"
    status = {ln.split()[1]: ln.split()[0] for ln in lines[:-1]}
    assert list(status) == STEPS.split(), lines
    assert status["environment"] == "PASS"
    import rnnfused
    # import needs a CUDA build (CI compiles one without a GPU); device needs a device.
    assert status["import"] == ("PASS" if rnnfused.built_with_cuda() else "FAIL")
    stopped_at = "device" if rnnfused.built_with_cuda() else "import"
    if stopped_at == "device":
        assert status["device"] == "FAIL"
        assert "no CUDA device" in (logdir / "device.log").read_text()
    for s in AFTER_DEVICE:
        assert status[s] == "SKIP", lines
        assert not (logdir / f"{s}.log").exists()
        assert f"SKIP  {s} (after the failed {stopped_at} step)" in lines
    # Every step that ran has its log: the command, its limit, then its output.
    for s in ["environment", "import"] + (["device"] if stopped_at == "device" else []):
        head = (logdir / f"{s}.log").read_text().splitlines()
        assert head[0].startswith("$ ") and head[1].startswith("# limit "), head[:2]
    assert "torch" in (logdir / "environment.log").read_text()


def test_a_step_past_its_limit_is_killed_and_reported(tmp_path):
    """A python that hangs on `import rnnfused`: the import step is killed at its 2 s limit (set
    through GPU_CHECK_TIMEOUTS), reported, and the run stops there with NO-GO."""
    wrapper = tmp_path / "slowpython"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"import rnnfused"*) sleep 120;; esac\nexec {sys.executable} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    r, logdir, took = run_check(tmp_path, python=str(wrapper), timeouts="import=2")
    lines = summary(logdir)
    assert took < 60, f"the step was not killed at its limit ({took:.0f}s)"
    assert any(ln.startswith("FAIL  import (timed out after 2s)") for ln in lines), lines
    assert (logdir / "import.log").read_text().splitlines()[-1] == "# timed out after 2s"
    assert "SKIP  device (after the failed import step)" in lines and lines[-1] == "NO-GO"


def test_the_budget_bounds_the_run(tmp_path):
    """With a budget smaller than the steps need, the steps that no longer fit are skipped and the
    run still ends with its verdict."""
    wrapper = tmp_path / "slowpython"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"import torch"*) sleep 120;; esac\nexec {sys.executable} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    r, logdir, took = run_check(tmp_path, python=str(wrapper), budget=9)
    lines = summary(logdir)
    # environment gets the 4 s left of the budget (9 s less the 5 s margin), then nothing is left.
    assert lines[0].startswith("FAIL  environment (timed out after 4s)"), lines
    assert "SKIP  import (no time left in the 9s budget)" in lines and lines[-1] == "NO-GO"
    assert took < 40
