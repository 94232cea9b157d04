"""ONNX Runtime as a CPU contender, forward only: the reference nn.RNN (same weights) exported to
the ONNX RNN operator (torch.onnx.export(dynamo=False)), run by an InferenceSession with the same
number of intra-op threads as torch and idle-thread spinning off (spinning ORT threads steal the
cores from whatever is timed next). Its output is checked against nn.RNN's when it is built.

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


class OrtRNN:
    """Called as module(x, h0) -> (output, h_n), nn.RNN's layouts, torch tensors in and out."""

    def __init__(self, ref, cfg, threads):
        import onnxruntime as ort
        x = torch.randn(cfg.T, cfg.B, cfg.I, dtype=cfg.dtype)
        D = 2 if ref.bidirectional else 1
        h0 = torch.randn(ref.num_layers * D, cfg.B, cfg.H, dtype=cfg.dtype)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's RNN warnings (batch size fixed)
            torch.onnx.export(ref, (x, h0), buf, input_names=["x", "h0"],
                              output_names=["out", "hn"], dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
        if "RNN" not in ops:
            raise RuntimeError(f"the export has no ONNX RNN operator (ops: {sorted(ops)})")
        # Outputs checked against nn.RNN on these inputs.
        with torch.no_grad():
            want_out, want_hn = ref(x, h0)
        got_out, got_hn = self(x, h0)
        tol = 1e-4 if cfg.dtype == torch.float32 else 1e-9
        for name, a, b in (("output", got_out, want_out), ("h_n", got_hn, want_hn)):
            err = (a.double() - b.double()).abs().max().item()
            if not err <= tol * max(1.0, b.abs().max().item()):
                raise RuntimeError(f"onnxruntime {name} differs from nn.RNN by {err:.3g}")

    def __call__(self, x, h0):
        out, hn = self.sess.run(None, {"x": x.detach().numpy(), "h0": h0.detach().numpy()})
        return torch.from_numpy(out), torch.from_numpy(hn)


def _build(b):
    return OrtRNN(b.ref, b.cfg, torch.get_num_threads())


def _available(args):
    if not HAVE_ORT:
        return "onnxruntime/onnx not installed (pip install onnx onnxruntime)"
    return None


register(ContenderSpec("ort", "onnxruntime", _build, devices=("cpu",), modes=("fwd",),
                       available=_available,
                       applies=lambda cfg: cfg.dtype in (torch.float32, torch.float64)))
