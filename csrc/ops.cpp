// rnnfused: op schemas, input validation, allocation, the hoisted GEMMs, and dispatch to the
// CPU or CUDA recurrence. Every TORCH_CHECK names the tensor it is about.
//
//   rnnfused::rnn_fwd  one layer, one direction, whole sequence -> (output, h_n)
//   rnnfused::rnn_bwd  its backward (BPTT)                     -> (d input, d h0, d w_ih, d w_hh, d bias)
#include <Python.h>

#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>

#include "cpu/rnn_cpu.h"
#include "rnn.h"

// Build variants of this one file:
//  - the extension rnnfused._C: ops in namespace `rnnfused`, CPU kernels, and the CUDA kernels
//    where built with CUDA (RNNFUSED_WITH_CUDA);
//  - the test-only emulation build (RNNFUSED_EMULATE, see docs/emulator.md): ops in the namespace
//    RNNFUSED_OPS_NAMESPACE (rnnfused_emu), and CPU tensors take the CUDA path, whose kernels then
//    run under the SIMT emulator on the host.
#ifndef RNNFUSED_OPS_NAMESPACE
#define RNNFUSED_OPS_NAMESPACE rnnfused
#endif

#ifdef RNNFUSED_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
#include "cuda/rnn_cuda.h"
#endif

namespace rnnfused {
namespace {

using at::Tensor;
using std::optional;

// Whether a tensor's recurrence runs in the CUDA kernels: CUDA tensors, or, in the emulation
// build, every tensor (CPU tensors, whose "device" is the emulator). The one place that decides.
bool on_cuda_path(const Tensor& t) {
#ifdef RNNFUSED_EMULATE
  return t.is_cpu();
#else
  return t.is_cuda();
#endif
}

// The CUDA stream the kernels are enqueued on (the current one); none under the emulator.
void* cuda_stream(const Tensor& t) {
#ifdef RNNFUSED_WITH_CUDA
  if (t.is_cuda()) return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
#endif
  (void)t;
  return nullptr;
}

bool is_half_type(c10::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

c10::ScalarType acc_type(c10::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// The CPU kernels compute half types in float: an optional tensor, converted.
optional<Tensor> to_float(const optional<Tensor>& t) {
  return t.has_value() ? optional<Tensor>(t->to(at::kFloat)) : std::nullopt;
}

void check_same(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "rnnfused: ", name, " is on ", t.device(),
              " but input is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "rnnfused: ", name, " has dtype ",
              t.scalar_type(), " but input has dtype ", ref.scalar_type());
}

void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "rnnfused: ", name, " must have shape ", expected, ", got ",
              t.sizes());
}

// Validates the arguments shared by rnn_fwd and rnn_bwd; returns (T, B, I, H).
std::array<int64_t, 4> check_args(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                  const Tensor& w_hh, const optional<Tensor>& lengths) {
  TORCH_CHECK(input.dim() == 3, "rnnfused: input must be 3-D (T, B, input_size), got ",
              input.dim(), "-D");
  const auto dt = input.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
              "rnnfused: input dtype must be float32, float64, float16 or bfloat16, got ", dt);
  TORCH_CHECK(input.device().is_cpu() || input.device().is_cuda(),
              "rnnfused: unsupported device ", input.device());
#ifndef RNNFUSED_WITH_CUDA
  TORCH_CHECK(!input.device().is_cuda(),
              "rnnfused: this build has no CUDA kernels (it was built CPU-only); reinstall with a "
              "CUDA toolkit and a CUDA build of torch, or set FORCE_CUDA=1");
#endif
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  TORCH_CHECK(w_hh.dim() == 2, "rnnfused: w_hh must be 2-D, got ", w_hh.dim(), "-D");
  const int64_t H = w_hh.size(0);
  check_same(h0, input, "h0");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {H, H}, "w_hh");
  check_shape(w_ih, {H, I}, "w_ih");
  check_shape(h0, {B, H}, "h0");
  if (lengths.has_value()) {
    const Tensor& l = *lengths;
    TORCH_CHECK(l.scalar_type() == at::kLong, "rnnfused: lengths must be int64, got ",
                l.scalar_type());
    TORCH_CHECK(l.device() == input.device(), "rnnfused: lengths is on ", l.device(),
                " but input is on ", input.device());
    check_shape(l, {B}, "lengths");
  }
  return {T, B, I, H};
}

// The tensors behind RNNCommon's pointers, kept alive while the kernels run.
struct Common {
  Tensor lengths, state;
};

Common fill_common(RNNCommon& c, const Tensor& like, const optional<Tensor>& lengths, int64_t T,
                   int64_t B, int64_t H, bool relu, bool reverse) {
  Common keep;
  if (lengths.has_value()) {
    keep.lengths = lengths->contiguous();
    c.lengths = keep.lengths.data_ptr<int64_t>();
  }
  keep.state = at::empty({2, B, H}, like.options().dtype(acc_type(like.scalar_type())));
  c.state = keep.state.data_ptr();
  c.T = T;
  c.B = B;
  c.H = H;
  c.relu = relu;
  c.reverse = reverse;
  return keep;
}

void run_fwd(const RNNFwdParams& p, const Tensor& like) {
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (on_cuda_path(like)) {
    rnn_fwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  rnn_fwd_cpu(p, like.scalar_type());
}

void run_bwd(const RNNBwdParams& p, const Tensor& like) {
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (on_cuda_path(like)) {
    rnn_bwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  rnn_bwd_cpu(p, like.scalar_type());
}

std::tuple<Tensor, Tensor> rnn_fwd(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                   const Tensor& w_hh, const optional<Tensor>& b_ih,
                                   const optional<Tensor>& b_hh, const optional<Tensor>& lengths,
                                   bool relu, bool reverse) {
  // The op runs in the dtypes it is given (module.py applies autocast's casting rule); the GEMMs
  // below must not be autocast again, e.g. when backward runs inside an autocast region.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [T, B, I, H] = check_args(input, h0, w_ih, w_hh, lengths);
  if (b_ih.has_value()) { check_same(*b_ih, input, "b_ih"); check_shape(*b_ih, {H}, "b_ih"); }
  if (b_hh.has_value()) { check_same(*b_hh, input, "b_hh"); check_shape(*b_hh, {H}, "b_hh"); }

  if (!on_cuda_path(input) && is_half_type(input.scalar_type())) {
    // The CPU kernels run in float; half types are stored, not computed, in low precision.
    auto [out, hn] = rnn_fwd(input.to(at::kFloat), h0.to(at::kFloat), w_ih.to(at::kFloat),
                             w_hh.to(at::kFloat), to_float(b_ih), to_float(b_hh), lengths, relu, reverse);
    return {out.to(input.scalar_type()), hn.to(input.scalar_type())};
  }

#ifdef RNNFUSED_WITH_CUDA
  c10::cuda::OptionalCUDAGuard guard;
  if (input.is_cuda()) guard.set_device(input.device());
#endif
  const Tensor x = input.contiguous();
  const Tensor h0c = h0.contiguous();
  const Tensor whh = w_hh.contiguous();
  Tensor out = at::empty({T, B, H}, x.options());
  Tensor hn = at::empty({B, H}, x.options());

  // The hoisted input projection, written straight into the output: out = x W_ihᵀ + b.
  if (T * B > 0) {
    Tensor out2 = out.view({T * B, H});
    const Tensor x2 = x.view({T * B, I});
    if (b_ih.has_value() || b_hh.has_value()) {
      Tensor bias = b_ih.has_value() && b_hh.has_value() ? *b_ih + *b_hh
                    : b_ih.has_value()                   ? *b_ih
                                                         : *b_hh;
      at::addmm_out(out2, bias, x2, w_ih.t());
    } else {
      at::mm_out(out2, x2, w_ih.t());
    }
  }

  RNNFwdParams p;
  const Common keep = fill_common(p, x, lengths, T, B, H, relu, reverse);
  p.out = out.data_ptr();
  p.h0 = h0c.data_ptr();
  p.w_hh = whh.data_ptr();
  p.hn = hn.data_ptr();
  run_fwd(p, x);
  return {out, hn};
}

// output_mask: which of (input, w_ih, w_hh, bias) need a gradient; grad_h0 always comes (it is
// free). A gradient that is not needed comes back as an empty tensor of shape (0,).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_bwd(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const optional<Tensor>& lengths, bool relu, bool reverse, std::array<bool, 4> output_mask) {
  // As in rnn_fwd: no autocast inside the op.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [T, B, I, H] = check_args(input, h0, w_ih, w_hh, lengths);
  check_same(output, input, "output");
  check_shape(output, {T, B, H}, "output");
  if (grad_output.has_value()) {
    check_same(*grad_output, input, "grad_output");
    check_shape(*grad_output, {T, B, H}, "grad_output");
  }
  if (grad_hn.has_value()) {
    check_same(*grad_hn, input, "grad_hn");
    check_shape(*grad_hn, {B, H}, "grad_hn");
  }

  if (!on_cuda_path(input) && is_half_type(input.scalar_type())) {
    const auto dt = input.scalar_type();
    auto r = rnn_bwd(to_float(grad_output), to_float(grad_hn), input.to(at::kFloat), h0.to(at::kFloat),
                     w_ih.to(at::kFloat), w_hh.to(at::kFloat), output.to(at::kFloat), lengths,
                     relu, reverse, output_mask);
    return {std::get<0>(r).to(dt), std::get<1>(r).to(dt), std::get<2>(r).to(dt),
            std::get<3>(r).to(dt), std::get<4>(r).to(dt)};
  }

#ifdef RNNFUSED_WITH_CUDA
  c10::cuda::OptionalCUDAGuard guard;
  if (input.is_cuda()) guard.set_device(input.device());
#endif
  const auto opts = input.options();
  const Tensor out = output.contiguous();
  const Tensor whh = w_hh.contiguous();
  const Tensor h0c = h0.contiguous();
  Tensor go, ghn;
  if (grad_output.has_value()) go = grad_output->contiguous();
  if (grad_hn.has_value()) ghn = grad_hn->contiguous();

  Tensor dz = at::empty({T, B, H}, opts);
  Tensor dz_first = at::empty({B, H}, opts);
  Tensor grad_h0 = at::empty({B, H}, opts);
  RNNBwdParams p;
  const Common keep = fill_common(p, input, lengths, T, B, H, relu, reverse);
  p.grad_out = go.defined() ? go.data_ptr() : nullptr;
  p.grad_hn = ghn.defined() ? ghn.data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.w_hh = whh.data_ptr();
  p.dz = dz.data_ptr();
  p.dz_first = dz_first.data_ptr();
  p.grad_h0 = grad_h0.data_ptr();
  run_bwd(p, input);

  // Whole-sequence GEMMs over dz.
  const Tensor dz2 = dz.view({T * B, H});
  // Outputs must not alias one another: a fresh empty tensor for each gradient not wanted.
  Tensor grad_input, grad_w_ih, grad_w_hh, grad_bias;
  if (output_mask[0]) grad_input = at::mm(dz2, w_ih).view({T, B, I});
  if (output_mask[1]) grad_w_ih = at::mm(dz2.t(), input.contiguous().view({T * B, I}));
  if (output_mask[2]) {
    // dW_hh = Σ_t dz_tᵀ h_prev(t). Each item's first step has h_prev = h0 (dz_first); every
    // other active step's h_prev is the neighbouring output (t-1 forward, t+1 reverse). Where
    // that neighbour is inactive, dz or the neighbour's (zero) output makes the term vanish.
    grad_w_hh = at::mm(dz_first.t(), h0c);
    if (T > 1) {
      const Tensor dz_rest = reverse ? dz.narrow(0, 0, T - 1) : dz.narrow(0, 1, T - 1);
      const Tensor h_rest = reverse ? out.narrow(0, 1, T - 1) : out.narrow(0, 0, T - 1);
      grad_w_hh.addmm_(dz_rest.reshape({(T - 1) * B, H}).t(), h_rest.reshape({(T - 1) * B, H}));
    }
  }
  if (output_mask[3]) grad_bias = dz2.sum(0);
  for (Tensor* g : {&grad_input, &grad_w_ih, &grad_w_hh, &grad_bias})
    if (!g->defined()) *g = at::empty({0}, opts);
  return {grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_bias};
}

bool built_with_cuda() {
#ifdef RNNFUSED_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

// TORCH_LIBRARY pastes its namespace argument: one more expansion step so the macro is expanded.
#define RNNFUSED_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define RNNFUSED_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)

RNNFUSED_LIBRARY(RNNFUSED_OPS_NAMESPACE, m) {
  m.def(
      "rnn_fwd(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? lengths, bool relu, bool reverse) -> (Tensor, Tensor)");
  m.def(
      "rnn_bwd(Tensor? grad_output, Tensor? grad_hn, Tensor input, Tensor h0, Tensor w_ih, "
      "Tensor w_hh, Tensor output, Tensor? lengths, bool relu, bool reverse, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CPU, m) {
  m.impl("rnn_fwd", &rnn_fwd);
  m.impl("rnn_bwd", &rnn_bwd);
}

#ifdef RNNFUSED_WITH_CUDA
RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CUDA, m) {
  m.impl("rnn_fwd", &rnn_fwd);
  m.impl("rnn_bwd", &rnn_bwd);
}
#endif

}  // namespace rnnfused

// A plain Python extension module: importing rnnfused._C loads the library, which registers
// the ops above with the dispatcher. It also answers a few questions about the build.
namespace {

PyObject* py_built_with_cuda(PyObject*, PyObject*) {
  return PyBool_FromLong(rnnfused::built_with_cuda() ? 1 : 0);
}

#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
PyObject* py_cuda_kernel_name(PyObject*, PyObject* args) {
  long long B = 0, H = 0;
  const char* dtype = nullptr;
  int backward = 0;
  if (!PyArg_ParseTuple(args, "LLsp", &B, &H, &dtype, &backward)) return nullptr;
  const std::string d(dtype);
  c10::ScalarType st = d == "float64"   ? at::kDouble
                       : d == "float16" ? at::kHalf
                       : d == "bfloat16" ? at::kBFloat16
                                         : at::kFloat;
  try {
    return PyUnicode_FromString(rnnfused::rnn_cuda_kernel_name(B, H, st, backward != 0));
  } catch (const std::exception& e) {  // never let a C++ exception cross into Python's C API
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}
#endif

PyMethodDef methods[] = {
    {"built_with_cuda", py_built_with_cuda, METH_NOARGS,
     "True if this build has the CUDA kernels."},
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
    {"cuda_kernel_name", py_cuda_kernel_name, METH_VARARGS,
     "cuda_kernel_name(B, H, dtype: str, backward: bool) -> the kernel the CUDA launcher picks."},
#endif
    {nullptr, nullptr, 0, nullptr}};

#ifndef TORCH_EXTENSION_NAME  // set by torch.utils.cpp_extension: the module's own name
#define TORCH_EXTENSION_NAME _C
#endif
#define RNNFUSED_STR2(x) #x
#define RNNFUSED_STR(x) RNNFUSED_STR2(x)
#define RNNFUSED_CAT2(a, b) a##b
#define RNNFUSED_CAT(a, b) RNNFUSED_CAT2(a, b)

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, RNNFUSED_STR(TORCH_EXTENSION_NAME),
                          "rnnfused C++/CUDA ops", -1, methods};

}  // namespace

PyMODINIT_FUNC RNNFUSED_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module_def); }
