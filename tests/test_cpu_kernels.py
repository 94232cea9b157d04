"""The CPU kernels of every instruction set the processor supports (RNNFUSED_CPU_ISA), on both
paths (RNNFUSED_CPU_KERNEL) and split across threads (RNNFUSED_CPU_SPLIT), against a float64
reference (rnnfused.reference); the float32 tanh's error bound; the fused cell step (step_fwd_cpu /
step_bwd_cpu, called directly through a tiny C shim linked to rnnfused._C).

vec16 is the AVX-512 register blocking (16 float / 8 double lanes) built portably: it runs the
16-lane blocking and tail logic on any processor. The avx512 build itself runs only where the
processor has AVX-512 F/BW/DQ/VL; elsewhere its tests skip, saying so."""
import ctypes
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch

import rnnfused
from rnnfused import ops
from rnnfused.reference import rnn_cell_ref, rnn_layer_ref

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

ISAS = ["default", "avx2", "avx512", "vec16"]


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_missing(isa):
    """Why this processor cannot run an instruction set's kernels, or None."""
    if isa in ("default", "vec16"):
        return None
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"{isa} kernels exist on x86-64 only"
    flags = cpu_flags()
    need = {"avx2": {"avx2", "fma"},
            "avx512": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "fma"}}[isa]
    lacking = sorted(need - flags)
    return f"this processor lacks {', '.join(lacking)}" if lacking else None


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    why = isa_missing(request.param)
    if why:
        pytest.skip(f"RNNFUSED_CPU_ISA={request.param}: {why} (its kernels are compiled, not run here)")
    monkeypatch.setenv("RNNFUSED_CPU_ISA", request.param)
    return request.param


# Shapes chosen for the blockings: H below, at and off the vector widths (8 and 16 float lanes,
# 4-column dot tiles), B off the row blocks (2, 3, 4 rows) and above them.
SHAPES = [(1, 1, 3, 3), (3, 7, 5, 4), (5, 16, 9, 3), (2, 33, 20, 3), (7, 67, 31, 2),
          (9, 130, 17, 2), (13, 40, 7, 3)]


# The fused forward in both forms (RNNFUSED_CPU_FORM: dot over W_hh's rows, panel over W_hh
# packed per call), the input projection both ways (RNNFUSED_CPU_PROJ: our panel kernel, BLAS).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path,split,form,proj", [
    ("fused", 1, "dot", "blas"), ("fused", 2, "dot", "own"), ("fused", 3, "dot", "blas"),
    ("fused", 1, "panel", "own"), ("fused", 2, "panel", "blas"), ("fused", 3, "panel", "own"),
    ("gemm", 1, "dot", "own")])
@pytest.mark.parametrize("relu", [False, True])
def test_forward_backward_vs_float64(isa, path, split, form, proj, relu, dtype, monkeypatch):
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", path)
    monkeypatch.setenv("RNNFUSED_CPU_SPLIT", str(split))
    monkeypatch.setenv("RNNFUSED_CPU_FORM", form)
    monkeypatch.setenv("RNNFUSED_CPU_PROJ", proj)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
    for i, (B, H, I, T) in enumerate(SHAPES):
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(T, B, I, generator=g, dtype=dtype)
        h0 = torch.randn(B, H, generator=g, dtype=dtype)
        w_ih = (torch.randn(H, I, generator=g, dtype=dtype) / I ** 0.5).requires_grad_()
        w_hh = (torch.randn(H, H, generator=g, dtype=dtype) / H ** 0.5).requires_grad_()
        b = torch.randn(H, generator=g, dtype=dtype)
        reverse = i % 2 == 1
        lengths = torch.randint(0, T + 1, (B,), generator=g) if i >= 3 else None
        xr = x.clone().requires_grad_()
        h0r = h0.clone().requires_grad_()
        out, hn = rnnfused.ops.rnn_layer(xr, h0r, w_ih, w_hh, b, None, lengths, relu, reverse)
        ro, rh = rnn_layer_ref(*(t.double() for t in (x, h0, w_ih.detach(), w_hh.detach(), b)), None, lengths,
                             relu, reverse)
        torch.testing.assert_close(out.double(), ro, **tol, msg=f"output {B, H, I, T}")
        torch.testing.assert_close(hn.double(), rh, **tol, msg=f"h_n {B, H, I, T}")
        # Backward against autograd through the float64 reference.
        go = torch.randn(out.shape, generator=g, dtype=dtype)
        gh = torch.randn(hn.shape, generator=g, dtype=dtype)
        grads = torch.autograd.grad((out * go).sum() + (hn * gh).sum(), [xr, h0r, w_ih, w_hh])
        leaves = [t.detach().double().requires_grad_() for t in (x, h0, w_ih, w_hh)]
        ro2, rh2 = rnn_layer_ref(*leaves, b.double(), None, lengths, relu, reverse)
        want = torch.autograd.grad((ro2 * go.double()).sum() + (rh2 * gh.double()).sum(), leaves)
        for name, got_g, want_g in zip(["input", "h0", "w_ih", "w_hh"], grads, want):
            torch.testing.assert_close(got_g.double(), want_g, **tol, msg=f"grad {name} {B, H, I, T}")


# The LSTM (csrc/cpu/rnn_cpu_lstm.cpp): (B, H, I, T, P, reverse, with lengths). H off the vector
# widths and the 16-unit panels, B = 1 and B above AVX-512's 6-row block, the projection (P) on
# and off, reverse, lengths 0..T (unsorted).
LSTM_SHAPES = [(1, 1, 3, 3, None, False, False), (3, 7, 5, 4, 3, True, False),
               (1, 33, 20, 3, None, False, True), (7, 67, 31, 2, 17, True, True),
               (9, 40, 7, 3, 39, False, True)]


# The fused path (the panel form with the four gates in registers; the forward split over 1..3
# threads' columns) and the BLAS path, both projections, against the float64 reference.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path,split", [("fused", 1), ("fused", 3), ("gemm", 1)])
def test_lstm_forward_backward_vs_float64(isa, path, split, dtype, monkeypatch):
    from rnnfused.reference import lstm_layer_ref

    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", path)
    monkeypatch.setenv("RNNFUSED_CPU_SPLIT", str(split))
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
    for i, (B, H, I, T, P, reverse, masked) in enumerate(LSTM_SHAPES):
        g = torch.Generator().manual_seed(200 + i)
        Q = P or H

        def r(*shape, scale=1.0):
            return torch.randn(*shape, generator=g, dtype=dtype) * scale

        x, h0, c0 = r(T, B, I), r(B, Q), r(B, H)
        w = [r(4 * H, I, scale=I ** -0.5), r(4 * H, Q, scale=Q ** -0.5), r(4 * H), r(4 * H)]
        w.append(r(P, H, scale=H ** -0.5) if P else None)
        lengths = torch.randint(0, T + 1, (B,), generator=g) if masked else None
        leaves = [t.clone().requires_grad_() for t in [x, h0, c0, *w] if t is not None]
        it = iter(leaves)
        xl, hl, cl, wl = next(it), next(it), next(it), [next(it) for _ in range(4)]
        wl.append(next(it) if P else None)
        got = ops.lstm_layer(xl, [hl, cl], *wl, lengths, reverse)
        leaves64 = [t.detach().double().requires_grad_() for t in leaves]
        it = iter(leaves64)
        x64, h64, c64, w64 = next(it), next(it), next(it), [next(it) for _ in range(4)]
        w64.append(next(it) if P else None)
        want = lstm_layer_ref(x64, [h64, c64], *w64, lengths, reverse)
        shape = (B, H, I, T, P)
        for name, a, b in zip(["output", "h_n", "c_n"], got, want):
            torch.testing.assert_close(a.double(), b, **tol, msg=f"{name} {shape}")
        up = [r(*t.shape) for t in got]
        grads = torch.autograd.grad(got, leaves, up)
        wants = torch.autograd.grad(want, leaves64, [u.double() for u in up])
        for k, (a, b) in enumerate(zip(grads, wants)):
            torch.testing.assert_close(a.double(), b, **tol, msg=f"grad {k} {shape}")


def _lstm_layer_and_grads(x, h0, w, b, g):
    """ops.lstm_layer with a projection (P = H // 2) and unsorted lengths, and its gradients."""
    T, B, H = x.shape
    P = H // 2
    leaves = [t.clone().requires_grad_() for t in
              (x, h0[:, :P], h0, w.repeat(4, 1), w[:, :P].repeat(4, 1), b.repeat(4), w[:P])]
    xl, hl, cl, wih, whh, bl, whr = leaves
    lengths = torch.tensor([T, 2, T - 1, 0, 3][:B])
    got = ops.lstm_layer(xl, [hl, cl], wih, whh, bl, bl, whr, lengths, True)
    up = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in got]
    return tuple(got) + torch.autograd.grad(got, leaves, up)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", ["dot", "panel", "lstm"])
def test_split_is_bitwise_identical(isa, dtype, form, monkeypatch):
    """Splitting a step's columns across threads changes no arithmetic: same bits (the Elman
    cell's two forms; the LSTM's gate and projection products, its panel form only)."""
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", "fused")
    monkeypatch.setenv("RNNFUSED_CPU_FORM", "panel" if form == "lstm" else form)
    g = torch.Generator().manual_seed(7)
    T, B, H = 6, 5, 100
    x = torch.randn(T, B, H, generator=g, dtype=dtype)
    h0 = torch.randn(B, H, generator=g, dtype=dtype)
    w = torch.randn(H, H, generator=g, dtype=dtype) / 10
    b = torch.randn(H, generator=g, dtype=dtype)
    res = []
    for split, threads in [(1, 1), (2, 2), (3, 2), (4, 1)]:
        monkeypatch.setenv("RNNFUSED_CPU_SPLIT", str(split))
        torch.set_num_threads(threads)
        if form == "lstm":
            res.append(_lstm_layer_and_grads(x, h0, w, b, torch.Generator().manual_seed(1)))
            continue
        out, hn = ops.rnn_layer(x, h0, w, w, b, b)
        go = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        gr = ops.rnn_layer_backward(go, None, x, h0, w, w, out, None, False, False, [True, True, True, True])
        res.append((out, hn) + tuple(gr))
    torch.set_num_threads(1)
    for r in res[1:]:
        for a, b_ in zip(res[0], r):
            assert torch.equal(a, b_)


def test_cpu_isa_reports_the_kernels_choice(monkeypatch):
    """rnnfused.cpu_isa() is what the kernels chose: the forced one when RNNFUSED_CPU_ISA names a
    supported set, the best supported one otherwise, an error for one the processor lacks."""
    monkeypatch.delenv("RNNFUSED_CPU_ISA", raising=False)
    best = rnnfused.cpu_isa()
    assert best in ("default", "avx2", "avx512")
    cap = os.environ.get("ATEN_CPU_CAPABILITY", "")
    want = ("default" if cap == "default" or isa_missing("avx2") else
            "avx512" if not isa_missing("avx512") and cap != "avx2" else "avx2")
    assert best == want
    for isa in ISAS:
        monkeypatch.setenv("RNNFUSED_CPU_ISA", isa)
        if isa_missing(isa):
            with pytest.raises(RuntimeError, match="lacks"):
                rnnfused.cpu_isa()
        else:
            assert rnnfused.cpu_isa() == isa
    monkeypatch.setenv("RNNFUSED_CPU_ISA", "auto")
    assert rnnfused.cpu_isa() == best


@pytest.mark.parametrize("name,choices", [("RNNFUSED_CPU_KERNEL", "fused, gemm or auto"),
                                          ("RNNFUSED_CPU_FORM", "panel, dot or auto"),
                                          ("RNNFUSED_CPU_PROJ", "own, blas or auto")])
def test_bad_path_switch_raises(name, choices, monkeypatch):
    """A misspelt path switch is an error that names the choices, not a silent auto."""
    x = torch.randn(3, 2, 4)  # B = 2: the panel form's rule and the projection's rule are read
    h0 = torch.zeros(2, 4)
    w = torch.randn(4, 4)
    monkeypatch.setenv(name, "fast")
    with pytest.raises(RuntimeError, match=f"{name} must be {choices}, got 'fast'"):
        ops.rnn_layer(x, h0, w, w, None, None)


def test_unsupported_isa_raises(monkeypatch):
    x = torch.randn(2, 1, 4)
    h0 = torch.zeros(1, 4)
    w = torch.randn(4, 4)
    monkeypatch.setenv("RNNFUSED_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="RNNFUSED_CPU_ISA must be"):
        ops.rnn_layer(x, h0, w, w, None, None)
    missing = [i for i in ISAS if isa_missing(i)]
    if not missing:
        pytest.skip("this processor runs every instruction set's kernels")
    monkeypatch.setenv("RNNFUSED_CPU_ISA", missing[0])
    with pytest.raises(RuntimeError, match="lacks"):
        ops.rnn_layer(x, h0, w, w, None, None)


def _tanh_through_op(v):
    """tanh of each value of v, through the fused forward: H = 1, W_ih = 1, W_hh = 0, T = 1."""
    x = v.reshape(1, -1, 1)
    out, _ = ops.rnn_layer(x, torch.zeros(x.shape[1], 1), torch.ones(1, 1), torch.zeros(1, 1),
                         None, None)
    return out.reshape(-1)


def _tanh_rows(v, H=37):
    """The same, through full vectors: W_ih = identity, so pre = x exactly (finite x only)."""
    n = v.numel() // H * H
    x = v[:n].reshape(1, -1, H)
    out, _ = ops.rnn_layer(x, torch.zeros(x.shape[1], H), torch.eye(H), torch.zeros(H, H),
                         None, None)
    return out.reshape(-1), v[:n]


def test_float32_tanh_error_bound(isa, monkeypatch):
    monkeypatch.setenv("RNNFUSED_CPU_KERNEL", "fused")
    g = torch.Generator().manual_seed(3)
    v = torch.cat([torch.empty(200_000).uniform_(-12, 12, generator=g),
                   torch.logspace(-30, 1.2, 20_000), -torch.logspace(-30, 1.2, 20_000),
                   torch.linspace(-1, 1, 20_001)])
    got, v = _tanh_rows(v)
    want = torch.tanh(v.double())
    ulp = torch.from_numpy(__import__("numpy").spacing(want.abs().float().numpy())).double()
    err = ((got.double() - want).abs() / ulp).max().item()
    assert err <= 6.0, f"float32 tanh error {err:.2f} ulp"  # ~4.7 with FMA, ~5.7 without
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -1e-45,
                            3.4e38, -3.4e38, 9.0, 9.5, -9.0])
    got = _tanh_through_op(special)
    want = torch.tanh(special)
    torch.testing.assert_close(got, want, rtol=3e-7, atol=0, equal_nan=True)
    # Exactly ±1 where float32 tanh rounds to ±1 (so 1 - h² is 0 there, as in torch).
    big = special.abs() >= 9.0109
    assert torch.equal(got[big], torch.sign(special[big]))
    assert (got[~torch.isnan(got)].abs() <= 1).all()


# ---- the fused cell step, called directly ------------------------------------------------
_SHIM = r"""
#include <cstdint>
#include <exception>
#include <cstdio>
#include "rnn.h"
#include "cpu/rnn_cpu.h"
extern "C" int cell_fwd(int dbl, const void* x, const void* h, const void* wih, const void* whh,
                        const void* bih, const void* bhh, void* out, int64_t B, int64_t I,
                        int64_t H, int relu) {
  rnnfused::StepFwdParams p;
  p.x = x; p.h = h; p.w_ih = wih; p.w_hh = whh; p.b_ih = bih; p.b_hh = bhh; p.h_new = out;
  p.B = B; p.I = I; p.H = H; p.cell.act = relu ? rnnfused::Act::Relu : rnnfused::Act::Tanh;
  try { rnnfused::step_fwd_cpu(p, dbl ? c10::ScalarType::Double : c10::ScalarType::Float, true); }
  catch (const std::exception& e) { std::fprintf(stderr, "%s\n", e.what()); return 1; }
  return 0;
}
extern "C" int cell_bwd(int dbl, const void* g, const void* hn, const void* wih, const void* whh,
                        void* dz, void* gx, void* gh, int64_t B, int64_t I, int64_t H, int relu) {
  rnnfused::StepBwdParams p;
  p.grad_h_new = g; p.h_new = hn; p.w_ih = wih; p.w_hh = whh; p.dz = dz; p.grad_x = gx;
  p.grad_h = gh; p.B = B; p.I = I; p.H = H; p.cell.act = relu ? rnnfused::Act::Relu : rnnfused::Act::Tanh;
  try { rnnfused::step_bwd_cpu(p, dbl ? c10::ScalarType::Double : c10::ScalarType::Float, true); }
  catch (const std::exception& e) { std::fprintf(stderr, "%s\n", e.what()); return 1; }
  return 0;
}
"""


@pytest.fixture(scope="module")
def cell_lib(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the cell shim")
    from rnnfused import _C
    lib_c = os.path.abspath(_C.__file__)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = tmp_path_factory.mktemp("cellshim")
    src = d / "shim.cpp"
    src.write_text(_SHIM)
    inc = os.path.join(os.path.dirname(torch.__file__), "include")
    so = d / "libshim.so"
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-std=c++17", f"-I{inc}",
                    f"-I{os.path.join(root, 'csrc')}", str(src), "-o", str(so),
                    lib_c, f"-Wl,-rpath,{os.path.dirname(lib_c)}"], check=True)
    lib = ctypes.CDLL(str(so))
    for fn in (lib.cell_fwd, lib.cell_bwd):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 3 + [ctypes.c_int]
    return lib


def _p(t):
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("B,I,H", [(1, 3, 5), (1, 64, 64), (4, 10, 33), (7, 100, 17),
                                   (64, 128, 256), (70, 9, 40), (3, 0, 8)])
def test_cell_vs_float64(cell_lib, isa, B, I, H, relu, dtype):
    g = torch.Generator().manual_seed(B * 1000 + H)
    x = torch.randn(B, I, generator=g, dtype=dtype)
    h = torch.randn(B, H, generator=g, dtype=dtype)
    wih = torch.randn(H, I, generator=g, dtype=dtype) / max(I, 1) ** 0.5
    whh = torch.randn(H, H, generator=g, dtype=dtype) / H ** 0.5
    bih = torch.randn(H, generator=g, dtype=dtype)
    bhh = None if H % 2 else torch.randn(H, generator=g, dtype=dtype)
    out = torch.empty(B, H, dtype=dtype)
    dbl = int(dtype == torch.float64)
    assert cell_lib.cell_fwd(dbl, _p(x), _p(h), _p(wih), _p(whh), _p(bih), _p(bhh), _p(out),
                             B, I, H, int(relu)) == 0
    x64, h64 = (t.double().requires_grad_() for t in (x, h))
    # Zeros added to b_ih, one per output: their gradient is dz, the pre-activation's gradient.
    pre = torch.zeros(B, H, dtype=torch.float64, requires_grad=True)
    ref = rnn_cell_ref(x64, h64, wih.double(), whh.double(), bih.double() + pre,
                       None if bhh is None else bhh.double(), relu)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(out.double(), ref.detach(), **tol)
    # nn.RNNCell on the same weights, in the same dtype.
    cell = torch.nn.RNNCell(I, H, bias=True, nonlinearity="relu" if relu else "tanh", dtype=dtype)
    with torch.no_grad():
        cell.weight_ih.copy_(wih), cell.weight_hh.copy_(whh), cell.bias_ih.copy_(bih)
        cell.bias_hh.copy_(bhh if bhh is not None else torch.zeros(H, dtype=dtype))
        torch.testing.assert_close(out, cell(x, h), **tol)
    # Backward: dz, grad_x = dz W_ih, grad_h = dz W_hh, from the cell's own output.
    gout = torch.randn(B, H, generator=g, dtype=dtype)
    dz = torch.empty(B, H, dtype=dtype)
    gx = torch.empty(B, I, dtype=dtype)
    gh = torch.empty(B, H, dtype=dtype)
    assert cell_lib.cell_bwd(dbl, _p(gout), _p(out), _p(wih), _p(whh), _p(dz), _p(gx), _p(gh),
                             B, I, H, int(relu)) == 0
    dz_ref, gx_ref, gh_ref = torch.autograd.grad(ref, [pre, x64, h64], gout.double())
    torch.testing.assert_close(dz.double(), dz_ref, **tol)
    torch.testing.assert_close(gx.double(), gx_ref, **tol)
    torch.testing.assert_close(gh.double(), gh_ref, **tol)
    # Either gradient may be skipped (nullptr); dz still comes.
    gh2 = torch.full((B, H), 7.0, dtype=dtype)
    assert cell_lib.cell_bwd(dbl, _p(gout), _p(out), _p(wih), _p(whh), _p(dz), _p(None), _p(gh2),
                             B, I, H, int(relu)) == 0
    torch.testing.assert_close(gh2.double(), gh_ref, **tol)


def test_cell_threads_bitwise_identical(cell_lib):
    """Above its work threshold the cell splits columns across threads: same bits as one."""
    B, I, H = 64, 256, 256
    g = torch.Generator().manual_seed(5)
    x, h = torch.randn(B, I, generator=g), torch.randn(B, H, generator=g)
    wih, whh = torch.randn(H, I, generator=g) / 16, torch.randn(H, H, generator=g) / 16
    outs = []
    for th in (1, 2):
        torch.set_num_threads(th)
        out = torch.empty(B, H)
        assert cell_lib.cell_fwd(0, _p(x), _p(h), _p(wih), _p(whh), _p(None), _p(None), _p(out),
                                 B, I, H, 0) == 0
        outs.append(out)
    torch.set_num_threads(1)
    assert torch.equal(outs[0], outs[1])
