"""What a real GPU's driver can refuse, under the SIMT emulator (docs/emulator.md): the emulated
runtime (csrc/emu/runtime_emu.h) answers as a driver would — occupancy, code for the device's
compute capability, cooperative launches refused where the grid cannot be co-resident — and its
test hooks make it grant fewer SMs than the device reports (as MPS or a green context would),
refuse launches with a given reason, or answer a stricter occupancy than CUDA's rule written out.

Through FusedRNN itself on CPU tensors (the CUDA code path, routed as in tests/test_emulated.py):
- a refused cooperative launch falls back to the stepwise kernel in auto mode, with one warning
  naming the reason, and the plan remembers it (no second attempt); with
  RNNFUSED_KERNEL=persistent it raises; a refusal that invalidated a graph capture raises;
- the persistent kernel's plan follows the driver's occupancy, not the formula;
- a device whose compute capability the build has no code for raises at the first CUDA call,
  naming the capabilities the build has and how to rebuild;
- the group barrier backs off while it spins, and holds over a long sequence (G > 1).
"""
import ast
from pathlib import Path

import pytest
import torch

import rnnfused
from support import check_errors, compare, make, names, rand, run

import emu_support

pytestmark = [pytest.mark.emulated]

ROOT = Path(__file__).resolve().parents[1]
TOO_LARGE = "cudaErrorCooperativeLaunchTooLarge: too many blocks in cooperative launch"
# float32, H = 33 on the tiny device: W_hh needs a group of 2 CTAs (G > 1, cooperative launch).
GROUP_KW = dict(input_size=4, hidden_size=33, num_layers=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def auto_kernel(monkeypatch):
    monkeypatch.delenv("RNNFUSED_KERNEL", raising=False)


def refusal_warnings(capfd):
    """The refusal warnings written since the last call. A warning of a C++ op called through
    torch.ops is c10's (TORCH_WARN), written to stderr, not a Python warning."""
    return [ln for ln in capfd.readouterr().err.splitlines() if "refused the cooperative launch" in ln]


def counters(c):
    """(cooperative launches run, cooperative launches attempted, refused, persistent launches,
    stepwise launches)"""
    attempts, refused = c.driver_stats()
    persist = c.launches_of("persist_kernel (forward)") + c.launches_of("persist_kernel (backward)")
    step = c.launches_of("step_kernel (forward)") + c.launches_of("step_kernel (backward)")
    return c.stats()[1], attempts, refused, persist, step


# ------------------------------------------------------------------------------------------------
# A refused cooperative launch.

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fewer_sms_than_planned_falls_back(auto_kernel, dtype, capfd):
    """The plan counts the tiny device's 8 SMs; the driver grants launches one (MPS): the group's
    cooperative launch is refused, auto runs the stepwise kernel with one warning naming the
    reason, and later calls do not ask again."""
    with emu_support.emulated(device="tiny") as c:
        c.limit_sms(1)
        c.reset_stats()
        refusal_warnings(capfd)
        compare(GROUP_KW, T=5, B=9, dtype=dtype, device="cpu", seed=3)
        msgs = refusal_warnings(capfd)
        assert len(msgs) == 1, msgs  # forward and backward refused, one warning per reason
        assert TOO_LARGE in msgs[0] and "stepwise" in msgs[0], msgs[0]
        coop, attempts, refused, persist, step = counters(c)
        assert (coop, attempts, refused, persist) == (0, 2, 2, 0) and step > 0
        # Again: the plan remembers the refusal; no attempt, no warning, the same numbers.
        compare(GROUP_KW, T=5, B=9, dtype=dtype, device="cpu", seed=4)
        assert refusal_warnings(capfd) == []
        assert c.driver_stats() == [2, 2]
        name = str(dtype).replace("torch.", "")
        assert emu_support.extension().cuda_kernel_name(9, 33, name, False) == "stepwise"


def test_forced_persistent_refused_raises(monkeypatch, capfd):
    monkeypatch.setenv("RNNFUSED_KERNEL", "persistent")
    with emu_support.emulated(device="tiny") as c:
        c.limit_sms(1)
        c.reset_stats()
        rnn, fused, _ = make(1, "cpu", torch.float32, **GROUP_KW)
        x = rand((5, 9, 4), 2).float()
        with pytest.raises(RuntimeError, match="RNNFUSED_KERNEL=persistent, but the driver refused the "
                                               "cooperative launch.*" + TOO_LARGE):
            fused(x)
        # The failed plan stays: the forced kernel keeps raising, now before any launch.
        with pytest.raises(RuntimeError, match="RNNFUSED_KERNEL=persistent.*the driver refused its "
                                               "cooperative launch"):
            fused(x)
        assert c.driver_stats()[0] == 1
        monkeypatch.setenv("RNNFUSED_KERNEL", "auto")  # auto: the stepwise kernel, silently
        refusal_warnings(capfd)
        out, _ = fused(x)
        assert refusal_warnings(capfd) == []
        torch.testing.assert_close(out, rnn(x)[0], rtol=1e-5, atol=1e-6)


def test_injected_refusal_reason_is_named(auto_kernel, capfd):
    why = "cudaErrorNotPermitted: operation not permitted"
    with emu_support.emulated(device="tiny") as c:
        c.refuse_cooperative(why, 1, False)
        c.reset_stats()
        refusal_warnings(capfd)
        compare(GROUP_KW, T=4, B=3, device="cpu", seed=5)
        msgs = refusal_warnings(capfd)
        assert len(msgs) == 1 and "persistent forward kernel" in msgs[0] and why in msgs[0], msgs
        coop, attempts, refused, persist, step = counters(c)
        # The forward was refused (the stepwise kernel ran); the backward's launch was taken.
        assert (attempts, refused) == (2, 1) and coop == 1
        assert c.launches_of("persist_kernel (backward)") == 1 and c.launches_of("step_kernel (forward)") == 4


def test_refusal_that_invalidated_a_capture_raises(auto_kernel):
    why = "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing"
    with emu_support.emulated(device="tiny") as c:
        c.refuse_cooperative(why, 1, True)
        c.reset_stats()
        rnn, fused, _ = make(1, "cpu", torch.float32, **GROUP_KW)
        x = rand((4, 3, 4), 2).float()
        with pytest.raises(RuntimeError, match="refused during CUDA-graph capture.*invalidated the capture"):
            fused(x)
        out, _ = fused(x)  # captured again: this size now runs the stepwise kernel
        torch.testing.assert_close(out, rnn(x)[0], rtol=1e-5, atol=1e-6)
        assert c.driver_stats()[0] == 1


# ------------------------------------------------------------------------------------------------
# The plan follows the driver's occupancy.

def test_plan_uses_the_driver_occupancy(auto_kernel):
    ext = emu_support.extension()
    with emu_support.emulated(device="tiny") as c:
        info = ext.cuda_persistent_plan(9, 33, "float32", False)
        assert info["ok"] == 1 and info["G"] > 1, info
        assert info["driver_per_sm"] == info["rule_per_sm"] >= 1
        assert info["ctas"] <= info["driver_per_sm"] * info["sm_count"]
    with emu_support.emulated(device="tiny") as c:
        # A driver stricter than the rule: no CTA of the kernel fits. The plan says so; auto never
        # tries the cooperative launch.
        c.cap_occupancy(0)
        c.reset_stats()
        info = ext.cuda_persistent_plan(9, 33, "float32", False)
        assert info["ok"] == 0 and "co-resident" in info["why"], info
        assert ext.cuda_kernel_name(9, 33, "float32", False) == "stepwise"
        compare(GROUP_KW, T=3, B=9, device="cpu", seed=6)
        assert c.driver_stats() == [0, 0]


def test_forced_persistent_without_driver_occupancy_raises_before_launching(monkeypatch):
    """Forced persistent where the driver's occupancy is 0 (CUDA's rule says 1): the plan follows
    the driver and the forced kernel raises with the reason, before any launch is tried."""
    monkeypatch.setenv("RNNFUSED_KERNEL", "persistent")
    with emu_support.emulated(device="tiny") as c:
        c.cap_occupancy(0)
        c.reset_stats()
        _, fused, _ = make(1, "cpu", torch.float32, **GROUP_KW)
        with pytest.raises(RuntimeError, match="RNNFUSED_KERNEL=persistent, but the persistent forward kernel "
                                               "cannot run batch 3, hidden_size 33 on this device: the 2\\+ CTAs "
                                               "per batch group cannot all be co-resident"):
            fused(rand((4, 3, 4), 2).float())
        assert c.driver_stats() == [0, 0] and c.stats()[0] == 0


# ------------------------------------------------------------------------------------------------
# Code for the device's compute capability.

def default_arch_list():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_CUDA_ARCHS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no DEFAULT_CUDA_ARCHS")


def test_emulation_build_has_the_default_archs():
    """The emulation build has no setup.py: csrc/cuda/archs.h's defaults stand in, and must be
    setup.py's default list."""
    entries = default_arch_list().split(";")
    sass = [int(a.replace("+PTX", "").replace(".", "")) for a in entries]
    ptx = [int(a.replace("+PTX", "").replace(".", "")) for a in entries if a.endswith("+PTX")]
    assert emu_support.extension().cuda_archs() == (sass, ptx)
    assert 70 not in sass and {75, 80, 90} <= set(sass) and ptx == [90]


def test_device_without_code_raises_at_first_cuda_call(auto_kernel):
    """A V100 (7.0) with the default build (7.5, 8.0, 9.0 and PTX of 9.0): the first CUDA call
    raises a RuntimeError naming the capability, what the build has and how to rebuild."""
    ext = emu_support.extension()
    with emu_support.emulated(device="v100") as c:
        c.reset_stats()
        _, fused, _ = make(1, "cpu", torch.float32, input_size=3, hidden_size=8)
        pattern = (r"no CUDA code for the emulated GPU 0 \(compute capability 7\.0\): it was compiled for "
                   r"compute capabilities 7\.5, 8\.0, 9\.0 \(machine code\) and PTX of 9\.0.*"
                   r"TORCH_CUDA_ARCH_LIST=\"7\.0\" pip install --no-build-isolation")
        with pytest.raises(RuntimeError, match=pattern):
            fused(rand((2, 3, 3), 1).float())
        with pytest.raises(RuntimeError, match=pattern):
            ext.cuda_kernel_name(3, 8, "float16", True)
        cell = rnnfused.FusedRNNCell(3, 8)
        with pytest.raises(RuntimeError, match=pattern):
            cell(rand((2, 3), 1).float())
        assert c.stats()[0] == 0  # nothing was launched


@pytest.mark.parametrize("kernel", ["stepwise", "persistent"])
def test_covered_older_device_runs(kernel):
    """A T4 (7.5: 40 SMs, 64 KiB of shared memory per SM, 1024 threads per SM) has code and runs
    both kernels; H = 130 in float32 needs a CTA group there."""
    with emu_support.emulated(device="t4", kernel=kernel) as c:
        c.reset_stats()
        compare(dict(input_size=5, hidden_size=130), T=3, B=4, device="cpu", seed=8, scale=0.5)
        if kernel == "persistent":
            assert c.stats()[1] > 0


# ------------------------------------------------------------------------------------------------
# The group barrier: backoff while spinning, and a long sequence.

def test_group_barrier_backs_off():
    with emu_support.emulated(device="tiny", kernel="persistent") as c:
        c.reset_stats()
        compare(GROUP_KW, T=4, B=3, device="cpu", seed=9)
        stats = c.stats()
        assert stats[1] > 0 and stats[8] > 0, "the spinning CTA must back off (__nanosleep)"
    with emu_support.emulated(device="tiny", kernel="stepwise") as c:
        c.reset_stats()
        compare(GROUP_KW, T=4, B=3, device="cpu", seed=9)
        assert c.stats()[8] == 0


def test_group_barrier_long_sequence():
    """The barrier stress case of the first GPU run (bench/gpu_check.sh), scaled to the emulator:
    a long sequence on CTA groups (G = 2, 3 batch groups; 200 steps where the other
    emulated tests stop at 120), under the random schedule with the
    memory model (a missing release or acquire reads stale state), bit for bit equal to the
    in-order schedule, and within the tests' numerical rule (tests/support.py) of nn.RNN and the
    float64 reference."""
    T, B = 200, 6
    kw = dict(input_size=4, hidden_size=33)
    rnn, fused, ref = make(13, "cpu", torch.float32, **kw)
    x = rand((T, B, 4), 14, 0.5)
    results = []
    for schedule in ("in-order", "random"):
        for p in fused.parameters():
            p.grad = None
        with emu_support.emulated(device="tiny", schedule=schedule, seed=3, kernel="persistent") as c:
            c.reset_stats()
            results.append(run(fused, x, None, "cpu", torch.float32))
            assert c.stats()[1] == 2  # forward and backward: one cooperative launch each
    for a, b in zip(*results):
        assert torch.equal(a, b), "schedules disagree over a long sequence: the group barrier"
    theirs = run(rnn, x, None, "cpu", torch.float32)
    refr = run(ref, x, None, "cpu", torch.float64)
    check_errors(results[0], theirs, refr, names(ref, False), torch.float32)
