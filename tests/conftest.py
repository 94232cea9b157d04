"""Shared helpers: build nn.RNN / FusedRNN pairs with identical weights, run forward+backward
with fixed upstream gradients, and compare against nn.RNN and a float64 reference."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnnfused import FusedRNN

CPU_KERNELS = ["fused", "gemm"]

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """One intra-op thread for a module's tests (`pytestmark = usefixtures(...)`): on a small
    shared CPU, OpenMP's spinning threads make nn.RNN's per-step ops ~100x slower; the results
    do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=CPU_KERNELS)
def cpu_kernel(request, monkeypatch):
    """Run the test once per CPU kernel path (RNNFUSED_CPU_KERNEL), on the same inputs."""
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", request.param)
    return request.param


def make_pair(dtype=torch.float64, device="cpu", seed=0, **kwargs):
    """An nn.RNN and a FusedRNN with identical weights (fresh random, not zeros)."""
    torch.manual_seed(seed)
    ref = nn.RNN(**kwargs, device=device, dtype=dtype)
    fused = FusedRNN(**kwargs, device=device, dtype=dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def _tensor(out):
    return out.data if isinstance(out, PackedSequence) else out


def run_fwd_bwd(module, x, h0=None, seed=1):
    """Forward, then backward of a random projection of (output, h_n).

    Returns (output, h_n, grads) where grads = [d input, d h0 (if given), d param...] in the
    module's parameter order. x may be a tensor or a PackedSequence."""
    x_leaf = _tensor(x).detach().clone().requires_grad_(True)
    if isinstance(x, PackedSequence):
        inp = PackedSequence(x_leaf, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    else:
        inp = x_leaf
    leaves = [x_leaf]
    h = None
    if h0 is not None:
        h = h0.detach().clone().requires_grad_(True)
        leaves.append(h)
    out, hn = module(inp, h)
    out_t = _tensor(out)
    g = torch.Generator(device="cpu").manual_seed(seed)
    g_out = torch.randn(out_t.shape, generator=g, dtype=torch.float64).to(out_t)
    g_hn = torch.randn(hn.shape, generator=g, dtype=torch.float64).to(hn)
    loss = (out_t * g_out).sum() + (hn * g_hn).sum()
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return out_t.detach(), hn.detach(), [gr.detach() for gr in grads]


def assert_close_all(got, want, rtol, atol, what=""):
    out_g, hn_g, grads_g = got
    out_w, hn_w, grads_w = want
    torch.testing.assert_close(out_g, out_w.to(out_g.dtype), rtol=rtol, atol=atol, msg=f"{what} output")
    torch.testing.assert_close(hn_g, hn_w.to(hn_g.dtype), rtol=rtol, atol=atol, msg=f"{what} h_n")
    assert len(grads_g) == len(grads_w)
    for i, (a, b) in enumerate(zip(grads_g, grads_w)):
        assert not torch.isnan(a).any(), f"{what} grad {i} has NaN"
        torch.testing.assert_close(a, b.to(a.dtype), rtol=rtol, atol=atol, msg=f"{what} grad {i}")


def to_float64(x):
    if isinstance(x, PackedSequence):
        return PackedSequence(x.data.double(), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    return None if x is None else x.double()
