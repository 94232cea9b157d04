// rnnfused CPU: one fused cell step, h_new = cell(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), and its
// backward (rnn.h: StepFwdParams, StepBwdParams).
//
// Latency-bound (called once per time step from Python, B = 1..64): the weights are read in
// nn.RNNCell's own layout (no preparation), no allocation, and no thread fork below about 2^20
// multiply-adds. Forward: both products accumulate into the same registers (the dot form,
// kernels/dot_form.h, over the rows of W_ih, then of W_hh), biases and the cell's forward
// applied once. Backward: dz = the cell's backward of g per row, then grad_x = dz W_ih and
// grad_h = dz W_hh (the broadcast form, W_ih and W_hh as stored) while dz is still in L1.
// Both are templates over the cell's definition C (csrc/cells/), entered through
// RNNFUSED_CELL_SWITCH; written for one gate block and no second state (static_assert): with G
// gates, z and dz are (B, G·H) and the products run over G·H columns of W_ih / W_hh (the dot
// form's gate blocks, kernels/dot_form.h), and a second state comes in and goes out beside h.
//
// The BLAS fallbacks (step_fwd_blas, step_bwd_blas) run the same step through ATen for large
// products; their pointwise part is the cell's own ATen form (aten_cell_forward /
// aten_cell_backward below: ATen's tanh and relu, not the kernels' VecMath, as before).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

#include "../cells/switch.h"
#include "../policy.h"
#include "rnn_cpu.h"
#include "rnn_cpu_steps.h"
#include "row_table.h"

namespace rnnfused {
namespace cpu {
namespace {

constexpr int64_t kRowChunk = 64;  // rows per pass (pointer arrays on the stack)

// Runs f(n0, n1) over the columns [0, N), split across `shares` threads.
template <class F>
void over_columns(int64_t N, int64_t shares, const F& f) {
  if (shares <= 1) return f(int64_t(0), N);
  at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto [n0, n1] = share_columns(N, shares, s);
      f(n0, n1);
    }
  });
}

template <class C>
constexpr bool kOneGateNoC = C::kGates == 1 && !C::kHasC;

template <typename T, class C>
void cell_fwd(const StepFwdParams& p) {
  static_assert(kOneGateNoC<C>, "the CPU cell step runs one-gate cells without c (see the top)");
  const T* x = static_cast<const T*>(p.x);
  const T* h = static_cast<const T*>(p.h);
  T* out = static_cast<T*>(p.h_new);
  const int64_t B = p.B, I = p.I, H = p.H;
  if (B <= 0 || H <= 0) return;
  const CellKernels<T, C>& k = isa_tables<T>().template cell<C>();
  const int64_t shares = policy::cpu_step_threads(B * H * (I + H), H);
  for (int64_t b0 = 0; b0 < B; b0 += kRowChunk) {
    const int64_t n = std::min(kRowChunk, B - b0);
    T* y[kRowChunk];
    const T* xr[kRowChunk];
    const T* hr[kRowChunk];
    for (int64_t r = 0; r < n; ++r) {
      y[r] = out + (b0 + r) * H;
      xr[r] = x + (b0 + r) * I;
      hr[r] = h + (b0 + r) * H;
    }
    DotArgs<T> a;
    a.nrows = n;
    a.y = y;
    a.bias0 = static_cast<const T*>(p.b_ih);
    a.bias1 = static_cast<const T*>(p.b_hh);
    a.x0 = xr;
    a.w0 = static_cast<const T*>(p.w_ih);
    a.k0 = I;
    a.x1 = hr;
    a.w1 = static_cast<const T*>(p.w_hh);
    a.k1 = H;
    a.cell = p.cell;
    over_columns(H, shares, [&](int64_t n0, int64_t n1) { k.dot_rows(a, n0, n1); });
  }
}

template <typename T, class C>
void cell_bwd(const StepBwdParams& p) {
  static_assert(kOneGateNoC<C>, "the CPU cell step runs one-gate cells without c (see the top)");
  const T* g = static_cast<const T*>(p.grad_h_new);
  const T* hn = static_cast<const T*>(p.h_new);
  const T* wih = static_cast<const T*>(p.w_ih);
  const T* whh = static_cast<const T*>(p.w_hh);
  T* dz = static_cast<T*>(p.dz);
  T* gx = static_cast<T*>(p.grad_x);
  T* gh = static_cast<T*>(p.grad_h);
  const int64_t B = p.B, I = p.I, H = p.H;
  if (B <= 0) return;
  const IsaTables<T>& t = isa_tables<T>();
  const RowKernels<T>& plain = t.rows;
  const CellKernels<T, C>& k = t.template cell<C>();
  const int64_t shares =
      policy::cpu_step_threads(B * H * ((gx ? I : 0) + (gh ? H : 0)), std::max(gx ? I : 0, gh ? H : 0));
  for (int64_t b0 = 0; b0 < B; b0 += kRowChunk) {
    const int64_t n = std::min(kRowChunk, B - b0);
    const T* d[kRowChunk];
    T* yx[kRowChunk];
    T* yh[kRowChunk];
    for (int64_t r = 0; r < n; ++r) {
      const int64_t b = b0 + r;
      k.dz_row(dz + b * H, g + b * H, nullptr, hn + b * H, H, p.cell);
      d[r] = dz + b * H;
      yx[r] = gx ? gx + b * I : nullptr;
      yh[r] = gh ? gh + b * H : nullptr;
    }
    if (shares <= 1) {
      if (gx && I > 0) plain.vecmat_rows(n, yx, d, wih, H, I, 0, I, /*accumulate=*/false);
      if (gh) plain.vecmat_rows(n, yh, d, whh, H, H, 0, H, /*accumulate=*/false);
      continue;
    }
    // Both products' columns in one split: share s takes its part of grad_x and of grad_h.
    at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        if (gx && I > 0) {
          const auto [n0, n1] = share_columns(I, shares, s);
          plain.vecmat_rows(n, yx, d, wih, H, I, n0, n1, false);
        }
        if (gh) {
          const auto [n0, n1] = share_columns(H, shares, s);
          plain.vecmat_rows(n, yh, d, whh, H, H, n0, n1, false);
        }
      }
    });
  }
}

// The cells' pointwise parts in ATen ops, for the BLAS fallbacks: h = the cell's forward of z
// in place, and dz from the gradient g of h and h.
inline void aten_cell_forward(Elman, at::Tensor& z, Cell cell) {
  if (cell.act == Act::Relu) z.relu_();
  else z.tanh_();
}
inline at::Tensor aten_cell_backward(Elman, const at::Tensor& g, const at::Tensor& h, Cell cell) {
  return cell.act == Act::Relu ? at::threshold_backward(g, h, 0) : at::tanh_backward(g, h);
}

// The same step through ATen's BLAS (large products): h_new = cell(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).
template <typename T, class C>
void step_fwd_blas(const StepFwdParams& p) {
  static_assert(kOneGateNoC<C>, "the CPU cell step runs one-gate cells without c (see the top)");
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto t = [&](const void* ptr, at::IntArrayRef shape) {
    return at::from_blob(const_cast<void*>(ptr), shape, opts);
  };
  const int64_t B = p.B, I = p.I, H = p.H;
  at::Tensor h_new = t(p.h_new, {B, H});
  const at::Tensor x = t(p.x, {B, I}), h = t(p.h, {B, H});
  const at::Tensor w_ih = t(p.w_ih, {H, I}), w_hh = t(p.w_hh, {H, H});
  if (p.b_ih) at::addmm_out(h_new, t(p.b_ih, {H}), x, w_ih.t());
  else at::mm_out(h_new, x, w_ih.t());
  h_new.addmm_(h, w_hh.t());
  if (p.b_hh) h_new.add_(t(p.b_hh, {H}));
  aten_cell_forward(C{}, h_new, p.cell);
}

// Its backward through BLAS: dz = the cell's backward of g, grad_x = dz W_ih, grad_h = dz W_hh.
template <typename T, class C>
void step_bwd_blas(const StepBwdParams& p) {
  static_assert(kOneGateNoC<C>, "the CPU cell step runs one-gate cells without c (see the top)");
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto t = [&](const void* ptr, at::IntArrayRef shape) {
    return at::from_blob(const_cast<void*>(ptr), shape, opts);
  };
  const int64_t B = p.B, I = p.I, H = p.H;
  const at::Tensor g = t(p.grad_h_new, {B, H}), h_new = t(p.h_new, {B, H});
  at::Tensor dz = t(p.dz, {B, H});
  dz.copy_(aten_cell_backward(C{}, g, h_new, p.cell));
  if (p.grad_x) {
    at::Tensor gx = t(p.grad_x, {B, I});
    at::mm_out(gx, dz, t(p.w_ih, {H, I}));
  }
  if (p.grad_h) {
    at::Tensor gh = t(p.grad_h, {B, H});
    at::mm_out(gh, dz, t(p.w_hh, {H, H}));
  }
}

}  // namespace
}  // namespace cpu

namespace cpu {
// A cell with a second state (the LSTM) has no fused cell step yet: the host runs its cell op
// through the layer (T = 1) and never sends it here. Templates, so that the branch not taken is
// not instantiated.
template <typename T, class C>
void step_fwd_of(const StepFwdParams& p, bool fused) {
  if constexpr (C::kHasC) {
    TORCH_CHECK(false, "rnnfused: the CPU cell step of the LSTM is not written yet");
  } else {
    if (fused) cell_fwd<T, C>(p);
    else step_fwd_blas<T, C>(p);
  }
}
template <typename T, class C>
void step_bwd_of(const StepBwdParams& p, bool fused) {
  if constexpr (C::kHasC) {
    TORCH_CHECK(false, "rnnfused: the CPU cell step of the LSTM is not written yet");
  } else {
    if (fused) cell_bwd<T, C>(p);
    else step_bwd_blas<T, C>(p);
  }
}
}  // namespace cpu

void step_fwd_cpu(const StepFwdParams& p, c10::ScalarType dtype, bool fused) {
  RNNFUSED_CELL_SWITCH(p.cell.kind, C, [&] {
    switch (dtype) {
      case c10::ScalarType::Float: return cpu::step_fwd_of<float, C>(p, fused);
      case c10::ScalarType::Double: return cpu::step_fwd_of<double, C>(p, fused);
      default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
    }
  });
}

void step_bwd_cpu(const StepBwdParams& p, c10::ScalarType dtype, bool fused) {
  RNNFUSED_CELL_SWITCH(p.cell.kind, C, [&] {
    switch (dtype) {
      case c10::ScalarType::Float: return cpu::step_bwd_of<float, C>(p, fused);
      case c10::ScalarType::Double: return cpu::step_bwd_of<double, C>(p, fused);
      default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
    }
  });
}

}  // namespace rnnfused
