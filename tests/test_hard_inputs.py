"""Hard inputs: random configurations (hypothesis), empty batches, length-1 sequences, NaN/Inf, a
100 000-step sequence, the memory saved for backward, memory over many iterations, and two
threads at once. The reference is always nn.RNN: same outputs, same exceptions, same NaNs."""
import gc
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from rnnfused import FusedRNN
from support import make_pair


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _fwd_bwd(model, x, hx):
    """(out, h_n, grad x, grad hx, grads of params) for a fixed random projection of the outputs;
    or the exception type when the forward raises."""
    for p in model.parameters():
        p.grad = None
    if isinstance(x, PackedSequence):
        data = x.data.detach().clone().requires_grad_()
        x_in = PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
        leaf = data
    else:
        x_in = leaf = x.detach().clone().requires_grad_()
    hx_in = None if hx is None else hx.detach().clone().requires_grad_()
    try:
        out, h = model(x_in, hx_in)
    except Exception as e:  # compared with nn.RNN's exception by the caller
        return type(e)
    out_t = out.data if isinstance(out, PackedSequence) else out
    g = torch.Generator().manual_seed(5)
    loss = (out_t * torch.randn(out_t.shape, generator=g, dtype=out_t.dtype)).sum()
    loss = loss + (h * torch.randn(h.shape, generator=g, dtype=h.dtype)).sum()
    if loss.requires_grad:
        loss.backward()
    grads = [leaf.grad, None if hx_in is None else hx_in.grad] + [p.grad for p in model.parameters()]
    return [out_t.detach(), h.detach()] + grads


def _assert_match(ours, theirs, dtype, equal_nan=False):
    if isinstance(theirs, type):
        assert ours is theirs, f"nn.RNN raised {theirs.__name__}, FusedRNN gave {ours}"
        return
    assert not isinstance(ours, type), f"FusedRNN raised {ours.__name__}, nn.RNN did not"
    tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if b is None:
            assert a is None or not a.any(), i
            continue
        assert a is not None and a.shape == b.shape and a.dtype == b.dtype, (i, a, b)
        torch.testing.assert_close(a, b, equal_nan=equal_nan, **tol)


@st.composite
def rnn_cases(draw):
    cfg = dict(
        num_layers=draw(st.integers(1, 3)),
        nonlinearity=draw(st.sampled_from(["tanh", "relu"])),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
    )
    I, H = draw(st.integers(1, 6)), draw(st.integers(1, 9))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    T, B = draw(st.integers(1, 7)), draw(st.integers(0, 4))
    form = draw(st.sampled_from(["batched", "unbatched", "packed"] if B > 0 else ["batched"]))
    with_hx = draw(st.booleans())
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B)) if form == "packed" else None
    seed = draw(st.integers(0, 2**16))
    return cfg, I, H, dtype, T, B, form, with_hx, lengths, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnn_cases())
def test_random_configs_match_nn_rnn(case):
    cfg, I, H, dtype, T, B, form, with_hx, lengths, seed = case
    rnn, fused = make_pair(I, H, dtype=dtype, seed=seed, **cfg)
    g = torch.Generator().manual_seed(seed + 1)
    D = 2 if cfg["bidirectional"] else 1
    if form == "unbatched":
        x = torch.randn(T, I, generator=g, dtype=dtype)
        hx = torch.randn(cfg["num_layers"] * D, H, generator=g, dtype=dtype) if with_hx else None
    else:
        x = torch.randn(T, B, I, generator=g, dtype=dtype)
        hx = torch.randn(cfg["num_layers"] * D, B, H, generator=g, dtype=dtype) if with_hx else None
        if form == "packed":
            x = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        elif cfg["batch_first"]:
            x = x.transpose(0, 1).contiguous()
    _assert_match(_fwd_bwd(fused, x, hx), _fwd_bwd(rnn, x, hx), dtype)


# ------------------------------------------------------------------------------------------------
# Empty batches and length-1 sequences: the same shapes as nn.RNN, or the same exception type.

EDGE_CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(batch_first=True, nonlinearity="relu"),
]


@pytest.mark.parametrize("cfg", EDGE_CONFIGS, ids=["plain", "2layer-bidir", "batch_first-relu"])
@pytest.mark.parametrize(
    "T, B, unbatched",
    [(5, 0, False), (1, 3, False), (1, 1, False), (1, 0, False), (0, 3, False), (0, 0, False),
     (1, None, True), (0, None, True)],
)
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
def test_empty_batch_and_length_one_like_nn_rnn(cfg, T, B, unbatched, with_hx):
    rnn, fused = make_pair(3, 4, **cfg)
    D = 2 if rnn.bidirectional else 1
    L = rnn.num_layers * D
    if unbatched:
        x = torch.randn(T, 3)
        hx = torch.randn(L, 4) if with_hx else None
    else:
        x = torch.randn((B, T, 3) if rnn.batch_first else (T, B, 3))
        hx = torch.randn(L, B, 4) if with_hx else None
    theirs = _fwd_bwd(rnn, x, hx)
    ours = _fwd_bwd(fused, x, hx)
    _assert_match(ours, theirs, torch.float32)


# ------------------------------------------------------------------------------------------------
# NaN and Inf propagate exactly where nn.RNN's do (forward and backward).


WHERE = ["input-nan", "input-inf", "hx-nan", "weight-nan", "grad-only"]


def _nan_case(nonlinearity, where):
    rnn, fused = make_pair(4, 6, num_layers=2, bidirectional=True, nonlinearity=nonlinearity)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 3, 4, generator=g)
    hx = torch.randn(4, 3, 6, generator=g)
    if where == "input-nan":
        x[3, 1, 2] = float("nan")
    elif where == "input-inf":
        x[2, 0, 1] = float("inf")
        x[5, 2, 3] = float("-inf")
    elif where == "hx-nan":
        hx[1, 2, 4] = float("nan")
    elif where == "weight-nan":
        with torch.no_grad():
            rnn.weight_hh_l1[2, 3] = float("nan")  # shared with fused
    theirs = _fwd_bwd(rnn, x, hx)
    ours = _fwd_bwd(fused, x, hx)
    all_finite = all(torch.isfinite(t).all() for t in theirs if t is not None)
    # grad-only: all finite, the masks below are empty and must stay so; else something is not.
    assert all_finite == (where == "grad-only")
    return ours, theirs


CASES = [(act, w) for act in ("tanh", "relu") for w in WHERE]


@pytest.mark.parametrize("nonlinearity, where", CASES)
def test_nan_inf_patterns_like_nn_rnn(nonlinearity, where):
    """NaN and Inf land in exactly the same elements of the outputs and of every gradient."""
    ours, theirs = _nan_case(nonlinearity, where)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert torch.equal(torch.isnan(a), torch.isnan(b)), f"NaN pattern differs in result {i}"
        assert torch.equal(torch.isinf(a), torch.isinf(b)), f"Inf pattern differs in result {i}"


@pytest.mark.parametrize("nonlinearity, where", CASES)
def test_finite_values_around_nan_inf_like_nn_rnn(nonlinearity, where):
    """Where nn.RNN's results are finite, ours are the same numbers."""
    ours, theirs = _nan_case(nonlinearity, where)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        fin = torch.isfinite(b)
        torch.testing.assert_close(a[fin], b[fin], atol=2e-5, rtol=1e-4, msg=f"result {i}")


# ------------------------------------------------------------------------------------------------
# Memory.


def _saved_bytes(model, x, hx=None):
    """Bytes of distinct floating-point storages autograd keeps for backward
    (saved_tensors_hooks): the activations. The module's own parameters are left out (saving a
    reference to a parameter costs no memory; FusedRNN also keeps its biases, for double
    backward), and so is integer bookkeeping (lengths, batch_sizes: O(T + B) values)."""
    storages = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if not t.is_floating_point() or t.untyped_storage().data_ptr() in params:
            return t
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, h = model(x, hx)
    return sum(storages.values())


SAVED_CFGS = [
    dict(), dict(num_layers=3, bidirectional=True), dict(nonlinearity="relu", batch_first=True, num_layers=2),
    dict(bias=False),
]
SAVED_IDS = ["plain", "3layer-bidir", "relu-batch_first", "nobias"]
LENGTHS = [40, 33, 20, 20, 7, 1]


@pytest.mark.parametrize("cfg", SAVED_CFGS, ids=SAVED_IDS)
def test_saved_activations_no_larger_than_nn_rnn(cfg):
    rnn, fused = make_pair(16, 32, **cfg)
    x = torch.randn(6, 40, 16) if rnn.batch_first else torch.randn(40, 6, 16)
    x.requires_grad_()
    ours, theirs = _saved_bytes(fused, x), _saved_bytes(rnn, x)
    assert 0 < ours <= theirs, f"FusedRNN saves {ours} bytes, nn.RNN {theirs}"


def _packed_saved(cfg):
    rnn, fused = make_pair(16, 32, **cfg)
    x = pack_padded_sequence(torch.randn(40, 6, 16, requires_grad=True), torch.tensor(LENGTHS))
    return _saved_bytes(fused, x), _saved_bytes(rnn, x)


@pytest.mark.parametrize("cfg", SAVED_CFGS, ids=SAVED_IDS)
def test_saved_activations_packed_no_larger_than_nn_rnn(cfg):
    ours, theirs = _packed_saved(cfg)
    assert 0 < ours <= theirs, f"FusedRNN saves {ours} bytes, nn.RNN {theirs}"


_LONG_SEQUENCE_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from torch import nn
    from rnnfused import FusedRNN
    torch.set_num_threads(1)
    T, B, I, H = 100_000, 2, 4, 8
    torch.manual_seed(0)
    rnn = nn.RNN(I, H)
    fused = FusedRNN.from_rnn(rnn)
    x = torch.randn(T, B, I)
    fused(x[:10])  # warm-up: first-call allocations are not the sequence's
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, peak so far
    xg = x.clone().requires_grad_()
    out, h = fused(xg)
    (out.sum() + h.sum()).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        _, ref_h = rnn(x)  # nn.RNN's numbers, measured after the peak above
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(xg.grad).all() and fused.weight_hh_l0.grad.abs().sum() > 0
    print((peak - base) * 1024, out.numel() * out.element_size())
    """
)


@pytest.mark.slow
def test_very_long_sequence_memory_bounded():
    """T = 100 000 forward and backward: the peak RSS growth stays within a few output-sized
    buffers (the input's copy and gradient, output, its gradient, dz), not per-step allocations
    (nn.RNN's autograd graph holds several tensors per step)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _LONG_SEQUENCE_SCRIPT], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth, out_bytes = map(int, proc.stdout.split()[-2:])
    assert out_bytes == 100_000 * 2 * 8 * 4
    assert growth <= 8 * out_bytes, f"peak RSS grew {growth / 2**20:.1f} MiB for a {out_bytes / 2**20:.1f} MiB output"


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_memory_growth_over_1000_training_iterations():
    torch.manual_seed(0)
    model = FusedRNN(8, 16, num_layers=2, bidirectional=True)
    head = nn.Linear(32, 1)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=1e-3)
    x, y = torch.randn(20, 4, 8), torch.randn(20, 4, 1)

    def step():
        opt.zero_grad()
        out, h = model(x)
        loss = ((head(out) - y) ** 2).mean() + h.pow(2).mean()
        loss.backward()
        opt.step()

    for _ in range(100):
        step()
    gc.collect()
    before = _rss_bytes()
    for _ in range(1000):
        step()
    gc.collect()
    growth = _rss_bytes() - before
    # A leak of one (T, B, H) float tensor per iteration would be 1000 * 20*4*32*4 B = 10 MiB.
    assert growth < 4 * 2**20, f"RSS grew {growth / 2**20:.2f} MiB over 1000 iterations"


# ------------------------------------------------------------------------------------------------
# Two Python threads at once.


def test_two_threads_give_correct_results():
    cfgs = [dict(num_layers=2, bidirectional=True), dict(nonlinearity="relu", num_layers=3)]
    cases = []
    for i, cfg in enumerate(cfgs):
        rnn, fused = make_pair(6, 24, seed=i, **cfg)
        x = torch.randn(30, 5, 6, generator=torch.Generator().manual_seed(10 + i))
        cases.append((fused, x, _fwd_bwd(rnn, x, None)))
    # A module shared by both threads, forward only (no .grad races).
    shared_rnn, shared = make_pair(6, 24, seed=7, num_layers=2)
    xs = torch.randn(30, 5, 6)
    with torch.no_grad():
        shared_ref = shared_rnn(xs)

    errors = []
    barrier = threading.Barrier(2)

    def worker(i):
        fused, x, ref = cases[i]
        try:
            barrier.wait()
            for _ in range(30):
                _assert_match(_fwd_bwd(fused, x, None), ref, torch.float32)
                with torch.no_grad():
                    out, h = shared(xs)
                torch.testing.assert_close(out, shared_ref[0], atol=2e-5, rtol=1e-4)
                torch.testing.assert_close(h, shared_ref[1], atol=2e-5, rtol=1e-4)
        except BaseException as e:  # re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
