"""Deploying wherever nn.RNN deploys: ONNX (both exporters, run in ONNX Runtime against nn.RNN,
with dynamic batch size and sequence length from one export), TorchScript (script, save, load)
and torch.export."""
import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnfused import FusedLSTM, FusedRNN
from support import make_pair

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

# The two exporters; the dynamo one is in the slow tier (seconds an export here, more for the first
# in a process).
DYNAMO = [pytest.param(True, id="dynamo", marks=pytest.mark.slow), pytest.param(False, id="torchscript")]

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class Wrap(nn.Module):
    """A model holding an RNN: (x, h0) -> (output, h_n)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, h0):
        return self.rnn(x, h0)


class WrapNoH0(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)


def _export(model, args, path, dynamo, batch_first=False, with_h0=True):
    names = ["x", "h0"] if with_h0 else ["x"]
    t_dim, b_dim = (1, 0) if batch_first else (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
            shapes = {"x": {t_dim: T, b_dim: B}}
            if with_h0:
                shapes["h0"] = {1: B}
            torch.onnx.export(model, args, path, dynamo=True, dynamic_shapes=shapes, input_names=names,
                              output_names=["out", "h_n"], verbose=False)
        else:
            axes = {"x": {t_dim: "T", b_dim: "B"}, "out": {t_dim: "T", b_dim: "B"}, "h_n": {1: "B"}}
            if with_h0:
                axes["h0"] = {1: "B"}
            torch.onnx.export(model, args, path, dynamo=False, input_names=names, output_names=["out", "h_n"],
                              dynamic_axes=axes)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _rnn_nodes(path):
    return [n for n in onnx.load(path).graph.node if n.op_type == "RNN"]


@pytest.mark.parametrize("dynamo", DYNAMO)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_onnx_export_runs_in_onnxruntime_like_nn_rnn(dynamo, nonlinearity, tmp_path):
    """2 layers, bidirectional: one export, then two batch sizes and two sequence lengths."""
    ref, fused = (m.eval() for m in make_pair(3, 5, num_layers=2, bidirectional=True, nonlinearity=nonlinearity))
    x, h0 = torch.randn(6, 3, 3), torch.randn(4, 3, 5)
    path = str(tmp_path / "m.onnx")
    sess = _export(Wrap(fused), (x, h0), path, dynamo)
    nodes = _rnn_nodes(path)
    assert len(nodes) == 2  # the standard ONNX RNN operator, one node per layer
    for node in nodes:
        attrs = {a.name: a for a in node.attribute}
        assert attrs["direction"].s == b"bidirectional"
        assert [s.decode() for s in attrs["activations"].strings] == [nonlinearity.capitalize()] * 2
    g = torch.Generator().manual_seed(1)
    for T, B in [(6, 3), (9, 1), (2, 5), (11, 4)]:
        x, h0 = torch.randn(T, B, 3, generator=g), torch.randn(4, B, 5, generator=g)
        out, hn = sess.run(None, {"x": x.numpy(), "h0": h0.numpy()})
        with torch.no_grad():
            want_out, want_hn = ref(x, h0)
        torch.testing.assert_close(torch.from_numpy(out), want_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(hn), want_hn, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", DYNAMO)
def test_onnx_export_batch_first_default_h0_one_layer(dynamo, tmp_path):
    ref, fused = (m.eval() for m in make_pair(3, 4, batch_first=True, bias=False))
    path = str(tmp_path / "m.onnx")
    sess = _export(WrapNoH0(fused), (torch.randn(2, 5, 3),), path, dynamo, batch_first=True, with_h0=False)
    assert len(_rnn_nodes(path)) == 1
    for B, T in [(2, 5), (4, 3)]:
        x = torch.randn(B, T, 3)
        out, hn = sess.run(None, {"x": x.numpy()})
        with torch.no_grad():
            want_out, want_hn = ref(x)
        torch.testing.assert_close(torch.from_numpy(out), want_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(hn), want_hn, rtol=1e-5, atol=1e-6)


def test_onnx_torchscript_export_packed_sequence_uses_sequence_lens(tmp_path):
    """pack_padded_sequence -> FusedRNN -> pad_packed_sequence exports (dynamo=False) as ONNX RNN
    nodes with sequence_lens, through torch's own packing passes, as nn.RNN does."""
    ref, fused = (m.eval() for m in make_pair(3, 5, num_layers=2, bidirectional=True))

    class Packed(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, lengths, h0):
            out, hn = self.rnn(pack_padded_sequence(x, lengths), h0)
            return pad_packed_sequence(out)[0], hn

    path = str(tmp_path / "p.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Packed(fused), (torch.randn(5, 3, 3), torch.tensor([5, 3, 2]), torch.randn(4, 3, 5)), path,
                          dynamo=False, input_names=["x", "lengths", "h0"], output_names=["out", "h_n"],
                          dynamic_axes={"x": {0: "T", 1: "B"}, "lengths": {0: "B"}, "h0": {1: "B"}})
    nodes = _rnn_nodes(path)
    assert len(nodes) == 2 and all(n.input[4] for n in nodes)  # sequence_lens wired in
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for lengths in ([5, 3, 2], [6, 6, 4, 1]):
        T, B = lengths[0], len(lengths)
        x, h0, L = torch.randn(T, B, 3), torch.randn(4, B, 5), torch.tensor(lengths)
        out, hn = sess.run(None, {"x": x.numpy(), "lengths": L.numpy(), "h0": h0.numpy()})
        with torch.no_grad():
            want_out, want_hn = Packed(ref)(x, L, h0)
        torch.testing.assert_close(torch.from_numpy(out), want_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(hn), want_hn, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", DYNAMO)
def test_onnx_export_cell(dynamo, tmp_path):
    ref, fused = make_pair(3, 4, nonlinearity="relu", module=nn.RNNCell)
    path = str(tmp_path / "c.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            B = torch.export.Dim("B", min=1)
            torch.onnx.export(Wrap(fused), (torch.randn(2, 3), torch.randn(2, 4)), path, dynamo=True,
                              dynamic_shapes={"x": {0: B}, "h0": {0: B}}, input_names=["x", "h0"])
        else:
            torch.onnx.export(Wrap(fused), (torch.randn(2, 3), torch.randn(2, 4)), path, dynamo=False,
                              input_names=["x", "h0"], dynamic_axes={"x": {0: "B"}, "h0": {0: "B"}})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for B in (2, 5):
        x, h = torch.randn(B, 3), torch.randn(B, 4)
        (y,) = sess.run(None, {"x": x.numpy(), "h0": h.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), ref(x, h).detach(), rtol=1e-5, atol=1e-6)


REFUSED = [
    pytest.param(lambda: FusedRNN(3, 4, num_layers=2, dropout=0.5).train(), "dropout", id="rnn-dropout"),
    pytest.param(lambda: FusedLSTM(3, 4, num_layers=2, dropout=0.5).train(), "dropout", id="lstm-dropout"),
    pytest.param(lambda: FusedLSTM(3, 4, proj_size=2).eval(), "proj_size", id="lstm-proj"),
]


@pytest.mark.parametrize("dynamo", DYNAMO)
@pytest.mark.parametrize("make, what", REFUSED)
def test_onnx_export_refuses_what_the_operator_lacks(dynamo, make, what, tmp_path):
    """The ONNX RNN and LSTM operators have no dropout, the LSTM one no projection: such an export
    raises, naming it, rather than silently dropping it. (The TorchScript exporter exports in eval
    mode unless asked.)"""
    fused = make()
    kw = {} if dynamo or not fused.training else {"training": torch.onnx.TrainingMode.TRAINING}
    with pytest.raises(Exception, match=what):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(WrapNoH0(fused), (torch.randn(5, 2, 3),), str(tmp_path / "d.onnx"), dynamo=dynamo, **kw)


# ------------------------------------------------------------------------------------------------
# The LSTM: the ONNX LSTM operator


class WrapLSTM(nn.Module):
    """(x, h0, c0) -> (output, h_n, c_n), or x -> the same with zero states."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0=None, c0=None):
        out, (h, c) = self.lstm(x) if h0 is None else self.lstm(x, (h0, c0))
        return out, h, c


def _export_lstm(model, args, path, dynamo, batch_first=False):
    names = ["x", "h0", "c0"][: len(args)]
    t_dim, b_dim = (1, 0) if batch_first else (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
            shapes = {"x": {t_dim: T, b_dim: B}}
            shapes.update({n: {1: B} for n in names[1:]})
            torch.onnx.export(model, args, path, dynamo=True, dynamic_shapes=shapes, input_names=names,
                              output_names=["out", "h_n", "c_n"])
        else:
            axes = {"x": {t_dim: "T", b_dim: "B"}, "out": {t_dim: "T", b_dim: "B"}, "h_n": {1: "B"}, "c_n": {1: "B"}}
            axes.update({n: {1: "B"} for n in names[1:]})
            torch.onnx.export(model, args, path, dynamo=False, input_names=names,
                              output_names=["out", "h_n", "c_n"], dynamic_axes=axes)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dynamo", DYNAMO)
@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(batch_first=True, bias=False)],
                         ids=["2layer-bidir-state", "batch_first-nobias-nostate"])
def test_onnx_export_lstm_runs_in_onnxruntime_like_nn_lstm(dynamo, kw, tmp_path):
    """One export, the standard ONNX LSTM operator (one node per layer), then several batch sizes
    and sequence lengths in ONNX Runtime, against nn.LSTM."""
    ref, fused = (m.eval() for m in make_pair(3, 5, module=nn.LSTM, **kw))
    L = ref.num_layers * (2 if ref.bidirectional else 1)
    bf = ref.batch_first
    with_state = "bias" not in kw

    def inputs(T, B, g=None):
        x = torch.randn(*((B, T, 3) if bf else (T, B, 3)), generator=g)
        return (x, torch.randn(L, B, 5, generator=g), torch.randn(L, B, 5, generator=g)) if with_state else (x,)

    path = str(tmp_path / "m.onnx")
    sess = _export_lstm(WrapLSTM(fused), inputs(6, 3), path, dynamo, batch_first=bf)
    nodes = [n for n in onnx.load(path).graph.node if n.op_type == "LSTM"]
    assert len(nodes) == ref.num_layers
    g = torch.Generator().manual_seed(1)
    for T, B in [(6, 3), (9, 1), (2, 5)]:
        args = inputs(T, B, g)
        got = sess.run(None, {n: a.numpy() for n, a in zip(["x", "h0", "c0"], args)})
        with torch.no_grad():
            want = WrapLSTM(ref)(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-6)


def test_onnx_torchscript_export_lstm_packed_sequence_uses_sequence_lens(tmp_path):
    ref, fused = (m.eval() for m in make_pair(3, 5, module=nn.LSTM, num_layers=2, bidirectional=True))

    class Packed(nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, lengths, h0, c0):
            out, (h, c) = self.lstm(pack_padded_sequence(x, lengths), (h0, c0))
            return pad_packed_sequence(out)[0], h, c

    path = str(tmp_path / "p.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Packed(fused), (torch.randn(5, 3, 3), torch.tensor([5, 3, 2]), torch.randn(4, 3, 5),
                                          torch.randn(4, 3, 5)), path, dynamo=False,
                          input_names=["x", "lengths", "h0", "c0"], output_names=["out", "h_n", "c_n"],
                          dynamic_axes={"x": {0: "T", 1: "B"}, "lengths": {0: "B"}, "h0": {1: "B"}, "c0": {1: "B"}})
    nodes = [n for n in onnx.load(path).graph.node if n.op_type == "LSTM"]
    assert len(nodes) == 2 and all(n.input[4] for n in nodes)  # sequence_lens wired in
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for lengths in ([5, 3, 2], [6, 6, 4, 1]):
        T, B = lengths[0], len(lengths)
        args = (torch.randn(T, B, 3), torch.tensor(lengths), torch.randn(4, B, 5), torch.randn(4, B, 5))
        got = sess.run(None, {n: a.numpy() for n, a in zip(["x", "lengths", "h0", "c0"], args)})
        with torch.no_grad():
            want = Packed(ref)(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", DYNAMO)
def test_onnx_export_lstm_cell(dynamo, tmp_path):
    class WrapCell(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.cell = cell

        def forward(self, x, h0, c0):
            return self.cell(x, (h0, c0))

    ref, fused = make_pair(3, 4, module=nn.LSTMCell)
    args = (torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4))
    path = str(tmp_path / "c.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            B = torch.export.Dim("B", min=1)
            torch.onnx.export(WrapCell(fused), args, path, dynamo=True, input_names=["x", "h0", "c0"],
                              dynamic_shapes={"x": {0: B}, "h0": {0: B}, "c0": {0: B}})
        else:
            torch.onnx.export(WrapCell(fused), args, path, dynamo=False, input_names=["x", "h0", "c0"],
                              dynamic_axes={"x": {0: "B"}, "h0": {0: "B"}, "c0": {0: "B"}})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for B in (2, 5):
        args = (torch.randn(B, 3), torch.randn(B, 4), torch.randn(B, 4))
        got = sess.run(None, {n: a.numpy() for n, a in zip(["x", "h0", "c0"], args)})
        with torch.no_grad():
            want = ref(args[0], (args[1], args[2]))
        for a, b in zip(got, want):
            torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# TorchScript


class Classifier(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        return self.head(out[:, -1]) + h.sum()


class PackedClassifier(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: PackedSequence, h0: torch.Tensor):
        out, h = self.rnn(x, h0)
        return out.data, h


def _script_roundtrip(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        return scripted, torch.jit.load(buf)


def test_torchscript_model_holding_fused_rnn_tensor_input():
    ref, fused = make_pair(3, 5, num_layers=2, bidirectional=True, batch_first=True, nonlinearity="relu")
    eager = Classifier(fused)
    want_model = Classifier(ref)
    want_model.head.load_state_dict(eager.head.state_dict())
    scripted, loaded = _script_roundtrip(eager)
    x = torch.randn(4, 6, 3)
    want = want_model(x)
    torch.testing.assert_close(scripted(x), want)
    torch.testing.assert_close(loaded(x), want)
    # Training through the scripted module: the same gradients.
    x = x.requires_grad_()
    g_s = torch.autograd.grad(scripted(x).sum(), [x] + list(scripted.parameters()))
    g_e = torch.autograd.grad(want_model(x).sum(), [x] + list(want_model.parameters()))
    for a, b in zip(g_s, g_e):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_torchscript_model_holding_fused_rnn_packed_input():
    ref, fused = make_pair(3, 5, num_layers=2)
    scripted, loaded = _script_roundtrip(PackedClassifier(fused))
    x = pack_padded_sequence(torch.randn(6, 3, 3), torch.tensor([2, 6, 4]), enforce_sorted=False)
    h0 = torch.randn(2, 3, 5)
    want = PackedClassifier(ref)(x, h0)
    for got in (scripted(x, h0), loaded(x, h0)):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


class LSTMClassifier(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm
        self.head = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1]) + h.sum() + c.sum()


class PackedLSTM(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x: PackedSequence, h0: torch.Tensor, c0: torch.Tensor):
        out, (h, c) = self.lstm(x, (h0, c0))
        return out.data, h, c


def test_torchscript_model_holding_fused_lstm():
    """Scripted, saved and loaded: a model holding FusedLSTM with tensor input (its output equals
    nn.LSTM's, its gradients the eager model's) and one with packed input and a projection."""
    ref, fused = make_pair(3, 5, module=nn.LSTM, num_layers=2, bidirectional=True, batch_first=True)
    eager, want_model = LSTMClassifier(fused), LSTMClassifier(ref)
    want_model.head.load_state_dict(eager.head.state_dict())
    scripted, loaded = _script_roundtrip(eager)
    x = torch.randn(4, 6, 3, requires_grad=True)
    want = want_model(x)
    torch.testing.assert_close(scripted(x), want)
    torch.testing.assert_close(loaded(x), want)
    # The loaded model trains as the eager FusedLSTM does (the same kernels: equal gradients;
    # eager against nn.LSTM is test_rnn's business).
    g_s = torch.autograd.grad(loaded(x).sum(), [x] + list(loaded.parameters()))
    g_e = torch.autograd.grad(eager(x).sum(), [x] + list(eager.parameters()))
    for a, b in zip(g_s, g_e):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ref, fused = make_pair(3, 5, module=nn.LSTM, proj_size=2)
    scripted, loaded = _script_roundtrip(PackedLSTM(fused))
    x = pack_padded_sequence(torch.randn(6, 3, 3), torch.tensor([2, 6, 4]), enforce_sorted=False)
    h0, c0 = torch.randn(1, 3, 2), torch.randn(1, 3, 5)
    want = PackedLSTM(ref)(x, h0, c0)
    for got in (scripted(x, h0, c0), loaded(x, h0, c0)):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


def test_torchscript_bare_fused_rnn_like_nn_rnn():
    """Scripting the bare module: like nn.RNN's, its overloads compile to forward__0 (tensor) and
    forward__1 (PackedSequence); a model holding it calls the right one."""
    fused = FusedRNN(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.script(fused)
        r = torch.jit.script(nn.RNN(3, 4))
    assert set(s._c._method_names()) >= {"forward__0", "forward__1"}
    assert set(r._c._method_names()) >= {"forward__0", "forward__1"}
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(s.forward__0(x, None)[0], fused(x)[0])


# ------------------------------------------------------------------------------------------------
# torch.export


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, nonlinearity="relu", batch_first=True)],
                         ids=["plain", "2layer-bidir-relu-batch_first"])
def test_torch_export_with_dynamic_shapes(kw):
    ref, fused = make_pair(3, 4, **kw)
    D = 2 if ref.bidirectional else 1
    T, B = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
    t_dim, b_dim = (1, 0) if ref.batch_first else (0, 1)
    x, h0 = torch.randn(*((3, 5, 3) if ref.batch_first else (5, 3, 3))), torch.randn(ref.num_layers * D, 3, 4)
    ep = torch.export.export(Wrap(fused), (x, h0), dynamic_shapes={"x": {t_dim: T, b_dim: B}, "h0": {1: B}})
    assert any("rnnfused" in str(n.target) for n in ep.graph.nodes)  # one op, not decomposed
    for T_, B_ in [(5, 3), (8, 2), (3, 6)]:
        x = torch.randn(*((B_, T_, 3) if ref.batch_first else (T_, B_, 3)))
        h0 = torch.randn(ref.num_layers * D, B_, 4)
        got, want = ep.module()(x, h0), ref(x, h0)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_torch_export_cell():
    ref, fused = make_pair(3, 4, module=nn.RNNCell)
    ep = torch.export.export(Wrap(fused), (torch.randn(2, 3), torch.randn(2, 4)))
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(ep.module()(x, h), ref(x, h).detach())
