// rnnfused CPU: one fused cell step, h_new = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), and its
// backward (rnn.h: RNNCellParams, RNNCellBwdParams).
//
// A plain scalar version: correct, with the weights in nn.RNNCell's layout (no preparation), one
// pass per output element. The vectorised, per-ISA version belongs with the row kernels.
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>

#include "rnn_cpu.h"

namespace rnnfused {
namespace cpu {
namespace {

template <typename T>
T act(T v, bool relu) { return relu ? (v < T(0) ? T(0) : v) : std::tanh(v); }

template <typename T>
void cell_fwd(const RNNCellParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* h = static_cast<const T*>(p.h);
  const T* wih = static_cast<const T*>(p.w_ih);
  const T* whh = static_cast<const T*>(p.w_hh);
  const T* bih = static_cast<const T*>(p.b_ih);
  const T* bhh = static_cast<const T*>(p.b_hh);
  T* out = static_cast<T*>(p.h_new);
  const int64_t B = p.B, I = p.I, H = p.H;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t n = 0; n < H; ++n) {
      T acc = (bih ? bih[n] : T(0)) + (bhh ? bhh[n] : T(0));
      for (int64_t k = 0; k < I; ++k) acc += x[b * I + k] * wih[n * I + k];
      for (int64_t k = 0; k < H; ++k) acc += h[b * H + k] * whh[n * H + k];
      out[b * H + n] = act(acc, p.relu);
    }
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
  for (int64_t b = 0; b < B; ++b) {
    T* d = dz + b * H;
    for (int64_t n = 0; n < H; ++n) {
      const T y = hn[b * H + n];
      // relu' passes the gradient where the output is NaN, as torch's threshold_backward does.
      const T deriv = p.relu ? (y <= T(0) ? T(0) : T(1)) : T(1) - y * y;
      d[n] = g[b * H + n] * deriv;
    }
    if (gx) {
      for (int64_t k = 0; k < I; ++k) gx[b * I + k] = T(0);
      for (int64_t n = 0; n < H; ++n)
        for (int64_t k = 0; k < I; ++k) gx[b * I + k] += d[n] * wih[n * I + k];
    }
    if (gh) {
      for (int64_t k = 0; k < H; ++k) gh[b * H + k] = T(0);
      for (int64_t n = 0; n < H; ++n)
        for (int64_t k = 0; k < H; ++k) gh[b * H + k] += d[n] * whh[n * H + k];
    }
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
