"""The emulator's standalone checker (csrc/emu/check_main.cpp): the CUDA entry points under every
schedule, and under AddressSanitizer + UBSan (out-of-bounds global and shared memory, misaligned
vector loads) and ThreadSanitizer (races between CUDA threads and blocks) on smaller sets.
The mutation check (tools/emu_mutate.py, run by .ci/run) proves these catch real bugs."""
import pytest

import emu_support

pytestmark = [pytest.mark.emulated]


def _run(variant, *args):
    exe = emu_support.check_binary(variant)
    rc, out = emu_support.run_check(exe, *args, variant=variant)
    assert rc == 0, f"emu_check ({variant}) failed:\n{out[-8000:]}"
    assert "0 failed" in out
    return out


def test_all_cases_all_schedules():
    """Both kernels x fwd/bwd x four dtypes x G = 1 / G > 1 x lengths / reverse / relu, six
    schedules (in order, reversed, four random with preemption), bit-identical, vs float64."""
    out = _run("plain", "--schedules", "6")
    assert "cooperative" in out


def test_address_sanitizer():
    out = _run("asan", "--quick", "--schedules", "2")
    assert "AddressSanitizer" not in out and "runtime error" not in out


def test_thread_sanitizer():
    # The group barrier (persistent, G > 1 on the tiny device) and the stepwise kernel, in a
    # storage type of each width.
    for filt in ("f32-persistent-tiny", "f16-persistent-tiny", "f64-stepwise-h100"):
        out = _run("tsan", "--quick", "--schedules", "1", "--filter", filt)
        assert "ThreadSanitizer" not in out
