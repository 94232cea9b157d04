"""FusedRNN under torch.compile (fullgraph, dynamic shapes, inductor) and CUDA graphs.

Plain nn.RNN cannot be traced by dynamo (it graph-breaks); FusedRNN compiles as one graph, forward
and backward, and gives eager's numbers. CPU tests use the cheap "aot_eager" backend (which runs
the fake kernels, the autograd rule and AOT autograd's backward trace) for breadth and inductor
for one model; the CUDA tests (CUDA graphs, reduce-overhead) run only where a GPU is present.
"""
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnfused
from support import cell_kw, make_pair, random_state, requires_cuda
from rnnfused._common import packed_under_compile
from rnnfused import FusedRNN



pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _fwd_bwd(model, x, hx=None, mark_dynamic=False):
    """Outputs and the gradients of a fixed random projection of them w.r.t. x, hx and params.
    mark_dynamic: mark x's dims 0, 1 and hx's batch dim dynamic (on the tensors passed in)."""
    for p in model.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    states = [] if hx is None else [t.detach().clone().requires_grad_() for t in
                                    (hx if isinstance(hx, tuple) else (hx,))]
    if mark_dynamic:
        torch._dynamo.mark_dynamic(x, 0)
        torch._dynamo.mark_dynamic(x, 1)
        for t in states:
            torch._dynamo.mark_dynamic(t, 1)
    hx = None if hx is None else (tuple(states) if isinstance(hx, tuple) else states[0])
    out, h_n = model(x, hx)
    h_n = torch.cat([t.flatten() for t in h_n]) if isinstance(h_n, tuple) else h_n  # an LSTM's (h, c)
    g = torch.Generator().manual_seed(123)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    w_h = torch.randn(h_n.shape, generator=g, dtype=h_n.dtype).to(h_n.device)
    ((out * w_out).sum() + (h_n * w_h).sum()).backward()
    grads = [x.grad] + [t.grad for t in states] + [p.grad.clone() for p in model.parameters()]
    return out.detach(), h_n.detach(), grads


def _assert_same(a, b, atol=1e-6, rtol=1e-5):
    out_a, h_a, g_a = a
    out_b, h_b, g_b = b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=rtol)
    torch.testing.assert_close(h_a, h_b, atol=atol, rtol=rtol)
    assert len(g_a) == len(g_b)
    for x, y in zip(g_a, g_b):
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


def test_nn_rnn_breaks_the_graph_but_fused_rnn_does_not():
    rnn, fused = make_pair(5, 7)
    x = torch.randn(4, 3, 5)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="RNN"):
        torch.compile(rnn, fullgraph=True, backend="eager")(x)
    torch._dynamo.reset()
    out, h = torch.compile(fused, fullgraph=True, backend="eager")(x)
    ref_out, ref_h = rnn(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize(
    "kw, with_hx",
    [
        (dict(), False),
        (dict(num_layers=2, bidirectional=True, nonlinearity="relu"), True),
        (dict(batch_first=True, bias=False, num_layers=2), True),
        (dict(module=nn.LSTM), False),
        (dict(module=nn.LSTM, num_layers=2, bidirectional=True, proj_size=3), True),
    ],
    ids=["plain", "2layer-bidir-relu-hx", "batch_first-nobias-hx", "lstm", "lstm-2layer-bidir-proj-hx"],
)
def test_fullgraph_forward_backward_matches_eager(kw, with_hx):
    rnn, fused = make_pair(5, 7, **kw)
    T, B = 6, 3
    x = torch.randn((B, T, 5) if fused.batch_first else (T, B, 5))
    hx = random_state(fused, B) if with_hx else None
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    got = _fwd_bwd(compiled, x, hx)
    _assert_same(got, _fwd_bwd(fused, x, hx))
    _assert_same(got, _fwd_bwd(rnn, x, hx), atol=1e-5, rtol=1e-4)  # and nn.RNN's numbers
    assert counters["stats"]["unique_graphs"] == 1


def test_unbatched_input_compiles():
    rnn, fused = make_pair(5, 7, num_layers=2)
    x = torch.randn(6, 5)
    out, h = torch.compile(fused, fullgraph=True, backend="aot_eager")(x)
    ref_out, ref_h = rnn(x)
    assert out.shape == ref_out.shape and h.shape == ref_h.shape
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-4)


def _shapes_without_recompile(compiled, fused, shapes, mark=False):
    for T, B in shapes:
        x = torch.randn(T, B, 5)
        hx = torch.randn(fused.num_layers, B, 7)
        _assert_same(_fwd_bwd(compiled, x, hx, mark_dynamic=mark), _fwd_bwd(fused, x, hx))


# Sizes 0 and 1 are specialised by dynamo (a new graph for a dimension of size 1 is PyTorch's
# rule for every model, not FusedRNN's), so the sweep uses sizes >= 2. The first call's T and B
# also differ from input_size (5) and hidden_size (7), and from each other: dynamo's duck sizing
# gives equal sizes one symbol, so T == input_size on the first call would tie T to the
# (specialised) input size, and the next length would recompile.
SHAPES = [(6, 3), (8, 2), (3, 6), (11, 4)]


def test_dynamic_true_no_recompile_across_batch_and_length():
    _, fused = make_pair(5, 7, num_layers=2)
    compiled = torch.compile(fused, fullgraph=True, dynamic=True, backend="aot_eager")
    _shapes_without_recompile(compiled, fused, SHAPES)
    assert counters["stats"]["unique_graphs"] == 1
    assert len(counters["recompiles"]) == 0


def test_lstm_dynamic_true_no_recompile_and_export():
    """FusedLSTM (with a projection) under dynamic shapes: one graph across batch sizes and
    lengths; torch.export holds one rnnfused.lstm op and matches eager."""
    _, fused = make_pair(5, 7, module=nn.LSTM, num_layers=2, proj_size=4)
    compiled = torch.compile(fused, fullgraph=True, dynamic=True, backend="aot_eager")
    for T, B in SHAPES:
        x = torch.randn(T, B, 5)
        st = random_state(fused, B, seed=T)
        _assert_same(_fwd_bwd(compiled, x, st), _fwd_bwd(fused, x, st))
    assert counters["stats"]["unique_graphs"] == 1
    assert len(counters["recompiles"]) == 0
    x = torch.randn(6, 3, 5)
    ep = torch.export.export(fused, (x,))
    assert sum(n.target == torch.ops.rnnfused.lstm.default for n in ep.graph.nodes) == 1
    for a, b in zip(torch.utils._pytree.tree_leaves(ep.module()(x)), torch.utils._pytree.tree_leaves(fused(x))):
        torch.testing.assert_close(a, b)


def test_mark_dynamic_no_recompile_across_batch_and_length():
    _, fused = make_pair(5, 7)
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    _shapes_without_recompile(compiled, fused, SHAPES, mark=True)
    assert counters["stats"]["unique_graphs"] == 1


def test_convert_model_then_compile_fullgraph():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(5, 7, batch_first=True)
            self.head = nn.Linear(7, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    net = Net()
    x = torch.randn(3, 6, 5)
    ref = net(x)
    rnnfused.convert(net)
    assert isinstance(net.rnn, FusedRNN)
    got = torch.compile(net, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_packed_sequence_compiles_with_a_graph_break():
    """PackedSequence shapes depend on batch_sizes' values: FusedRNN pads/packs eagerly under
    torch.compile (graph breaks around it, fullgraph=False) and the result equals eager."""
    rnn, fused = make_pair(5, 7, bidirectional=True)
    x = torch.randn(6, 3, 5)
    lengths = torch.tensor([6, 4, 2])
    compiled = torch.compile(fused, backend="aot_eager")
    out, h = compiled(pack_padded_sequence(x, lengths))
    ref_out, ref_h = rnn(pack_padded_sequence(x, lengths))
    torch.testing.assert_close(pad_packed_sequence(out)[0], pad_packed_sequence(ref_out)[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_packed_sequence_under_fullgraph_says_what_to_do(cell):
    """fullgraph=True cannot hold a packed input (its batch sizes are data): the error says so and
    what to do (pad instead of pack, or compile without fullgraph), instead of Dynamo's bare
    "Could not guard on data-dependent expression"."""
    module, kw = cell_kw(cell)
    _, fused = make_pair(5, 7, module=module, **kw)
    packed = pack_padded_sequence(torch.randn(6, 3, 5), torch.tensor([6, 4, 2]))
    with pytest.raises(torch._dynamo.exc.Unsupported) as e:
        torch.compile(fused, fullgraph=True, backend="aot_eager")(packed)
    msg = str(e.value)
    assert packed_under_compile(type(fused).__name__, "nn." + module.__name__) in msg, msg
    assert "pass a padded tensor" in msg and "without fullgraph=True" in msg
    assert "data-dependent" not in msg


@pytest.mark.slow
def test_inductor_training_matches_eager():
    """The default backend (inductor) on a small model around FusedRNN: three SGD steps, compiled
    and eager from identical weights, stay equal."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = FusedRNN(5, 8, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Linear(16, 1)

        def forward(self, x):
            out, h = self.rnn(x)
            return self.head(torch.tanh(out)).squeeze(-1).mean(1) + h.sum((0, 2))

    torch.manual_seed(1)
    eager = Net()
    comp = Net()
    comp.load_state_dict(eager.state_dict())
    step_c = torch.compile(comp, fullgraph=True)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(comp.parameters(), lr=0.05)
    for _ in range(3):
        x, y = torch.randn(4, 6, 5), torch.randn(4)
        for model, opt in ((eager, opt_e), (step_c, opt_c)):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=n)
    assert counters["stats"]["unique_graphs"] == 1


# ------------------------------------------------------------------------------------------------
# CUDA: compile, reduce-overhead (CUDA graphs through inductor), manual CUDA graph capture.
# Forced kernels: the launcher honours RNNFUSED_KERNEL at every call, so both the stepwise and the
# persistent (cooperative) kernel are captured and replayed.

CUDA_KERNELS = ["auto", "stepwise", "persistent"]


def _cuda_pair(kernel_env, monkeypatch, num_layers=2, **kw):
    monkeypatch.setenv("RNNFUSED_KERNEL", kernel_env)
    return make_pair(16, 64, num_layers=num_layers, device="cuda", **kw)


@requires_cuda
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
def test_cuda_fullgraph_inductor_matches_eager(kernel, monkeypatch):
    _, fused = _cuda_pair(kernel, monkeypatch, bidirectional=True)
    x = torch.randn(12, 8, 16, device="cuda")
    compiled = torch.compile(fused, fullgraph=True, dynamic=True)
    _assert_same(_fwd_bwd(compiled, x), _fwd_bwd(fused, x))
    x2 = torch.randn(9, 5, 16, device="cuda")
    _assert_same(_fwd_bwd(compiled, x2), _fwd_bwd(fused, x2))
    assert counters["stats"]["unique_graphs"] == 1


@requires_cuda
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
def test_cuda_reduce_overhead_replays_forward_and_backward(kernel, monkeypatch):
    _, fused = _cuda_pair(kernel, monkeypatch)
    compiled = torch.compile(fused, mode="reduce-overhead", fullgraph=True)
    for i in range(5):  # warm-up, recording, then replays; fresh data each time
        torch.compiler.cudagraph_mark_step_begin()
        x = torch.randn(10, 8, 16, device="cuda")
        got = _fwd_bwd(compiled, x)
        _assert_same(got, _fwd_bwd(fused, x))
    assert counters["inductor"]["cudagraph_skips"] == 0  # nothing kept it off CUDA graphs


@requires_cuda
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
def test_cuda_graph_manual_capture_forward_backward(kernel, monkeypatch):
    """Whole-step capture (forward, loss, backward) with torch.cuda.graph, replayed on new data
    copied into the static input; every replay equals an eager step on the same data."""
    _, fused = _cuda_pair(kernel, monkeypatch)
    T, B = 10, 8
    static_x = torch.randn(T, B, 16, device="cuda")
    static_target = torch.randn(T, B, 64, device="cuda")

    def step():
        out, h = fused(static_x)
        loss = ((out - static_target) ** 2).mean() + h.pow(2).mean()
        loss.backward()
        return loss

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            for p in fused.parameters():
                p.grad = None
            step()
    torch.cuda.current_stream().wait_stream(s)
    for p in fused.parameters():
        p.grad = None
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_loss = step()

    for _ in range(3):
        x, target = torch.randn(T, B, 16, device="cuda"), torch.randn(T, B, 64, device="cuda")
        static_x.copy_(x)
        static_target.copy_(target)
        g.replay()
        torch.cuda.synchronize()
        graph_grads = [p.grad.clone() for p in fused.parameters()]
        graph_loss = static_loss.clone()
        # Eager reference on a copy of the module (the graph owns fused's .grad tensors).
        ref = FusedRNN(16, 64, num_layers=2).cuda()
        ref.load_state_dict(fused.state_dict())
        out, h = ref(x)
        loss = ((out - target) ** 2).mean() + h.pow(2).mean()
        loss.backward()
        torch.testing.assert_close(graph_loss, loss.detach())  # float32 defaults
        for a, p in zip(graph_grads, ref.parameters()):
            torch.testing.assert_close(a, p.grad)


@requires_cuda
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
def test_cuda_make_graphed_callables(kernel, monkeypatch):
    """torch.cuda.make_graphed_callables: separate forward and backward graphs, autograd-aware."""
    _, fused = _cuda_pair(kernel, monkeypatch, num_layers=1)
    ref = FusedRNN(16, 64).cuda()
    ref.load_state_dict(fused.state_dict())
    sample = torch.randn(10, 8, 16, device="cuda", requires_grad=True)
    graphed = torch.cuda.make_graphed_callables(fused, (sample,))
    for _ in range(3):
        x = torch.randn(10, 8, 16, device="cuda")
        xg = x.clone().requires_grad_()
        xr = x.clone().requires_grad_()
        out_g, h_g = graphed(xg)
        out_r, h_r = ref(xr)
        torch.testing.assert_close(out_g, out_r)
        torch.testing.assert_close(h_g, h_r)
        (out_g.sum() + 2 * h_g.sum()).backward()
        (out_r.sum() + 2 * h_r.sum()).backward()
        torch.testing.assert_close(xg.grad, xr.grad)
    for a, b in zip(fused.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
