"""ONNX Runtime as a CPU contender, forward only: the reference nn.RNN / nn.LSTM (same weights)
exported to the ONNX RNN / LSTM operator (torch.onnx.export(dynamo=False); the export must contain
it), run by an InferenceSession with the same number of intra-op threads as torch and idle-thread
spinning off (spinning ORT threads steal the cores from whatever is timed next). Its output and
final state are checked against the reference's when it is built.

Registered from contenders.py when onnxruntime and onnx are importable (pip install onnx
onnxruntime); otherwise the run says it is skipped and why."""
import io
import warnings

import torch

from .contenders import ContenderSpec, register

try:
    import onnxruntime as _ort  # noqa: F401
    import onnx  # noqa: F401  (torch.onnx.export needs it)
    HAVE_ORT = True
    ORT_VERSION = _ort.__version__
except ImportError:
    HAVE_ORT = False
    ORT_VERSION = None


class OrtModule:
    """Called as module(x, hx) -> (output, hx) in the cell's nn layouts (hx: h0, or (h0, c0)),
    torch tensors in and out."""

    def __init__(self, ref, cfg, threads, cell):
        import onnxruntime as ort
        self.cell = cell
        x = torch.randn(cfg.T, cfg.B, cfg.I, dtype=cfg.dtype)
        D = 2 if ref.bidirectional else 1
        hx = tuple(torch.randn(ref.num_layers * D, cfg.B, n, dtype=cfg.dtype)
                   for n in (cfg.out_size, cfg.H)[:cell.states])
        self.state_in = ["h0", "c0"][:cell.states]
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's RNN warnings (batch size fixed)
            torch.onnx.export(ref, (x, cell.hx(hx)), buf, input_names=["x", *self.state_in],
                              output_names=["out", *["hn", "cn"][:cell.states]], dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        self.ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
        if cell.onnx_op not in self.ops:
            raise RuntimeError(f"the export has no ONNX {cell.onnx_op} operator (ops: {sorted(self.ops)})")
        # Outputs checked against the reference module on these inputs.
        with torch.no_grad():
            want = cell.flat(ref(x, cell.hx(hx)))
        got = cell.flat(self(x, cell.hx(hx)))
        tol = 1e-4 if cfg.dtype == torch.float32 else 1e-9
        for name, a, b in zip(("output", "h_n", "c_n"), got, want):
            err = (a.double() - b.double()).abs().max().item()
            if not err <= tol * max(1.0, b.abs().max().item()):
                raise RuntimeError(f"onnxruntime {name} differs from {cell.torch_name} by {err:.3g}")

    def __call__(self, x, hx):
        feed = {"x": x.detach().numpy()}
        feed.update((name, t.detach().numpy()) for name, t in zip(self.state_in, self.cell.flat_state(hx)))
        out, *states = self.sess.run(None, feed)
        return torch.from_numpy(out), self.cell.hx([torch.from_numpy(t) for t in states])


def _build(b):
    return OrtModule(b.ref, b.cfg, torch.get_num_threads(), b.setup.cell)


def _available(args):
    if not HAVE_ORT:
        return "onnxruntime/onnx not installed (pip install onnx onnxruntime)"
    return None


register(ContenderSpec("ort", "onnxruntime", _build, devices=("cpu",), modes=("fwd",),
                       available=_available,
                       # the ONNX LSTM operator has no projection (proj_size)
                       applies=lambda cfg: cfg.dtype in (torch.float32, torch.float64) and not cfg.proj))
