// rnnfused: op schemas, input validation, allocation, the hoisted GEMMs, the loop over layers and
// directions, autograd, and dispatch to the CPU or CUDA kernels. Every TORCH_CHECK names the
// tensor it is about.
//
//   rnnfused::rnn           nn.RNN's whole forward (all layers, directions, inter-layer dropout;
//                           padded or packed input) in one call      -> (output, h_n)
//   rnnfused::rnn_train     the same, plus what its backward needs    -> (output, h_n, saved)
//   rnnfused::rnn_backward  backward of rnn_train                     -> (d input, d hx, d params)
//   rnnfused::rnn_fwd       one layer, one direction, whole sequence  -> (output, h_n)
//   rnnfused::rnn_bwd       its backward (BPTT)   -> (d input, d h0, d w_ih, d w_hh, d bias)
//   rnnfused::rnn_cell      one fused step, nn.RNNCell's forward      -> h'
//   rnnfused::rnn_cell_bwd  its backward          -> (d input, d hx, d w_ih, d w_hh, d bias)
//
// Autograd is C++ (torch::autograd::Function, registered for the Autograd key, as torchvision's
// ops do): rnn, rnn_fwd and rnn_cell save their inputs and outputs and call the matching backward
// op. When a graph of the gradient is requested (create_graph=True: double backward), the backward
// instead recomputes the forward from the saved inputs with differentiable ATen ops and
// differentiates that, so second derivatives are exact. The fake (shape-only) kernels that
// torch.compile and torch.export use are registered in Python (rnnfused/ops.py).
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/rnn_cpu.h"
#include "policy.h"
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
#define RNNFUSED_STR2(x) #x
#define RNNFUSED_STR(x) RNNFUSED_STR2(x)

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
using at::TensorList;
using std::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ------------------------------------------------------------------------------------------------
// Devices, dtypes, checks

// Whether a tensor's recurrence runs in the CUDA kernels: CUDA tensors, or, in the emulation
// build, every tensor (CPU tensors, whose "device" is the emulator). The one place that decides.
bool on_cuda_path(const Tensor& t) {
#ifdef RNNFUSED_EMULATE
  return t.is_cpu();
#else
  return t.is_cuda();
#endif
}

#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
// The CUDA stream the kernels are enqueued on (the current one); none under the emulator.
void* cuda_stream(const Tensor& t) {
#ifdef RNNFUSED_WITH_CUDA
  if (t.is_cuda()) return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
#endif
  (void)t;
  return nullptr;
}
#endif

// Makes `t`'s device current for the scope (CUDA builds; nothing otherwise).
struct DeviceGuard {
#ifdef RNNFUSED_WITH_CUDA
  c10::cuda::OptionalCUDAGuard guard;
  explicit DeviceGuard(const Tensor& t) {
    if (t.is_cuda()) guard.set_device(t.device());
  }
#else
  explicit DeviceGuard(const Tensor&) {}
#endif
};

bool is_half_type(c10::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// The CPU kernels compute half types in float; they are stored, not computed, in low precision.
bool computes_in_float(const Tensor& t) { return !on_cuda_path(t) && is_half_type(t.scalar_type()); }

c10::ScalarType acc_type(c10::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

optional<Tensor> to_float(const optional<Tensor>& t) {
  return t.has_value() ? optional<Tensor>(t->to(at::kFloat)) : std::nullopt;
}

optional<Tensor> contiguous(const optional<Tensor>& t) {
  return t.has_value() ? optional<Tensor>(t->contiguous()) : std::nullopt;
}

const void* ptr_or_null(const optional<Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

void check_dtype_device(const Tensor& input) {
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

void check_bias(const optional<Tensor>& b, const Tensor& input, int64_t H, const char* name) {
  if (!b.has_value()) return;
  check_same(*b, input, name);
  check_shape(*b, {H}, name);
}

void check_lengths(const optional<Tensor>& lengths, const Tensor& input, int64_t B) {
  if (!lengths.has_value()) return;
  const Tensor& l = *lengths;
  TORCH_CHECK(l.scalar_type() == at::kLong, "rnnfused: lengths must be int64, got ", l.scalar_type());
  TORCH_CHECK(l.device() == input.device(), "rnnfused: lengths is on ", l.device(),
              " but input is on ", input.device());
  check_shape(l, {B}, "lengths");
}

// Validates the arguments shared by rnn_fwd and rnn_bwd; returns (T, B, I, H).
std::array<int64_t, 4> check_args(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                  const Tensor& w_hh, const optional<Tensor>& lengths) {
  TORCH_CHECK(input.dim() == 3, "rnnfused: input must be 3-D (T, B, input_size), got ",
              input.dim(), "-D");
  check_dtype_device(input);
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  TORCH_CHECK(w_hh.dim() == 2, "rnnfused: w_hh must be 2-D, got ", w_hh.dim(), "-D");
  const int64_t H = w_hh.size(0);
  check_same(h0, input, "h0");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {H, H}, "w_hh");
  check_shape(w_ih, {H, I}, "w_ih");
  check_shape(h0, {B, H}, "h0");
  check_lengths(lengths, input, B);
  return {T, B, I, H};
}

// The ops run in the dtypes they are given (module.py applies autocast's casting rule): the ATen
// calls inside must not be autocast again, e.g. when backward runs inside an autocast region.
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

// ------------------------------------------------------------------------------------------------
// The fused cell step (FusedRNNCell, and FusedRNN's step input mode)

// A cell step's weights and sizes (the per-step pointers x, h, h_new are the caller's); the
// weights contiguous, as the kernels read them.
Cell elman(bool relu) { return Cell{CellKind::Elman, relu ? Act::Relu : Act::Tanh}; }

StepFwdParams cell_params(const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
                          const optional<Tensor>& b_hh, int64_t B, bool relu) {
  StepFwdParams p;
  p.cell = elman(relu);
  p.w_ih = w_ih.data_ptr();
  p.w_hh = w_hh.data_ptr();
  p.b_ih = ptr_or_null(b_ih);
  p.b_hh = ptr_or_null(b_hh);
  p.B = B;
  p.I = w_ih.size(1);
  p.H = w_hh.size(0);
  return p;
}

// h_new = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh); every tensor contiguous, h_new (B, H) written.
void cell_step(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh,
               const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, bool relu, Tensor& h_new) {
  const bool cuda = on_cuda_path(x);
  StepFwdParams p = cell_params(w_ih, w_hh, b_ih, b_hh, x.size(0), relu);
  p.x = x.data_ptr();
  p.h = h.data_ptr();
  p.h_new = h_new.data_ptr();
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (cuda) {
    step_fwd_cuda(p, x.scalar_type(), cuda_stream(x));
    return;
  }
#endif
  step_fwd_cpu(p, x.scalar_type(), policy::cpu_step_fused(p.B, p.I, p.H, /*backward=*/false));
}

// Backward of a cell step, the sequential part: dz = g ⊙ act'(h_new), grad_x = dz W_ih,
// grad_h = dz W_hh (each only where wanted: pass undefined tensors to skip).
void cell_step_bwd(const Tensor& g, const Tensor& h_new, const Tensor& w_ih, const Tensor& w_hh,
                   bool relu, Tensor& dz, Tensor& grad_x, Tensor& grad_h) {
  const bool cuda = on_cuda_path(g);
  StepBwdParams p;
  p.cell = elman(relu);
  p.grad_h_new = g.data_ptr();
  p.h_new = h_new.data_ptr();
  p.w_ih = w_ih.data_ptr();
  p.w_hh = w_hh.data_ptr();
  p.dz = dz.data_ptr();
  p.grad_x = grad_x.defined() ? grad_x.data_ptr() : nullptr;
  p.grad_h = grad_h.defined() ? grad_h.data_ptr() : nullptr;
  p.B = g.size(0);
  p.I = w_ih.size(1);
  p.H = w_hh.size(0);
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (cuda) {
    step_bwd_cuda(p, g.scalar_type(), cuda_stream(g));
    return;
  }
#endif
  step_bwd_cpu(p, g.scalar_type(), policy::cpu_step_fused(p.B, p.I, p.H, /*backward=*/true));
}

// ------------------------------------------------------------------------------------------------
// One layer, one direction

// The tensors behind SeqCommon's pointers, kept alive while the kernels run.
struct Common {
  Tensor lengths, state;
};

// need_state: whether the kernels use SeqCommon::state (the CPU forward does only for packed
// input: its fused path reads h_{t-1} from the output, its BLAS path keeps a state only where
// items end at different steps); the allocation is skipped otherwise.
Common fill_common(SeqCommon& c, const Tensor& like, const optional<Tensor>& lengths, int64_t T,
                   int64_t B, int64_t H, bool relu, bool reverse, bool need_state = true) {
  Common keep;
  if (lengths.has_value()) {
    keep.lengths = lengths->contiguous();
    c.lengths = keep.lengths.data_ptr<int64_t>();
  }
  if (need_state) {
    keep.state = at::empty({2, B, H}, like.options().dtype(acc_type(like.scalar_type())));
    c.state = keep.state.data_ptr();
  }
  c.T = T;
  c.B = B;
  c.H = H;
  c.cell = elman(relu);
  c.reverse = reverse;
  return keep;
}

// The CPU recurrence's path for this call (timed once per shape where it is not clear).
policy::CpuSeqPath cpu_seq_path(const SeqCommon& p, c10::ScalarType dtype, bool backward) {
  if (p.T == 0 || p.B == 0) return {};
  return policy::cpu_seq_path(p.B, p.H, dtype, backward, cpu_isa_id());
}

void run_fwd(const SeqFwdParams& p, const Tensor& like) {
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (on_cuda_path(like)) {
    seq_fwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  seq_fwd_cpu(p, like.scalar_type(), cpu_seq_path(p, like.scalar_type(), /*backward=*/false));
}

void run_bwd(const SeqBwdParams& p, const Tensor& like) {
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
  if (on_cuda_path(like)) {
    seq_bwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  seq_bwd_cpu(p, like.scalar_type(), cpu_seq_path(p, like.scalar_type(), /*backward=*/true));
}

void copy_into(Tensor& dst, const Tensor& src) {
  if (dst.is_cpu() && src.is_cpu() && dst.scalar_type() == src.scalar_type() &&
      dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), src.nbytes());  // B·H elements: skip dispatch
  } else {
    dst.copy_(src);
  }
}

// The weights of one layer-direction.
struct LayerWeights {
  Tensor w_ih, w_hh;
  optional<Tensor> b_ih, b_hh;
};

// Forward of one layer-direction in a dtype the kernels compute in. input (T, B, I) and h0 (B, H)
// with any strides; returns the output (T, B, H) and writes h_n into `hn` (B, H, contiguous).
Tensor layer_fwd_kernels(const Tensor& input, const Tensor& h0_, const LayerWeights& w,
                         const optional<Tensor>& lengths, bool relu, bool reverse, Tensor& hn) {
  DeviceGuard device(input);
  const Tensor x = input.contiguous();
  const Tensor h0 = h0_.contiguous();
  const Tensor whh = w.w_hh.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = whh.size(0);
  Tensor out = at::empty({T, B, H}, x.options());
  TORCH_INTERNAL_ASSERT(hn.is_contiguous());

  if (policy::input_mode(on_cuda_path(x), T, B, I, H, lengths.has_value()) == policy::InputMode::Step) {
    const Tensor wih = w.w_ih.contiguous();
    const auto bih = contiguous(w.b_ih), bhh = contiguous(w.b_hh);
    if (!on_cuda_path(x) && policy::cpu_step_fused(B, I, H, /*backward=*/false)) {
      // CPU, fused cell kernel: straight over the pointers, no tensor (no dispatcher call) a step.
      StepFwdParams p = cell_params(wih, whh, bih, bhh, B, relu);
      const int64_t es = static_cast<int64_t>(x.element_size());
      const char* xp = static_cast<const char*>(x.data_ptr());
      char* op = static_cast<char*>(out.data_ptr());
      const void* prev = h0.data_ptr();
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = reverse ? T - 1 - s : s;
        p.x = xp + t * B * I * es;
        p.h = prev;
        p.h_new = op + t * B * H * es;
        step_fwd_cpu(p, x.scalar_type(), /*fused=*/true);
        prev = p.h_new;
      }
      std::memcpy(hn.data_ptr(), prev, static_cast<size_t>(B * H * es));
      return out;
    }
    Tensor prev = h0;
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = reverse ? T - 1 - s : s;
      Tensor cur = out.select(0, t);
      cell_step(x.select(0, t), prev, wih, whh, bih, bhh, relu, cur);
      prev = cur;
    }
    copy_into(hn, prev);
    return out;
  }

  // The hoisted input projection, written straight into the output: out = x W_ihᵀ + b. On the
  // CPU, our own row kernels where they beat the BLAS call plus the bias add (small I and H).
  if (!on_cuda_path(x) && T * B > 0) {
    const Tensor wih = w.w_ih.contiguous();
    const auto bih = contiguous(w.b_ih), bhh = contiguous(w.b_hh);
    input_proj_cpu(x.data_ptr(), wih.data_ptr(), ptr_or_null(bih), ptr_or_null(bhh), out.data_ptr(),
                   T * B, I, H, x.scalar_type(), policy::cpu_proj_own(T * B, I, H));
  } else if (T * B > 0) {
    Tensor out2 = out.view({T * B, H});
    const Tensor x2 = x.view({T * B, I});
    if (w.b_ih.has_value() || w.b_hh.has_value()) {
      const Tensor bias = w.b_ih.has_value() && w.b_hh.has_value() ? *w.b_ih + *w.b_hh
                          : w.b_ih.has_value()                     ? *w.b_ih
                                                                   : *w.b_hh;
      at::addmm_out(out2, bias, x2, w.w_ih.t());
    } else {
      at::mm_out(out2, x2, w.w_ih.t());
    }
  }
  SeqFwdParams p;
  const Common keep = fill_common(p, x, lengths, T, B, H, relu, reverse,
                                  /*need_state=*/on_cuda_path(x) || lengths.has_value());
  p.out = out.data_ptr();
  p.h0 = h0.data_ptr();
  p.w_hh = whh.data_ptr();
  p.hn = hn.data_ptr();
  run_fwd(p, x);
  return out;
}

// Forward of one layer-direction in the storage dtype (half types on the CPU go through float).
Tensor layer_fwd(const Tensor& x, const Tensor& h0, const LayerWeights& w,
                 const optional<Tensor>& lengths, bool relu, bool reverse, Tensor& hn) {
  if (computes_in_float(x)) {
    const LayerWeights wf{w.w_ih.to(at::kFloat), w.w_hh.to(at::kFloat), to_float(w.b_ih), to_float(w.b_hh)};
    Tensor hn_f = at::empty(hn.sizes(), hn.options().dtype(at::kFloat));
    const Tensor out = layer_fwd_kernels(x.to(at::kFloat), h0.to(at::kFloat), wf, lengths, relu, reverse, hn_f);
    hn.copy_(hn_f);
    return out.to(x.scalar_type());
  }
  return layer_fwd_kernels(x, h0, w, lengths, relu, reverse, hn);
}

// Gradients of one layer-direction; undefined where not wanted (grad_h0 is always computed).
struct LayerGrads {
  Tensor input, h0, w_ih, w_hh, bias;
};

// mask: which of (input, w_ih, w_hh, bias) need a gradient.
LayerGrads layer_bwd_kernels(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                             const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                             const Tensor& w_hh, const Tensor& output,
                             const optional<Tensor>& lengths, bool relu, bool reverse,
                             std::array<bool, 4> mask) {
  DeviceGuard device(input);
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2), H = w_hh.size(0);
  const auto opts = input.options();
  const Tensor out = output.contiguous();
  const Tensor whh = w_hh.contiguous();
  const Tensor h0c = h0.contiguous();
  Tensor go, ghn;
  if (grad_output.has_value()) go = grad_output->contiguous();
  if (grad_hn.has_value()) ghn = grad_hn->contiguous();

  Tensor dz = at::empty({T, B, H}, opts);
  Tensor dz_first = at::empty({B, H}, opts);
  LayerGrads g;
  g.h0 = at::empty({B, H}, opts);
  SeqBwdParams p;
  const Common keep = fill_common(p, input, lengths, T, B, H, relu, reverse);
  p.grad_out = go.defined() ? go.data_ptr() : nullptr;
  p.grad_hn = ghn.defined() ? ghn.data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.w_hh = whh.data_ptr();
  p.dz = dz.data_ptr();
  p.dz_first = dz_first.data_ptr();
  p.grad_h0 = g.h0.data_ptr();
  run_bwd(p, input);

  // Whole-sequence GEMMs over dz.
  const Tensor dz2 = dz.view({T * B, H});
  if (mask[0]) g.input = at::mm(dz2, w_ih).view({T, B, I});
  if (mask[1]) g.w_ih = at::mm(dz2.t(), input.contiguous().view({T * B, I}));
  if (mask[2]) {
    // dW_hh = Σ_t dz_tᵀ h_prev(t). Each item's first step has h_prev = h0 (dz_first); every
    // other active step's h_prev is the neighbouring output (t-1 forward, t+1 reverse). Where
    // that neighbour is inactive, dz or the neighbour's (zero) output makes the term vanish.
    g.w_hh = at::mm(dz_first.t(), h0c);
    if (T > 1) {
      const Tensor dz_rest = reverse ? dz.narrow(0, 0, T - 1) : dz.narrow(0, 1, T - 1);
      const Tensor h_rest = reverse ? out.narrow(0, 1, T - 1) : out.narrow(0, 0, T - 1);
      g.w_hh.addmm_(dz_rest.reshape({(T - 1) * B, H}).t(), h_rest.reshape({(T - 1) * B, H}));
    }
  }
  if (mask[3]) g.bias = dz2.sum(0);
  return g;
}

LayerGrads layer_bwd(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                     const Tensor& input, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                     const Tensor& output, const optional<Tensor>& lengths, bool relu, bool reverse,
                     std::array<bool, 4> mask) {
  if (computes_in_float(input)) {
    const auto dt = input.scalar_type();
    LayerGrads g = layer_bwd_kernels(to_float(grad_output), to_float(grad_hn), input.to(at::kFloat),
                                     h0.to(at::kFloat), w_ih.to(at::kFloat), w_hh.to(at::kFloat),
                                     output.to(at::kFloat), lengths, relu, reverse, mask);
    for (Tensor* t : {&g.input, &g.h0, &g.w_ih, &g.w_hh, &g.bias})
      if (t->defined()) *t = t->to(dt);
    return g;
  }
  return layer_bwd_kernels(grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths, relu,
                           reverse, mask);
}

// A fresh empty (0,) tensor for each gradient not wanted: op outputs must not alias each other.
Tensor or_empty(const Tensor& t, const at::TensorOptions& opts) {
  return t.defined() ? t : at::empty({0}, opts);
}

// ------------------------------------------------------------------------------------------------
// rnn_fwd / rnn_bwd: one layer-direction

std::tuple<Tensor, Tensor> rnn_fwd(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                   const Tensor& w_hh, const optional<Tensor>& b_ih,
                                   const optional<Tensor>& b_hh, const optional<Tensor>& lengths,
                                   bool relu, bool reverse) {
  NoAutocast no_autocast;
  const auto [T, B, I, H] = check_args(input, h0, w_ih, w_hh, lengths);
  check_bias(b_ih, input, H, "b_ih");
  check_bias(b_hh, input, H, "b_hh");
  Tensor hn = at::empty({B, H}, input.options());
  Tensor out = layer_fwd(input, h0, {w_ih, w_hh, b_ih, b_hh}, lengths, relu, reverse, hn);
  return {out, hn};
}

// output_mask: which of (input, w_ih, w_hh, bias) need a gradient; grad_h0 always comes (it is
// free). A gradient that is not needed comes back as an empty tensor of shape (0,).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_bwd(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const optional<Tensor>& lengths, bool relu, bool reverse, std::array<bool, 4> output_mask) {
  NoAutocast no_autocast;
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
  const LayerGrads g = layer_bwd(grad_output, grad_hn, input, h0, w_ih, w_hh, output, lengths,
                                 relu, reverse, output_mask);
  const auto opts = input.options();
  return {or_empty(g.input, opts), g.h0, or_empty(g.w_ih, opts), or_empty(g.w_hh, opts),
          or_empty(g.bias, opts)};
}

// ------------------------------------------------------------------------------------------------
// rnn_cell / rnn_cell_bwd

// nn.RNNCell's checks and messages (aten/src/ATen/native/RNN.cpp), then ours.
void check_cell_args(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh) {
  TORCH_CHECK(input.dim() == 2, "rnnfused: input must be 2-D (batch, input_size), got ",
              input.dim(), "-D");
  TORCH_CHECK(hx.dim() == 2, "rnnfused: hx must be 2-D (batch, hidden_size), got ", hx.dim(), "-D");
  TORCH_CHECK(w_ih.dim() == 2 && w_hh.dim() == 2, "rnnfused: w_ih and w_hh must be 2-D");
  check_dtype_device(input);
  const int64_t H = w_hh.size(0);
  TORCH_CHECK(input.size(1) == w_ih.size(1), "input has inconsistent input_size: got ",
              input.size(1), " expected ", w_ih.size(1));
  TORCH_CHECK(input.size(0) == hx.size(0), "Input batch size ", input.size(0),
              " doesn't match hidden0 batch size ", hx.size(0));
  TORCH_CHECK(hx.size(1) == H, "hidden0 has inconsistent hidden_size: got ", hx.size(1),
              ", expected ", H);
  check_same(hx, input, "hx");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {H, H}, "w_hh");
  check_shape(w_ih, {H, input.size(1)}, "w_ih");
}

Tensor rnn_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, bool relu) {
  NoAutocast no_autocast;
  check_cell_args(input, hx, w_ih, w_hh);
  const int64_t H = w_hh.size(0);
  check_bias(b_ih, input, H, "b_ih");
  check_bias(b_hh, input, H, "b_hh");
  DeviceGuard device(input);
  if (computes_in_float(input)) {
    return rnn_cell(input.to(at::kFloat), hx.to(at::kFloat), w_ih.to(at::kFloat), w_hh.to(at::kFloat),
                    to_float(b_ih), to_float(b_hh), relu)
        .to(input.scalar_type());
  }
  Tensor h_new = at::empty({input.size(0), H}, input.options());
  cell_step(input.contiguous(), hx.contiguous(), w_ih.contiguous(), w_hh.contiguous(),
            contiguous(b_ih), contiguous(b_hh), relu, h_new);
  return h_new;
}

// output_mask: which of (input, hx, w_ih, w_hh, bias) need a gradient; the others come back as
// empty tensors of shape (0,).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_cell_bwd(
    const Tensor& grad_hy, const Tensor& input, const Tensor& hx, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& hy, bool relu, std::array<bool, 5> output_mask) {
  NoAutocast no_autocast;
  check_cell_args(input, hx, w_ih, w_hh);
  const int64_t B = input.size(0), I = input.size(1), H = w_hh.size(0);
  check_same(hy, input, "hy");
  check_shape(hy, {B, H}, "hy");
  check_same(grad_hy, input, "grad_hy");
  check_shape(grad_hy, {B, H}, "grad_hy");
  DeviceGuard device(input);
  const auto opts = input.options();
  if (computes_in_float(input)) {
    auto r = rnn_cell_bwd(grad_hy.to(at::kFloat), input.to(at::kFloat), hx.to(at::kFloat),
                          w_ih.to(at::kFloat), w_hh.to(at::kFloat), hy.to(at::kFloat), relu, output_mask);
    const auto dt = input.scalar_type();
    return {std::get<0>(r).to(dt), std::get<1>(r).to(dt), std::get<2>(r).to(dt),
            std::get<3>(r).to(dt), std::get<4>(r).to(dt)};
  }
  const Tensor wih = w_ih.contiguous(), whh = w_hh.contiguous();
  Tensor dz = at::empty({B, H}, opts);
  Tensor grad_x = output_mask[0] ? at::empty({B, I}, opts) : Tensor();
  Tensor grad_h = output_mask[1] ? at::empty({B, H}, opts) : Tensor();
  cell_step_bwd(grad_hy.contiguous(), hy.contiguous(), wih, whh, relu, dz, grad_x, grad_h);
  Tensor grad_w_ih, grad_w_hh, grad_bias;
  if (output_mask[2]) grad_w_ih = at::mm(dz.t(), input);
  if (output_mask[3]) grad_w_hh = at::mm(dz.t(), hx);
  if (output_mask[4]) grad_bias = dz.sum(0);
  return {or_empty(grad_x, opts), or_empty(grad_h, opts), or_empty(grad_w_ih, opts),
          or_empty(grad_w_hh, opts), or_empty(grad_bias, opts)};
}

// ------------------------------------------------------------------------------------------------
// rnn / rnn_train / rnn_backward: nn.RNN's whole forward

struct RNNConfig {
  bool has_biases = true;
  int64_t L = 1, D = 1;
  bool relu = false;
  double dropout = 0;
  bool train = false;
  int64_t per_layer() const { return has_biases ? 4 : 2; }  // params per layer-direction
  bool dropout_active() const { return dropout > 0 && train && L > 1; }
};

// params in nn.RNN's order (_flat_weights): per layer, per direction: w_ih, w_hh[, b_ih, b_hh].
LayerWeights layer_weights(TensorList params, const RNNConfig& c, int64_t l, int64_t d) {
  const int64_t k = (l * c.D + d) * c.per_layer();
  LayerWeights w{params[k], params[k + 1], std::nullopt, std::nullopt};
  if (c.has_biases) {
    w.b_ih = params[k + 2];
    w.b_hh = params[k + 3];
  }
  return w;
}

// A PackedSequence's layout: per-item lengths, and where each packed row lives in the padded
// (T, B) grid (batch_sizes non-increasing: the items active at step t are the first
// batch_sizes[t]).
struct Packing {
  int64_t T = 0, B = 0, N = 0;
  Tensor lengths;  // (B,) int64 on the data's device
  Tensor index;    // (N,) int64 on the data's device: packed row n -> t·B + b

  // (N, F) -> (T, B, F), zeros where inactive. Differentiable (index_copy_ into fresh zeros).
  Tensor pad(const Tensor& packed) const {
    const int64_t F = packed.size(1);
    return at::zeros({T * B, F}, packed.options()).index_copy_(0, index, packed).view({T, B, F});
  }
  // (T, B, F) -> (N, F). Differentiable (index_select).
  Tensor pack(const Tensor& padded) const {
    return padded.reshape({T * B, padded.size(2)}).index_select(0, index);
  }
};

Packing make_packing(const Tensor& batch_sizes, const Tensor& data, const Tensor& hx) {
  TORCH_CHECK(batch_sizes.dim() == 1 && batch_sizes.scalar_type() == at::kLong &&
                  batch_sizes.device().is_cpu(),
              "rnnfused: batch_sizes must be a 1-D int64 CPU tensor (a PackedSequence's), got ",
              batch_sizes.dim(), "-D ", batch_sizes.scalar_type(), " on ", batch_sizes.device());
  const Tensor bs_t = batch_sizes.contiguous();
  const int64_t* bs = bs_t.data_ptr<int64_t>();
  Packing pk;
  pk.T = bs_t.numel();
  pk.B = pk.T > 0 ? bs[0] : 0;
  for (int64_t t = 0; t < pk.T; ++t) {
    TORCH_CHECK(bs[t] > 0 && bs[t] <= pk.B, "rnnfused: batch_sizes must be positive and "
                "non-increasing, got ", batch_sizes);
    if (t > 0) TORCH_CHECK(bs[t] <= bs[t - 1], "rnnfused: batch_sizes must be non-increasing, got ",
                           batch_sizes);
    pk.N += bs[t];
  }
  TORCH_CHECK(pk.N == data.size(0), "rnnfused: packed input has ", data.size(0),
              " rows but batch_sizes sum to ", pk.N);
  TORCH_CHECK(hx.size(1) == pk.B, "rnnfused: hx has batch size ", hx.size(1),
              " but the packed input's is ", pk.B);
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  Tensor lengths = at::zeros({pk.B}, cpu_long);
  Tensor index = at::empty({pk.N}, cpu_long);
  int64_t* len = lengths.data_ptr<int64_t>();
  int64_t* idx = index.data_ptr<int64_t>();
  int64_t n = 0;
  for (int64_t t = 0; t < pk.T; ++t) {
    for (int64_t b = 0; b < bs[t]; ++b) {
      idx[n++] = t * pk.B + b;
      len[b] += 1;
    }
  }
  pk.lengths = lengths.to(data.device());
  pk.index = index.to(data.device());
  return pk;
}

// Validates rnn's arguments; returns the config and (for packed input) the packing.
RNNConfig check_rnn_args(const Tensor& input, const Tensor& hx, TensorList params,
                         const optional<Tensor>& batch_sizes, bool has_biases, int64_t num_layers,
                         bool bidirectional, bool relu, double dropout, bool train) {
  RNNConfig c{has_biases, num_layers, bidirectional ? 2 : 1, relu, dropout, train};
  const bool packed = batch_sizes.has_value();
  TORCH_CHECK(input.dim() == (packed ? 2 : 3), "rnnfused: input must be ",
              packed ? "2-D (packed rows, input_size) with batch_sizes" : "3-D (T, B, input_size)",
              ", got ", input.dim(), "-D");
  check_dtype_device(input);
  TORCH_CHECK(num_layers >= 1, "rnnfused: num_layers must be at least 1, got ", num_layers);
  TORCH_CHECK(dropout >= 0 && dropout <= 1, "rnnfused: dropout must be in [0, 1], got ", dropout);
  TORCH_CHECK(static_cast<int64_t>(params.size()) == c.L * c.D * c.per_layer(),
              "rnnfused: expected ", c.L * c.D * c.per_layer(), " parameter tensors for ", c.L,
              " layer(s), ", c.D, " direction(s), bias=", has_biases, "; got ", params.size());
  TORCH_CHECK(params[1].dim() == 2, "rnnfused: w_hh must be 2-D, got ", params[1].dim(), "-D");
  const int64_t H = params[1].size(0);
  TORCH_CHECK(hx.dim() == 3, "rnnfused: hx must be 3-D (num_layers * num_directions, B, H), got ",
              hx.dim(), "-D");
  const int64_t B = packed ? hx.size(1) : input.size(1);
  check_same(hx, input, "hx");
  check_shape(hx, {c.L * c.D, B, H}, "hx");
  for (int64_t l = 0; l < c.L; ++l) {
    const int64_t I = l == 0 ? input.size(input.dim() - 1) : c.D * H;
    for (int64_t d = 0; d < c.D; ++d) {
      const LayerWeights w = layer_weights(params, c, l, d);
      check_same(w.w_ih, input, "w_ih");
      check_same(w.w_hh, input, "w_hh");
      check_shape(w.w_ih, {H, I}, "w_ih");
      check_shape(w.w_hh, {H, H}, "w_hh");
      check_bias(w.b_ih, input, H, "b_ih");
      check_bias(w.b_hh, input, H, "b_hh");
    }
  }
  return c;
}

// F.dropout's noise on the CPU (aten/src/ATen/native/Dropout.cpp, _dropout_impl): Bernoulli(1-p)
// scaled by 1/(1-p); all zeros for p = 1.
Tensor dropout_noise(const Tensor& like, double p) {
  if (p >= 1) return at::zeros_like(like, at::MemoryFormat::Contiguous);
  Tensor noise = at::empty_like(like, at::MemoryFormat::Contiguous);
  noise.bernoulli_(1 - p);
  noise.div_(1 - p);
  return noise;
}

struct RNNResult {
  Tensor output, h_n;
  // For backward: each layer's output but the last (packed rows where the input is packed), then
  // (while dropout is active) the dropout noise applied to each of them.
  std::vector<Tensor> saved;
};

RNNResult rnn_impl(const Tensor& input, const Tensor& hx, TensorList params,
                   const optional<Tensor>& batch_sizes, const RNNConfig& c, bool want_saved) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  const Tensor x = packed ? pk.pad(input) : input;
  const int64_t B = x.size(1), H = params[1].size(0);
  RNNResult r;
  r.h_n = at::empty({c.L * c.D, B, H}, input.options());
  std::vector<Tensor> noises;
  Tensor layer_in = x;
  for (int64_t l = 0; l < c.L; ++l) {
    std::array<Tensor, 2> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      Tensor hn = r.h_n.select(0, l * c.D + d);
      outs[d] = layer_fwd(layer_in, hx.select(0, l * c.D + d), layer_weights(params, c, l, d),
                          lengths, c.relu, d == 1, hn);
    }
    const Tensor layer_out = c.D == 1 ? outs[0] : at::cat({outs[0], outs[1]}, 2);
    if (l == c.L - 1) {
      r.output = packed ? pk.pack(layer_out) : layer_out;
      break;
    }
    const Tensor out_saved = packed ? pk.pack(layer_out) : layer_out;
    if (want_saved) r.saved.push_back(out_saved);
    if (c.dropout_active()) {
      // On the same rows nn.RNN applies it to (packed data, or the padded output).
      const Tensor noise = dropout_noise(out_saved, c.dropout);
      const Tensor dropped = out_saved * noise;
      layer_in = packed ? pk.pad(dropped) : dropped;
      if (want_saved) noises.push_back(noise);
    } else {
      layer_in = layer_out;
    }
  }
  r.saved.insert(r.saved.end(), noises.begin(), noises.end());
  return r;
}

std::tuple<Tensor, Tensor> rnn(const Tensor& input, const Tensor& hx, TensorList params,
                               const optional<Tensor>& batch_sizes, bool has_biases,
                               int64_t num_layers, bool bidirectional, bool relu, double dropout,
                               bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, relu, dropout, train);
  RNNResult r = rnn_impl(input, hx, params, batch_sizes, c, /*want_saved=*/false);
  return {r.output, r.h_n};
}

std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_train(
    const Tensor& input, const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, bool relu, double dropout, bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, relu, dropout, train);
  RNNResult r = rnn_impl(input, hx, params, batch_sizes, c, /*want_saved=*/true);
  return {r.output, r.h_n, r.saved};
}

// output_mask: which of (input, hx, params...) need a gradient (2 + len(params) entries); the
// others come back as empty tensors of shape (0,).
std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes, const Tensor& output,
    TensorList saved, bool has_biases, int64_t num_layers, bool bidirectional, bool relu,
    double dropout, bool train, const c10::List<bool>& output_mask_list) {
  NoAutocast no_autocast;
  const std::vector<bool> output_mask(output_mask_list.begin(), output_mask_list.end());
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, relu, dropout, train);
  const int64_t P = c.per_layer(), nP = static_cast<int64_t>(params.size());
  TORCH_CHECK(static_cast<int64_t>(output_mask.size()) == 2 + nP, "rnnfused: output_mask needs ",
              2 + nP, " entries, got ", output_mask.size());
  const int64_t n_saved = (c.L - 1) * (c.dropout_active() ? 2 : 1);
  TORCH_CHECK(static_cast<int64_t>(saved.size()) == n_saved, "rnnfused: expected ", n_saved,
              " saved tensors, got ", saved.size());
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  auto padded = [&](const Tensor& t) { return packed ? pk.pad(t) : t; };
  const int64_t H = params[1].size(0);
  const int64_t B = packed ? pk.B : input.size(1);
  const auto opts = input.options();

  // Whether anything at or below layer l needs a gradient (so layer l's input gradient is needed).
  std::vector<bool> below(c.L + 1, false);
  below[0] = output_mask[0];
  for (int64_t l = 0; l < c.L; ++l) {
    bool any = below[l];
    for (int64_t d = 0; d < c.D; ++d) {
      any = any || output_mask[1];  // hx's rows
      for (int64_t k = 0; k < P; ++k) any = any || output_mask[2 + (l * c.D + d) * P + k];
    }
    below[l + 1] = any;
  }

  Tensor grad_hx = output_mask[1] ? at::empty({c.L * c.D, B, H}, opts) : Tensor();
  std::vector<Tensor> grad_params(nP);
  optional<Tensor> g_layer;  // d loss / d (padded) output of the current layer
  if (grad_output.has_value()) g_layer = padded(*grad_output);
  for (int64_t l = c.L - 1; l >= 0; --l) {
    const Tensor layer_in =
        l == 0 ? padded(input)
               : (c.dropout_active() ? padded(saved[l - 1] * saved[c.L - 1 + l - 1]) : padded(saved[l - 1]));
    const Tensor layer_out = padded(l == c.L - 1 ? output : saved[l]);
    Tensor grad_in;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t k = (l * c.D + d) * P;
      const std::array<bool, 4> mask{below[l], output_mask[2 + k], output_mask[2 + k + 1],
                                     c.has_biases && (output_mask[2 + k + 2] || output_mask[2 + k + 3])};
      optional<Tensor> go;
      if (g_layer.has_value()) go = c.D == 1 ? *g_layer : g_layer->narrow(2, d * H, H);
      optional<Tensor> ghn;
      if (grad_hn.has_value()) ghn = grad_hn->select(0, l * c.D + d);
      const Tensor out_d = c.D == 1 ? layer_out : layer_out.narrow(2, d * H, H);
      const LayerWeights w = layer_weights(params, c, l, d);
      LayerGrads g = layer_bwd(go, ghn, layer_in, hx.select(0, l * c.D + d), w.w_ih, w.w_hh, out_d,
                               lengths, c.relu, d == 1, mask);
      if (grad_hx.defined()) grad_hx.select(0, l * c.D + d).copy_(g.h0);
      if (output_mask[2 + k]) grad_params[k] = g.w_ih;
      if (output_mask[2 + k + 1]) grad_params[k + 1] = g.w_hh;
      if (c.has_biases) {
        // b_ih and b_hh get the same gradient; two tensors, so their .grad never alias.
        if (output_mask[2 + k + 2]) grad_params[k + 2] = g.bias;
        if (output_mask[2 + k + 3]) grad_params[k + 3] = output_mask[2 + k + 2] ? g.bias.clone() : g.bias;
      }
      if (g.input.defined()) grad_in = grad_in.defined() ? grad_in.add_(g.input) : g.input;
    }
    if (l == 0) {
      Tensor grad_input;
      if (output_mask[0]) grad_input = packed ? pk.pack(grad_in) : grad_in;
      for (Tensor& g : grad_params) g = or_empty(g, opts);
      return {or_empty(grad_input, opts), or_empty(grad_hx, opts), grad_params};
    }
    if (!below[l]) {  // nothing further down needs a gradient
      for (Tensor& g : grad_params) g = or_empty(g, opts);
      return {at::empty({0}, opts), or_empty(grad_hx, opts), grad_params};
    }
    // Through the dropout between layers l-1 and l: input = output * noise.
    g_layer = c.dropout_active() ? grad_in * padded(saved[c.L - 1 + l - 1]) : grad_in;
  }
  TORCH_INTERNAL_ASSERT(false, "unreachable");
}

// ------------------------------------------------------------------------------------------------
// Differentiable recomputation in ATen ops, for double backward only (slow and plain, like
// rnnfused/reference.py): its autograd graph gives exact second derivatives.

std::tuple<Tensor, Tensor> composite_layer(const Tensor& x, const Tensor& h0, const LayerWeights& w,
                                           const optional<Tensor>& lengths, bool relu, bool reverse) {
  const int64_t T = x.size(0);
  Tensor pre = at::matmul(x, w.w_ih.t());
  if (w.b_ih.has_value()) pre = pre + *w.b_ih;
  if (w.b_hh.has_value()) pre = pre + *w.b_hh;
  Tensor h = h0;
  std::vector<Tensor> outs(T);
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const Tensor z = pre.select(0, t) + at::mm(h, w.w_hh.t());
    const Tensor h_new = relu ? at::relu(z) : at::tanh(z);
    if (lengths.has_value()) {
      const Tensor active = lengths->gt(t).unsqueeze(1);
      outs[t] = at::where(active, h_new, at::zeros_like(h_new));
      h = at::where(active, h_new, h);
    } else {
      outs[t] = h_new;
      h = h_new;
    }
  }
  return {T > 0 ? at::stack(outs) : at::empty({0, x.size(1), w.w_hh.size(0)}, x.options()), h};
}

std::tuple<Tensor, Tensor> composite_rnn(const Tensor& input, const Tensor& hx, TensorList params,
                                         const optional<Tensor>& batch_sizes, const RNNConfig& c,
                                         TensorList noises) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  Tensor layer_in = packed ? pk.pad(input) : input;
  std::vector<Tensor> h_n;
  for (int64_t l = 0; l < c.L; ++l) {
    std::vector<Tensor> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      auto [out, hn] = composite_layer(layer_in, hx.select(0, l * c.D + d),
                                       layer_weights(params, c, l, d), lengths, c.relu, d == 1);
      outs.push_back(out);
      h_n.push_back(hn);
    }
    layer_in = c.D == 1 ? outs[0] : at::cat(outs, 2);
    if (l < c.L - 1 && c.dropout_active()) {
      layer_in = packed ? pk.pad(pk.pack(layer_in) * noises[l]) : layer_in * noises[l];
    }
  }
  return {packed ? pk.pack(layer_in) : layer_in, at::stack(h_n)};
}

Tensor composite_cell(const Tensor& x, const Tensor& h, const LayerWeights& w, bool relu) {
  Tensor z = at::mm(x, w.w_ih.t()) + at::mm(h, w.w_hh.t());
  if (w.b_ih.has_value()) z = z + *w.b_ih;
  if (w.b_hh.has_value()) z = z + *w.b_hh;
  return relu ? at::relu(z) : at::tanh(z);
}

// Gradients of `outputs` (with `grad_outputs`, undefined = not used) w.r.t. the inputs whose
// `wanted` flag is set, with a graph (create_graph): undefined where not wanted or unused.
variable_list grad_with_graph(const variable_list& outputs, const variable_list& grad_outputs,
                              const variable_list& inputs, const std::vector<bool>& wanted) {
  variable_list outs, gos, wrt;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
      outs.push_back(outputs[i]);
      gos.push_back(grad_outputs[i]);
    }
  }
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (wanted[i] && inputs[i].defined() && inputs[i].requires_grad()) {
      wrt.push_back(inputs[i]);
      where.push_back(i);
    }
  }
  variable_list result(inputs.size());
  if (outs.empty() || wrt.empty()) return result;
  const variable_list g = torch::autograd::grad(outs, wrt, gos, /*retain_graph=*/true,
                                                /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t j = 0; j < where.size(); ++j) result[where[j]] = g[j];
  return result;
}

// ------------------------------------------------------------------------------------------------
// Autograd (C++), registered for the Autograd key

// The op `name` of this build's namespace, as a typed handle (looked up once).
template <class Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow((std::string(RNNFUSED_STR(RNNFUSED_OPS_NAMESPACE)) + "::" + name).c_str(), "")
      .typed<Sig>();
}

bool any_requires_grad(std::initializer_list<const Tensor*> ts, TensorList more = {}) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  for (const Tensor& t : more)
    if (t.requires_grad()) return true;
  return false;
}

Tensor opt_tensor(const optional<Tensor>& t) { return t.has_value() ? *t : Tensor(); }
optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : std::nullopt; }

using RnnSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, TensorList,
                                          const optional<Tensor>&, bool, int64_t, bool, bool,
                                          double, bool);
using RnnTrainSig = std::tuple<Tensor, Tensor, std::vector<Tensor>>(
    const Tensor&, const Tensor&, TensorList, const optional<Tensor>&, bool, int64_t, bool, bool,
    double, bool);
using RnnBackwardSig = std::tuple<Tensor, Tensor, std::vector<Tensor>>(
    const optional<Tensor>&, const optional<Tensor>&, const Tensor&, const Tensor&, TensorList,
    const optional<Tensor>&, const Tensor&, TensorList, bool, int64_t, bool, bool, double, bool,
    const c10::List<bool>&);

// Which of input, h0, w_ih, w_hh, b_ih, b_hh (saved as s[0..5]) need a gradient. Absent biases
// (undefined s[4], s[5]) are not inputs of the autograd node, so the node's input edges are
// counted among the defined ones only.
std::vector<bool> input_grad_mask(torch::autograd::AutogradContext* ctx,
                                   const torch::autograd::variable_list& s) {
  std::vector<bool> mask(6, false);
  size_t edge = 0;
  for (int i = 0; i < 6; ++i) {
    if (i >= 4 && !s[i].defined()) continue;
    mask[i] = ctx->needs_input_grad(edge++);
  }
  return mask;
}

struct RNNFunction : public torch::autograd::Function<RNNFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               TensorList params, const optional<Tensor>& batch_sizes,
                               bool has_biases, int64_t num_layers, bool bidirectional, bool relu,
                               double dropout, bool train) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnTrainSig>("rnn_train");
    auto [out, hn, saved] = op.call(input, hx, params, batch_sizes, has_biases, num_layers,
                                    bidirectional, relu, dropout, train);
    variable_list to_save{input, hx};
    to_save.insert(to_save.end(), params.begin(), params.end());
    to_save.push_back(out);
    to_save.insert(to_save.end(), saved.begin(), saved.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    ctx->saved_data["batch_sizes"] = opt_tensor(batch_sizes);
    ctx->saved_data["has_biases"] = has_biases;
    ctx->saved_data["num_layers"] = num_layers;
    ctx->saved_data["bidirectional"] = bidirectional;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["train"] = train;
    ctx->set_materialize_grads(false);
    return {out, hn};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const int64_t nP = ctx->saved_data["n_params"].toInt();
    const Tensor& input = s[0];
    const Tensor& hx = s[1];
    const std::vector<Tensor> params(s.begin() + 2, s.begin() + 2 + nP);
    const Tensor& output = s[2 + nP];
    const std::vector<Tensor> saved(s.begin() + 3 + nP, s.end());
    const optional<Tensor> batch_sizes = opt(ctx->saved_data["batch_sizes"].toTensor());
    const bool has_biases = ctx->saved_data["has_biases"].toBool();
    const int64_t num_layers = ctx->saved_data["num_layers"].toInt();
    const bool bidirectional = ctx->saved_data["bidirectional"].toBool();
    const bool relu = ctx->saved_data["relu"].toBool();
    const double dropout = ctx->saved_data["dropout"].toDouble();
    const bool train = ctx->saved_data["train"].toBool();

    // One gradient per forward argument: input, hx, params..., then 7 non-differentiable ones.
    variable_list result(2 + nP + 7);
    std::vector<bool> mask(2 + nP);
    bool any = false;
    for (int64_t i = 0; i < 2 + nP; ++i) any |= (mask[i] = ctx->needs_input_grad(i));
    if (!any || (!grads[0].defined() && !grads[1].defined())) return result;

    if (at::GradMode::is_enabled()) {  // a graph of the gradient is wanted: double backward
      const RNNConfig c{has_biases, num_layers, bidirectional ? 2 : 1, relu, dropout, train};
      const std::vector<Tensor> noises(saved.begin() + (c.L - 1), saved.end());
      auto [out, hn] = composite_rnn(input, hx, params, batch_sizes, c, noises);
      variable_list inputs{input, hx};
      inputs.insert(inputs.end(), params.begin(), params.end());
      const variable_list g = grad_with_graph({out, hn}, {grads[0], grads[1]}, inputs, mask);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    static const auto op = op_handle<RnnBackwardSig>("rnn_backward");
    c10::List<bool> mask_list;
    for (bool b : mask) mask_list.push_back(b);
    auto [g_in, g_hx, g_params] =
        op.call(opt(grads[0]), opt(grads[1]), input, hx, params, batch_sizes, output, saved,
                has_biases, num_layers, bidirectional, relu, dropout, train, mask_list);
    if (mask[0]) result[0] = g_in;
    if (mask[1]) result[1] = g_hx;
    for (int64_t i = 0; i < nP; ++i)
      if (mask[2 + i]) result[2 + i] = g_params[i];
    return result;
  }
};

std::tuple<Tensor, Tensor> rnn_autograd(const Tensor& input, const Tensor& hx, TensorList params,
                                        const optional<Tensor>& batch_sizes, bool has_biases,
                                        int64_t num_layers, bool bidirectional, bool relu,
                                        double dropout, bool train) {
  if (!any_requires_grad({&input, &hx}, params)) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnSig>("rnn");
    return op.call(input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, relu,
                   dropout, train);
  }
  const variable_list r = RNNFunction::apply(input, hx, params, batch_sizes, has_biases, num_layers,
                                             bidirectional, relu, dropout, train);
  return {r[0], r[1]};
}

using RnnFwdSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                             const Tensor&, const optional<Tensor>&,
                                             const optional<Tensor>&, const optional<Tensor>&,
                                             bool, bool);
using RnnBwdSig = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const optional<Tensor>&, const optional<Tensor>&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, const optional<Tensor>&, bool, bool, std::array<bool, 4>);

struct RNNFwdFunction : public torch::autograd::Function<RNNFwdFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& h0,
                               const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
                               const optional<Tensor>& b_hh, const optional<Tensor>& lengths,
                               bool relu, bool reverse) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnFwdSig>("rnn_fwd");
    auto [out, hn] = op.call(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse);
    ctx->save_for_backward({input, h0, w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh), out});
    ctx->saved_data["lengths"] = opt_tensor(lengths);
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["reverse"] = reverse;
    ctx->set_materialize_grads(false);
    return {out, hn};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const optional<Tensor> lengths = opt(ctx->saved_data["lengths"].toTensor());
    const bool relu = ctx->saved_data["relu"].toBool();
    const bool reverse = ctx->saved_data["reverse"].toBool();
    // input, h0, w_ih, w_hh, b_ih, b_hh (variable inputs 0..5; absent biases count as inputs of
    // the node only when given, so look them up by position among the defined ones).
    variable_list result(9);
    const std::vector<bool> mask = input_grad_mask(ctx, s);
    const bool any = std::find(mask.begin(), mask.end(), true) != mask.end();
    if (!any || (!grads[0].defined() && !grads[1].defined())) return result;

    if (at::GradMode::is_enabled()) {  // double backward
      const LayerWeights w{s[2], s[3], opt(s[4]), opt(s[5])};
      auto [out, hn] = composite_layer(s[0], s[1], w, lengths, relu, reverse);
      const variable_list g = grad_with_graph({out, hn}, {grads[0], grads[1]},
                                              {s[0], s[1], s[2], s[3], s[4], s[5]}, mask);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    static const auto op = op_handle<RnnBwdSig>("rnn_bwd");
    auto [d_in, d_h0, d_wih, d_whh, d_b] =
        op.call(opt(grads[0]), opt(grads[1]), s[0], s[1], s[2], s[3], s[6], lengths, relu, reverse,
                {mask[0], mask[2], mask[3], mask[4] || mask[5]});
    if (mask[0]) result[0] = d_in;
    if (mask[1]) result[1] = d_h0;
    if (mask[2]) result[2] = d_wih;
    if (mask[3]) result[3] = d_whh;
    // b_ih and b_hh get the same gradient; two tensors, so their .grad never alias.
    if (mask[4]) result[4] = d_b;
    if (mask[5]) result[5] = mask[4] ? d_b.clone() : d_b;
    return result;
  }
};

std::tuple<Tensor, Tensor> rnn_fwd_autograd(const Tensor& input, const Tensor& h0,
                                            const Tensor& w_ih, const Tensor& w_hh,
                                            const optional<Tensor>& b_ih,
                                            const optional<Tensor>& b_hh,
                                            const optional<Tensor>& lengths, bool relu,
                                            bool reverse) {
  const Tensor bi = opt_tensor(b_ih), bh = opt_tensor(b_hh);
  if (!any_requires_grad({&input, &h0, &w_ih, &w_hh, &bi, &bh})) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnFwdSig>("rnn_fwd");
    return op.call(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse);
  }
  const variable_list r =
      RNNFwdFunction::apply(input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse);
  return {r[0], r[1]};
}

using RnnCellSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const optional<Tensor>&, const optional<Tensor>&, bool);
using RnnCellBwdSig = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
    std::array<bool, 5>);

struct RNNCellFunction : public torch::autograd::Function<RNNCellFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
                               const optional<Tensor>& b_hh, bool relu) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnCellSig>("rnn_cell");
    Tensor hy = op.call(input, hx, w_ih, w_hh, b_ih, b_hh, relu);
    ctx->save_for_backward({input, hx, w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh), hy});
    ctx->saved_data["relu"] = relu;
    ctx->set_materialize_grads(false);
    return {hy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const bool relu = ctx->saved_data["relu"].toBool();
    variable_list result(7);
    const std::vector<bool> mask = input_grad_mask(ctx, s);
    const bool any = std::find(mask.begin(), mask.end(), true) != mask.end();
    if (!any || !grads[0].defined()) return result;

    if (at::GradMode::is_enabled()) {  // double backward
      const Tensor hy = composite_cell(s[0], s[1], {s[2], s[3], opt(s[4]), opt(s[5])}, relu);
      const variable_list g =
          grad_with_graph({hy}, {grads[0]}, {s[0], s[1], s[2], s[3], s[4], s[5]}, mask);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    static const auto op = op_handle<RnnCellBwdSig>("rnn_cell_bwd");
    auto [d_x, d_h, d_wih, d_whh, d_b] = op.call(grads[0], s[0], s[1], s[2], s[3], s[6], relu,
                                                 {mask[0], mask[1], mask[2], mask[3], mask[4] || mask[5]});
    if (mask[0]) result[0] = d_x;
    if (mask[1]) result[1] = d_h;
    if (mask[2]) result[2] = d_wih;
    if (mask[3]) result[3] = d_whh;
    if (mask[4]) result[4] = d_b;
    if (mask[5]) result[5] = mask[4] ? d_b.clone() : d_b;
    return result;
  }
};

Tensor rnn_cell_autograd(const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                         const Tensor& w_hh, const optional<Tensor>& b_ih,
                         const optional<Tensor>& b_hh, bool relu) {
  const Tensor bi = opt_tensor(b_ih), bh = opt_tensor(b_hh);
  if (!any_requires_grad({&input, &hx, &w_ih, &w_hh, &bi, &bh})) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<RnnCellSig>("rnn_cell");
    return op.call(input, hx, w_ih, w_hh, b_ih, b_hh, relu);
  }
  return RNNCellFunction::apply(input, hx, w_ih, w_hh, b_ih, b_hh, relu)[0];
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
  // rnn and rnn_train draw the inter-layer dropout noise from the default generator.
  m.def(
      "rnn(Tensor input, Tensor hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, bool relu, float dropout, bool train) -> (Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "rnn_train(Tensor input, Tensor hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, bool relu, float dropout, bool train) "
      "-> (Tensor, Tensor, Tensor[])",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "rnn_backward(Tensor? grad_output, Tensor? grad_hn, Tensor input, Tensor hx, Tensor[] params, "
      "Tensor? batch_sizes, Tensor output, Tensor[] saved, bool has_biases, int num_layers, "
      "bool bidirectional, bool relu, float dropout, bool train, bool[] output_mask) "
      "-> (Tensor, Tensor, Tensor[])");
  m.def(
      "rnn_fwd(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? lengths, bool relu, bool reverse) -> (Tensor, Tensor)");
  m.def(
      "rnn_bwd(Tensor? grad_output, Tensor? grad_hn, Tensor input, Tensor h0, Tensor w_ih, "
      "Tensor w_hh, Tensor output, Tensor? lengths, bool relu, bool reverse, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rnn_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "bool relu) -> Tensor");
  m.def(
      "rnn_cell_bwd(Tensor grad_hy, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor hy, "
      "bool relu, bool[5] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// The kernels: one implementation for every device (ops.cpp routes each tensor to its kernels).
#define RNNFUSED_IMPL_KERNELS(m)            \
  m.impl("rnn", &rnn);                      \
  m.impl("rnn_train", &rnn_train);          \
  m.impl("rnn_backward", &rnn_backward);    \
  m.impl("rnn_fwd", &rnn_fwd);              \
  m.impl("rnn_bwd", &rnn_bwd);              \
  m.impl("rnn_cell", &rnn_cell);            \
  m.impl("rnn_cell_bwd", &rnn_cell_bwd)

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CPU, m) { RNNFUSED_IMPL_KERNELS(m); }

#ifdef RNNFUSED_WITH_CUDA
RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CUDA, m) { RNNFUSED_IMPL_KERNELS(m); }
#endif

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, Autograd, m) {
  m.impl("rnn", &rnn_autograd);
  m.impl("rnn_fwd", &rnn_fwd_autograd);
  m.impl("rnn_cell", &rnn_cell_autograd);
}

}  // namespace rnnfused

// A plain Python extension module: importing rnnfused._C loads the library, which registers
// the ops above with the dispatcher. It also answers a few questions about the build.
namespace {

PyObject* py_built_with_cuda(PyObject*, PyObject*) {
  return PyBool_FromLong(rnnfused::built_with_cuda() ? 1 : 0);
}

PyObject* py_cpu_isa(PyObject*, PyObject*) {
  try {
    return PyUnicode_FromString(rnnfused::cpu_isa_name());
  } catch (const std::exception& e) {  // e.g. RNNFUSED_CPU_ISA names one the processor lacks
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

// [(name, [choices], what)] for every environment switch (csrc/switches.h).
PyObject* py_switches(PyObject*, PyObject*) {
  const auto& all = rnnfused::switches::all();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(all.size()));
  if (!list) return nullptr;
  for (size_t i = 0; i < all.size(); ++i) {
    PyObject* choices = PyList_New(static_cast<Py_ssize_t>(all[i].choices.size()));
    if (!choices) { Py_DECREF(list); return nullptr; }
    for (size_t j = 0; j < all[i].choices.size(); ++j)
      PyList_SET_ITEM(choices, j, PyUnicode_FromString(all[i].choices[j].c_str()));
    PyList_SET_ITEM(list, i, Py_BuildValue("(sNs)", all[i].name.c_str(), choices, all[i].what.c_str()));
  }
  return list;
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
    return PyUnicode_FromString(rnnfused::cuda_kernel_name(B, H, st, backward != 0));
  } catch (const std::exception& e) {  // never let a C++ exception cross into Python's C API
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}
#endif

PyMethodDef methods[] = {
    {"built_with_cuda", py_built_with_cuda, METH_NOARGS,
     "True if this build has the CUDA kernels."},
    {"switches", py_switches, METH_NOARGS,
     "[(name, choices, what)] for every RNNFUSED_* environment switch the extension reads."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS,
     "The instruction set the CPU kernels run with now: 'avx512', 'avx2', 'default' or 'vec16' "
     "(RNNFUSED_CPU_ISA if set, else the best this processor has)."},
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
    {"cuda_kernel_name", py_cuda_kernel_name, METH_VARARGS,
     "cuda_kernel_name(B, H, dtype: str, backward: bool) -> the kernel the CUDA launcher picks."},
#endif
    {nullptr, nullptr, 0, nullptr}};

#ifndef TORCH_EXTENSION_NAME  // set by torch.utils.cpp_extension: the module's own name
#define TORCH_EXTENSION_NAME _C
#endif
#define RNNFUSED_CAT2(a, b) a##b
#define RNNFUSED_CAT(a, b) RNNFUSED_CAT2(a, b)

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, RNNFUSED_STR(TORCH_EXTENSION_NAME),
                          "rnnfused C++/CUDA ops", -1, methods};

}  // namespace

PyMODINIT_FUNC RNNFUSED_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module_def); }
