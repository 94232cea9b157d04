// rnnfused CPU: one fused cell step, h_new = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), and its
// backward (rnn.h: RNNCellParams, RNNCellBwdParams).
//
// Latency-bound (called once per time step from Python, B = 1..64): the weights are read in
// nn.RNNCell's own layout (no preparation), no allocation, and no thread fork below about 2^20
// multiply-adds. Forward: both products accumulate into the same registers (the dot form of
// rnn_cpu_kernel.h over the rows of W_ih, then of W_hh), biases and activation applied once.
// Backward: dz = g ⊙ act'(h_new) per row, then grad_x = dz W_ih and grad_h = dz W_hh (the
// broadcast form, W_ih and W_hh as stored) while dz is still in L1.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

#include "rnn_cpu.h"
#include "rnn_cpu_rows.h"
#include "rnn_cpu_steps.h"

namespace rnnfused {
namespace cpu {
namespace {

constexpr int64_t kRowChunk = 64;  // rows per pass (pointer arrays on the stack)

// Threads for a product of `work` multiply-adds over N columns: 1 unless it is big enough.
int64_t cell_shares(int64_t work, int64_t N) {
  if (work < (int64_t(1) << 20) || at::in_parallel_region()) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N / 32));
}

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

template <typename T>
void cell_fwd(const RNNCellParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* h = static_cast<const T*>(p.h);
  T* out = static_cast<T*>(p.h_new);
  const int64_t B = p.B, I = p.I, H = p.H;
  if (B <= 0 || H <= 0) return;
  const RowKernels<T>& k = row_kernels<T>();
  const int64_t shares = cell_shares(B * H * (I + H), H);
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
    a.act = p.relu ? Act::Relu : Act::Tanh;
    over_columns(H, shares, [&](int64_t n0, int64_t n1) { k.dot_rows(a, n0, n1); });
  }
}

template <typename T>
void cell_bwd(const RNNCellBwdParams& p) {
  const T* g = static_cast<const T*>(p.grad_h_new);
  const T* hn = static_cast<const T*>(p.h_new);
  const T* wih = static_cast<const T*>(p.w_ih);
  const T* whh = static_cast<const T*>(p.w_hh);
  T* dz = static_cast<T*>(p.dz);
  T* gx = static_cast<T*>(p.grad_x);
  T* gh = static_cast<T*>(p.grad_h);
  const int64_t B = p.B, I = p.I, H = p.H;
  if (B <= 0) return;
  const RowKernels<T>& k = row_kernels<T>();
  const Act act = p.relu ? Act::Relu : Act::Tanh;
  const int64_t shares =
      cell_shares(B * H * ((gx ? I : 0) + (gh ? H : 0)), std::max(gx ? I : 0, gh ? H : 0));
  for (int64_t b0 = 0; b0 < B; b0 += kRowChunk) {
    const int64_t n = std::min(kRowChunk, B - b0);
    const T* d[kRowChunk];
    T* yx[kRowChunk];
    T* yh[kRowChunk];
    for (int64_t r = 0; r < n; ++r) {
      const int64_t b = b0 + r;
      k.dz_row(dz + b * H, g + b * H, nullptr, hn + b * H, H, act);
      d[r] = dz + b * H;
      yx[r] = gx ? gx + b * I : nullptr;
      yh[r] = gh ? gh + b * H : nullptr;
    }
    if (shares <= 1) {
      if (gx && I > 0) k.vecmat_rows(n, yx, d, wih, H, I, 0, I, /*accumulate=*/false, Act::None);
      if (gh) k.vecmat_rows(n, yh, d, whh, H, H, 0, H, /*accumulate=*/false, Act::None);
      continue;
    }
    // Both products' columns in one split: share s takes its part of grad_x and of grad_h.
    at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        if (gx && I > 0) {
          const auto [n0, n1] = share_columns(I, shares, s);
          k.vecmat_rows(n, yx, d, wih, H, I, n0, n1, false, Act::None);
        }
        if (gh) {
          const auto [n0, n1] = share_columns(H, shares, s);
          k.vecmat_rows(n, yh, d, whh, H, H, n0, n1, false, Act::None);
        }
      }
    });
  }
}

}  // namespace
}  // namespace cpu

void rnn_cell_fwd_cpu(const RNNCellParams& p, c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return cpu::cell_fwd<float>(p);
    case c10::ScalarType::Double: return cpu::cell_fwd<double>(p);
    default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
  }
}

void rnn_cell_bwd_cpu(const RNNCellBwdParams& p, c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return cpu::cell_bwd<float>(p);
    case c10::ScalarType::Double: return cpu::cell_bwd<double>(p);
    default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
  }
}

}  // namespace rnnfused
