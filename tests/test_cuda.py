"""CUDA tests of rnnfused: every kernel path (RNNFUSED_KERNEL=stepwise|persistent) against
nn.RNN on the GPU (cuDNN) and against a float64 reference (the same weights in nn.RNN on the CPU).

The comparison rule is in tests/support.py, shared with the emulated tests
(tests/test_emulated.py), which run this matrix's CUDA code path on the CPU under the emulator.
"""
import itertools

import pytest
import torch
import rnnfused
from support import check_errors, check_eval_mode_backward, compare, make, names, op_args, rand, run

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not rnnfused.built_with_cuda(),
    reason="needs a CUDA device and a CUDA build of rnnfused",
)

KERNELS = ["stepwise", "persistent"]
@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    monkeypatch.setenv("RNNFUSED_KERNEL", request.param)
    return request.param


@pytest.fixture(autouse=True)
def no_tf32():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ------------------------------------------------------------------------------------------------
# Feature matrix, float32 (tight), for each kernel path.

@pytest.mark.parametrize("num_layers,nonlinearity,bias,batch_first,bidirectional", list(
    itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True], [False, True])))
def test_feature_matrix(kernel, num_layers, nonlinearity, bias, batch_first, bidirectional):
    kw = dict(input_size=5, hidden_size=33, num_layers=num_layers, nonlinearity=nonlinearity,
              bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    compare(kw, T=7, B=3, seed=num_layers)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("h0", [True, False])
def test_h0_and_unbatched(kernel, bidirectional, h0):
    kw = dict(input_size=4, hidden_size=17, num_layers=2, bidirectional=bidirectional)
    compare(kw, T=6, B=4, h0=h0)
    compare(kw, T=6, B=1, h0=h0, unbatched=True)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_packed(kernel, enforce_sorted, bidirectional, nonlinearity):
    lengths = [9, 7, 7, 4, 1] if enforce_sorted else [4, 9, 1, 7, 7]
    kw = dict(input_size=6, hidden_size=24, num_layers=2, bidirectional=bidirectional,
              nonlinearity=nonlinearity)
    compare(kw, T=9, B=5, lengths=torch.tensor(lengths), enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("H", [1, 33, 1000])
@pytest.mark.parametrize("B", [1, 3, 300])
def test_odd_sizes(kernel, H, B):
    kw = dict(input_size=7, hidden_size=H, bidirectional=(H == 33))
    compare(kw, T=5, B=B, seed=H + B, scale=0.5)


def test_long_sequence(kernel):
    kw = dict(input_size=8, hidden_size=64, num_layers=1, bidirectional=True)
    compare(kw, T=600, B=4, scale=0.5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True])
def test_dtypes(kernel, dtype, packed):
    kw = dict(input_size=10, hidden_size=40, num_layers=2, bidirectional=True)
    lengths = torch.tensor([20, 15, 15, 8, 3]) if packed else None
    compare(kw, T=20, B=5, dtype=dtype, lengths=lengths, scale=0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_larger(kernel, dtype):
    kw = dict(input_size=32, hidden_size=300, num_layers=1)
    compare(kw, T=50, B=16, dtype=dtype, scale=0.5)


# ------------------------------------------------------------------------------------------------
# Kernel selection.

def test_kernel_name_follows_env(monkeypatch):
    for k in KERNELS:
        monkeypatch.setenv("RNNFUSED_KERNEL", k)
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            for bwd in (False, True):
                assert rnnfused.cuda_kernel_name(8, 64, dtype, bwd) == k
    monkeypatch.setenv("RNNFUSED_KERNEL", "auto")
    assert rnnfused.cuda_kernel_name(8, 64, torch.float32, False) == "persistent"
    # W_hh of 20000^2 floats (1.6 GB) fits on no chip: auto falls back, forcing raises clearly.
    assert rnnfused.cuda_kernel_name(2, 20000, torch.float32, False) == "stepwise"
    monkeypatch.setenv("RNNFUSED_KERNEL", "persistent")
    with pytest.raises(RuntimeError, match="persistent"):
        rnnfused.cuda_kernel_name(2, 20000, torch.float32, False)
    monkeypatch.setenv("RNNFUSED_KERNEL", "bogus")
    with pytest.raises(RuntimeError, match="RNNFUSED_KERNEL"):
        rnnfused.cuda_kernel_name(2, 64, torch.float32, False)


def test_auto_runs(monkeypatch):
    monkeypatch.setenv("RNNFUSED_KERNEL", "auto")
    compare(dict(input_size=5, hidden_size=48, bidirectional=True), T=8, B=3)


# ------------------------------------------------------------------------------------------------
# Ops directly: empty sizes, gradcheck, opcheck.

@pytest.mark.parametrize("reverse", [False, True])
def test_empty_sizes(kernel, reverse):
    x, h0, w_ih, w_hh, b_ih, b_hh, _ = op_args(0, 3, 2, 5)
    out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
    assert out.shape == (0, 3, 5)
    torch.testing.assert_close(hn, h0)
    gh = torch.randn_like(h0)
    r = rnnfused.ops.rnn_layer_backward(None, gh, x, h0, w_ih, w_hh, out, None, False, reverse,
                             [True, True, True, True])
    torch.testing.assert_close(r[1], gh)
    x, h0, w_ih, w_hh, b_ih, b_hh, _ = op_args(4, 0, 2, 5)
    out, hn = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, None, False, reverse)
    assert out.shape == (4, 0, 5) and hn.shape == (0, 5)


@pytest.mark.parametrize("relu,reverse,lengths", [
    (False, False, None), (True, False, None), (False, True, [4, 2, 0]), (True, True, [3, 4, 1])])
def test_gradcheck(kernel, relu, reverse, lengths):
    x, h0, w_ih, w_hh, b_ih, b_hh, ln = op_args(4, 3, 2, 5, lengths=lengths)
    if relu:  # keep pre-activations away from the kink at 0
        b_ih = b_ih + 0.3

    def f(x, h0, w_ih, w_hh, b_ih, b_hh):
        return rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ln, relu, reverse)

    inputs = [t.detach().requires_grad_(True) for t in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_opcheck(kernel, dtype):
    x, h0, w_ih, w_hh, b_ih, b_hh, ln = op_args(5, 3, 4, 6, dtype=dtype, lengths=[5, 3, 2])
    torch.library.opcheck(torch.ops.rnnfused.rnn_layer.default,
                          (x, h0, w_ih, w_hh, b_ih, b_hh, ln, False, True))
    out, _ = rnnfused.ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, ln, False, True)
    go, gh = torch.randn_like(out), torch.randn_like(h0)
    torch.library.opcheck(torch.ops.rnnfused.rnn_layer_backward.default,
                          (go, gh, x, h0, w_ih, w_hh, out, ln, False, True,
                           [True, True, True, True]))


# ------------------------------------------------------------------------------------------------
# Modes, streams, devices, graphs.

def test_eval_mode_backward(kernel):
    """cuDNN refuses RNN backward in eval mode; ours must work (checked against float64 CPU)."""
    check_eval_mode_backward("cuda")


def test_non_default_stream(kernel):
    kw = dict(input_size=5, hidden_size=40, num_layers=2)
    _, fused, _ = make(4, "cuda", torch.float32, **kw)
    x = rand((12, 4, 5), 7)
    h0 = rand((2, 4, 40), 8, 0.5)
    base = run(fused, x, h0, "cuda", torch.float32)
    for p in fused.parameters():
        p.grad = None
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        other = run(fused, x, h0, "cuda", torch.float32)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    for a, b in zip(base, other):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_second_gpu(kernel):
    kw = dict(input_size=5, hidden_size=40, bidirectional=True)
    rnn, fused, ref = make(5, "cuda:1", torch.float32, **kw)
    x = rand((8, 3, 5), 9)
    h0 = rand((2, 3, 40), 10, 0.5)
    ours = run(fused, x, h0, "cuda:1", torch.float32)
    theirs = run(rnn, x, h0, "cuda:1", torch.float32)
    refr = run(ref, x, h0, "cpu", torch.float64)
    check_errors(ours, theirs, refr, names(ref, True), torch.float32)


@pytest.mark.parametrize("H", [48, 300])  # 300: the persistent kernel needs a CTA group (G > 1)
def test_cuda_graph_capture(kernel, H):
    kw = dict(input_size=6, hidden_size=H, num_layers=2, bidirectional=True)
    _, fused, _ = make(6, "cuda", torch.float32, **kw)
    params = list(fused.parameters())
    static_x = rand((10, 4, 6), 11).float().cuda().requires_grad_(True)
    static_h0 = rand((4, 4, H), 12, 0.5).float().cuda().requires_grad_(True)
    static_go = rand((10, 4, 2 * H), 13).float().cuda()

    def step():
        out, hn = fused(static_x, static_h0)
        loss = (out * static_go).sum() + hn.sum()
        grads = torch.autograd.grad(loss, [static_x, static_h0] + params)
        return [out, hn] + list(grads)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up outside capture (plans, allocator)
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = step()
    for seed in (20, 30):
        with torch.no_grad():
            static_x.copy_(rand((10, 4, 6), seed).float().cuda())
            static_h0.copy_(rand((4, 4, H), seed + 1, 0.5).float().cuda())
            static_go.copy_(rand((10, 4, 2 * H), seed + 2).float().cuda())
        g.replay()
        torch.cuda.synchronize()
        eager = step()
        for a, b in zip(static_out, eager):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Packed input without a host sync (the batch sizes reach the device in one asynchronous copy
# from pinned memory, csrc/host/packing.cpp), and captured into a CUDA graph.

# Before torch 2.10 the batch sizes take the pageable copy (csrc/host/packing.cpp: a pinned block
# could be recycled under a captured graph), which syncs and which a capture refuses.
pinned_packing = pytest.mark.skipif(tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 10),
                                    reason="packed input copies its batch sizes asynchronously from torch 2.10")


def _packed_inputs(T, B, I, H, seed):
    lengths = torch.tensor([T, T - 2, T - 2, 3, 1][:B])
    x = rand((T, B, I), seed).float().cuda().requires_grad_(True)
    h0 = rand((2, B, H), seed + 1, 0.5).float().cuda().requires_grad_(True)
    return x, h0, torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)


@pinned_packing
def test_packed_without_host_sync(kernel):
    kw = dict(input_size=6, hidden_size=40, num_layers=2)
    rnn, fused, _ = make(7, "cuda", torch.float32, **kw)
    x, h0, packed = _packed_inputs(9, 5, 6, 40, 14)  # packing itself may sync: outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, hn = fused(packed, h0)
        grads = torch.autograd.grad(out.data.sum() + hn.sum(), [x, h0])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref_out, ref_hn = rnn(packed, h0)
    ref_grads = torch.autograd.grad(ref_out.data.sum() + ref_hn.sum(), [x, h0])
    torch.testing.assert_close(out.data, ref_out.data, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hn, ref_hn, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pinned_packing
def test_cuda_graph_capture_packed(kernel):
    """Packed input (fixed batch sizes) captured into a CUDA graph, forward and backward, replayed
    on new data: the batch sizes' copy is captured too (from a pinned buffer the caching host
    allocator keeps for the graph)."""
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    kw = dict(input_size=6, hidden_size=40, num_layers=2)
    _, fused, _ = make(8, "cuda", torch.float32, **kw)
    lengths = torch.tensor([9, 7, 7, 3, 1])

    def packed_rows(seed):
        return pack_padded_sequence(rand((9, 5, 6), seed).float().cuda(), lengths, enforce_sorted=False)

    p0 = packed_rows(15)
    data = p0.data.detach().clone().requires_grad_(True)
    static_in = PackedSequence(data, p0.batch_sizes, p0.sorted_indices, p0.unsorted_indices)
    h0 = rand((2, 5, 40), 16, 0.5).float().cuda().requires_grad_(True)

    def step():
        out, hn = fused(static_in, h0)
        return [out.data, hn] + list(torch.autograd.grad(out.data.sum() + (hn * hn).sum(), [data, h0]))

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up outside capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = step()
    for seed in (40, 50):
        with torch.no_grad():
            data.copy_(packed_rows(seed).data)
            h0.copy_(rand((2, 5, 40), seed + 1, 0.5).float().cuda())
        g.replay()
        torch.cuda.synchronize()
        for a, b in zip(static_out, step()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
