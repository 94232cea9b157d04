"""The CUDA code path of rnnfused, run on the CPU under the SIMT emulator (docs/emulator.md).

FusedRNN itself is called on CPU tensors; its calls of rnnfused::<op> are routed to the
test-only build rnnfused_emu::<op>, whose "CUDA" path runs the real heuristic, plans, launchers
and kernels (csrc/cuda) under the emulator. The matrix mirrors tests/test_cuda.py, for both
kernels (RNNFUSED_KERNEL), on an emulated H100 (W_hh fits one CTA: G = 1, except at H = 257) and
on a tiny device where W_hh needs a group of CTAs (G > 1, cooperative launch, per-step barrier),
against nn.RNN on the CPU and a float64 reference (the rule in tests/support.py).

    python -m pytest tests -m emulated
"""
import itertools

import pytest
import torch

import rnnfused
from rnnfused.reference import rnn_layer_ref
from support import check_errors, check_eval_mode_backward, compare, make, op_args, rand, run

import emu_support

pytestmark = [pytest.mark.emulated]

KERNELS = ["stepwise", "persistent"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the emulator runs on the calling thread anyway, and nn.RNN's per-step
    ops on a small shared CPU are slowed ~100x by spinning OpenMP threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=KERNELS)
def kernel(request):
    return request.param


def emu_compare(kernel, device, kw, T, B, **kwargs):
    with emulated_counted(kernel, device) as launches:
        compare(kw, T, B, device="cpu", **kwargs)
    return launches


class emulated_counted:
    """emu_support.emulated, recording the emulator's launches (to prove the path ran)."""

    def __init__(self, kernel, device, schedule="in-order", seed=1):
        self.cm = emu_support.emulated(device=device, schedule=schedule, seed=seed, kernel=kernel)

    names = ["cell_fwd_kernel", "cell_bwd_kernel", "step_kernel (forward)", "persist_kernel (forward)"]

    def __enter__(self):
        self.ctl = self.cm.__enter__()
        self.before = self.ctl.stats()
        self.before_names = {n: self.ctl.launches_of(n) for n in self.names}
        self.counts = {}
        return self.counts

    def __exit__(self, *exc):
        after = self.ctl.stats()
        self.counts["launches"] = after[0] - self.before[0]
        self.counts["cooperative"] = after[1] - self.before[1]
        for n in self.names:
            self.counts[n] = self.ctl.launches_of(n) - self.before_names[n]
        return self.cm.__exit__(*exc)


# ------------------------------------------------------------------------------------------------
# Feature matrix, float32, both kernels, G = 1 (H100).

@pytest.mark.parametrize("num_layers,nonlinearity,bias,batch_first,bidirectional", list(
    itertools.product([1, 2], ["tanh", "relu"], [True, False], [False, True], [False, True])))
def test_feature_matrix(kernel, num_layers, nonlinearity, bias, batch_first, bidirectional):
    kw = dict(input_size=5, hidden_size=33, num_layers=num_layers, nonlinearity=nonlinearity,
              bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    n = emu_compare(kernel, "h100", kw, T=6, B=3, seed=num_layers)
    assert n["launches"] > 0


# G > 1: the tiny device. float32 H = 33 and float64 H = 33 need 2 and 5 CTAs per group.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nonlinearity,bidirectional,num_layers", [
    ("tanh", True, 2), ("relu", False, 1), ("tanh", False, 1)])
def test_cta_groups(kernel, dtype, nonlinearity, bidirectional, num_layers):
    kw = dict(input_size=4, hidden_size=33, num_layers=num_layers, nonlinearity=nonlinearity,
              bidirectional=bidirectional)
    n = emu_compare(kernel, "tiny", kw, T=5, B=3, dtype=dtype, seed=7)
    if kernel == "persistent":
        assert n["cooperative"] > 0, "the tiny device must put W_hh on a group of CTAs"


@pytest.mark.parametrize("device", ["h100", "tiny"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("h0", [True, False])
def test_h0_and_unbatched(kernel, device, bidirectional, h0):
    kw = dict(input_size=4, hidden_size=17, num_layers=2, bidirectional=bidirectional)
    emu_compare(kernel, device, kw, T=5, B=4, h0=h0)
    emu_compare(kernel, device, kw, T=5, B=1, h0=h0, unbatched=True)


@pytest.mark.parametrize("device", ["h100", "tiny"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_packed(kernel, device, enforce_sorted, bidirectional, nonlinearity):
    lengths = [7, 5, 5, 3, 1] if enforce_sorted else [3, 7, 1, 5, 7]
    kw = dict(input_size=6, hidden_size=24, num_layers=2, bidirectional=bidirectional,
              nonlinearity=nonlinearity)
    emu_compare(kernel, device, kw, T=7, B=5, lengths=torch.tensor(lengths), enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("H", [1, 33, 130, 257])
@pytest.mark.parametrize("B", [1, 3, 9])
def test_odd_sizes(kernel, H, B):
    kw = dict(input_size=7, hidden_size=H, bidirectional=(H == 33))
    n = emu_compare(kernel, "h100", kw, T=4, B=B, seed=H + B, scale=0.5)
    if kernel == "persistent" and H == 257:  # 257 rows of float32 W_hh exceed one SM
        assert n["cooperative"] > 0


def test_long_sequence(kernel):
    kw = dict(input_size=8, hidden_size=40, num_layers=1, bidirectional=True)
    emu_compare(kernel, "tiny", kw, T=120, B=3, scale=0.5)


# ------------------------------------------------------------------------------------------------
# The other dtypes: float64 tight; float16 / bfloat16 within 2x nn.RNN's own error (nn.RNN on the
# CPU in the same dtype). H = 130 puts the half types on a CTA group on the tiny device.

@pytest.mark.parametrize("device", ["h100", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True])
def test_dtypes(kernel, device, dtype, packed):
    H = 33 if dtype == torch.float64 else 130
    kw = dict(input_size=10, hidden_size=H, num_layers=2, bidirectional=True)
    lengths = torch.tensor([12, 9, 9, 5, 2]) if packed else None
    n = emu_compare(kernel, device, kw, T=12, B=5, dtype=dtype, lengths=lengths, scale=0.5)
    if kernel == "persistent" and device == "tiny":
        assert n["cooperative"] > 0


# ------------------------------------------------------------------------------------------------
# Schedules: the same call under other schedules gives the same bits.

@pytest.mark.parametrize("device,kw,T,B", [
    ("tiny", dict(input_size=5, hidden_size=33, num_layers=2, bidirectional=True), 6, 3),
    ("h100", dict(input_size=5, hidden_size=130, num_layers=1, bidirectional=True, nonlinearity="relu"), 5, 9),
    ("h100", dict(input_size=5, hidden_size=257, num_layers=1), 4, 3),
])
def test_schedules_agree(kernel, device, kw, T, B):
    rnn, fused, _ = make(11, "cpu", torch.float32, **kw)
    x = rand((T, B, kw["input_size"]), 12, 0.7)
    results = []
    for schedule, seed in [("in-order", 1), ("reversed", 1), ("random", 1), ("random", 2)]:
        for p in fused.parameters():
            p.grad = None
        with emulated_counted(kernel, device, schedule=schedule, seed=seed):
            results.append(run(fused, x, None, "cpu", torch.float32))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b), "schedules disagree: a race or a missing barrier"


# ------------------------------------------------------------------------------------------------
# The op itself: per-item lengths nn.RNN cannot express (0 and T, unsorted), both directions,
# empty sizes, against the step-by-step reference.

@pytest.mark.parametrize("device", ["h100", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("relu,reverse,lengths", [
    (False, False, [5, 0, 3, 5, 1]), (True, True, [0, 5, 2, 5, 4]), (False, True, None)])
def test_op_lengths(kernel, device, dtype, relu, reverse, lengths):
    args = op_args(5, 5, 4, 33, dtype=dtype, seed=3, lengths=lengths, device="cpu")
    x, h0, w_ih, w_hh, b_ih, b_hh, ln = [a.requires_grad_(True) if a is not None and a.is_floating_point()
                                         else a for a in args]
    with emulated_counted(kernel, device):
        out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ln, relu, reverse)
        g = torch.autograd.grad((out * rand(out.shape, 4).to(dtype)).sum() + (hn * 0.7).sum(),
                                [x, h0, w_ih, w_hh, b_ih, b_hh])
    ref_out, ref_hn = rnn_layer_ref(x, h0, w_ih, w_hh, b_ih, b_hh, ln, relu, reverse)
    ref_g = torch.autograd.grad((ref_out * rand(out.shape, 4).to(dtype)).sum() + (ref_hn * 0.7).sum(),
                                [x, h0, w_ih, w_hh, b_ih, b_hh])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(out, ref_out, **tol)
    torch.testing.assert_close(hn, ref_hn, **tol)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("reverse", [False, True])
def test_empty_sizes(kernel, reverse):
    with emulated_counted(kernel, "h100"):
        x, h0, w_ih, w_hh, b_ih, b_hh, _ = op_args(0, 3, 2, 5, device="cpu")
        out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
        assert out.shape == (0, 3, 5)
        torch.testing.assert_close(hn, h0)
        gh = torch.randn_like(h0)
        r = rnnfused.ops.rnn_layer_backward(None, gh, x, h0, w_ih, w_hh, out, None, False, reverse, [True, True, True, True])
        torch.testing.assert_close(r[1], gh)
        x, h0, w_ih, w_hh, b_ih, b_hh, _ = op_args(4, 0, 2, 5, device="cpu")
        out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
        assert out.shape == (4, 0, 5) and hn.shape == (0, 5)
        x, h0, w_ih, w_hh, b_ih, b_hh, _ = op_args(1, 2, 3, 4, device="cpu")  # T = 1
        out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
    ref_out, ref_hn = rnn_layer_ref(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("relu,reverse,lengths", [(False, False, None), (True, True, [3, 4, 1])])
def test_gradcheck(kernel, relu, reverse, lengths):
    x, h0, w_ih, w_hh, b_ih, b_hh, ln = op_args(4, 3, 2, 5, lengths=lengths, device="cpu")
    if relu:  # keep pre-activations away from the kink at 0
        b_ih = b_ih + 0.3

    def f(x, h0, w_ih, w_hh, b_ih, b_hh):
        return rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ln, relu, reverse)

    inputs = [t.detach().requires_grad_(True) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    with emulated_counted(kernel, "tiny"):
        assert torch.autograd.gradcheck(f, inputs)


def test_eval_mode_and_kernel_choice(kernel, monkeypatch):
    """Backward in eval mode (cuDNN refuses it), and the launcher picks what RNNFUSED_KERNEL says."""
    ext = emu_support.extension()
    with emulated_counted(kernel, "h100"):
        for dtype in ("float32", "float64", "float16", "bfloat16"):
            for bwd in (False, True):
                assert ext.cuda_kernel_name(8, 64, dtype, bwd) == kernel
    with emulated_counted(None, "h100"):
        monkeypatch.delenv("RNNFUSED_KERNEL", raising=False)
        assert ext.cuda_kernel_name(8, 64, "float32", False) == "persistent"
        assert ext.cuda_kernel_name(2, 20000, "float32", False) == "stepwise"
        monkeypatch.setenv("RNNFUSED_KERNEL", "persistent")
        with pytest.raises(RuntimeError, match="persistent"):
            ext.cuda_kernel_name(2, 20000, "float32", False)
        monkeypatch.setenv("RNNFUSED_KERNEL", "bogus")
        with pytest.raises(RuntimeError, match="RNNFUSED_KERNEL"):
            ext.cuda_kernel_name(2, 64, "float32", False)
        monkeypatch.delenv("RNNFUSED_KERNEL")
    with emulated_counted(kernel, "tiny"):
        check_eval_mode_backward("cpu")


# ------------------------------------------------------------------------------------------------
# The fused cell step (device/cell.cuh): FusedRNNCell, and FusedRNN with the step input mode.

def _cell_run(cell, x, hx, dtype, seed=21):
    x = x.to(dtype).detach().requires_grad_(True)
    hx = None if hx is None else hx.to(dtype).detach().requires_grad_(True)
    out = cell(x, hx)
    w = rand(out.shape, seed).to(dtype)
    leaves = [x] + ([hx] if hx is not None else []) + list(cell.parameters())
    grads = torch.autograd.grad((out * w).sum(), leaves)
    return [t.detach().double() for t in [out, *grads]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("nonlinearity,bias,batched,with_hx", [
    ("tanh", True, True, True), ("relu", False, True, True), ("tanh", True, False, False),
    ("relu", True, True, False)])
def test_cell(dtype, nonlinearity, bias, batched, with_hx):
    """FusedRNNCell on the CUDA path vs nn.RNNCell in the same dtype and a float64 reference."""
    I, H, B = 40, 70, 5
    theirs_cell, ours_cell, ref = make(4, "cpu", dtype, module=torch.nn.RNNCell, input_size=I, hidden_size=H,
                                       bias=bias, nonlinearity=nonlinearity)
    x = rand((B, I) if batched else (I,), 5)
    hx = rand((B, H) if batched else (H,), 6, 0.5) if with_hx else None
    with emulated_counted(None, "h100") as n:
        ours = _cell_run(ours_cell, x, hx, dtype)
    assert n["cell_fwd_kernel"] == 1 and n["cell_bwd_kernel"] == 1
    theirs = _cell_run(theirs_cell, x, hx, dtype)
    refr = _cell_run(ref, x, hx, torch.float64)
    cell_names = ["output", "grad_input"] + (["grad_hx"] if with_hx else []) + [
        "grad_" + n for n, _ in ref.named_parameters()]
    if dtype in (torch.float32, torch.float64):  # tighter than the module's bound: one step
        check_errors(ours, None, refr, cell_names, dtype, tight=1e-5 if dtype == torch.float32 else 1e-12)
    else:
        check_errors(ours, theirs, refr, cell_names, dtype)


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_step_input_mode(kernel, T, bidirectional, monkeypatch):
    """FusedRNN with the input product fused into each step (the cell kernel) agrees with the
    hoisted mode and with nn.RNN."""
    kw = dict(input_size=6, hidden_size=33, num_layers=2, bidirectional=bidirectional)
    monkeypatch.setenv("RNNFUSED_INPUT_MODE", "hoist")
    hoisted = emu_compare(kernel, "tiny", kw, T=T, B=3, seed=9)
    monkeypatch.setenv("RNNFUSED_INPUT_MODE", "step")
    stepped = emu_compare(kernel, "tiny", kw, T=T, B=3, seed=9)
    # Stepped: one cell kernel per step and layer-direction, no recurrence kernel in the forward.
    D = 2 if bidirectional else 1
    assert stepped["cell_fwd_kernel"] == 2 * D * T and hoisted["cell_fwd_kernel"] == 0
    recurrence = "step_kernel (forward)" if kernel == "stepwise" else "persist_kernel (forward)"
    assert stepped[recurrence] == 0 and hoisted[recurrence] > 0
