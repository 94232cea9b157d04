// rnnfused CPU recurrence: the step loops of the forward and backward passes.
//
// Two paths, same arithmetic contract (see rnn.h):
//  - fused: per step and batch row, one pass computes act(pre + h_prev · W_hhᵀ) with the
//    accumulators in registers (rnn_cpu_kernel.h), straight into the output. No allocation, no
//    dispatcher call per step: what small shapes are bound by.
//  - gemm: per step, one BLAS call through ATen (out_t += h_prev · W_hhᵀ, beta = 1 onto the
//    hoisted pre), then the activation over the rows. For shapes where the product is big
//    enough that the BLAS's blocking and threads win and a few µs of dispatch do not matter.
// RNNFUSED_CPU_KERNEL=fused|gemm|auto forces one (tests run both on the same inputs).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "rnn_cpu.h"
#include "rnn_cpu_rows.h"

namespace rnnfused {
namespace cpu {
namespace {

bool use_avx2() {
  static const bool v = [] {
    const char* cap = std::getenv("ATEN_CPU_CAPABILITY");  // ATen's own knob, honoured here too
    if (cap && std::string(cap) == "default") return false;
    if (!have_avx2_kernels()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return v;
}

template <typename T>
const RowKernels<T>& row_kernels();

template <>
const RowKernels<float>& row_kernels<float>() {
  static const RowKernels<float> k = use_avx2() ? row_kernels_avx2_f32() : row_kernels_default_f32();
  return k;
}

template <>
const RowKernels<double>& row_kernels<double>() {
  static const RowKernels<double> k =
      use_avx2() ? row_kernels_avx2_f64() : row_kernels_default_f64();
  return k;
}

enum class Path { Fused, Gemm };

Path choose_path(int64_t B, int64_t H, int64_t elem_size) {
  const char* env = std::getenv("RNNFUSED_CPU_KERNEL");
  if (env && *env) {
    const std::string e(env);
    if (e == "fused") return Path::Fused;
    if (e == "gemm") return Path::Gemm;
    TORCH_CHECK(e == "auto", "rnnfused: RNNFUSED_CPU_KERNEL must be fused, gemm or auto, got '",
                e, "'");
  }
  // Per-step multiply-adds B·H². Below 2^21 the register-blocked fused loop beats a BLAS call
  // plus its dispatch; above it the BLAS's cache blocking and threads win. So does the BLAS when
  // W_hh no longer fits a core's L2 (assumed 1 MiB), where the product is bound by memory.
  // Measured on a 2-core x86-64 with AVX2 (bench/results/NOTES-cpu.md).
  const bool small = B * H * H < (int64_t(1) << 21) && H * H * elem_size <= (int64_t(1) << 20);
  return small ? Path::Fused : Path::Gemm;
}

// Rows per task for at::parallel_for, so each task has about 2^17 multiply-adds (per-step
// fork/join costs a few µs and only pays for itself above that), in whole groups of 4 rows.
int64_t row_grain(int64_t H, int64_t work_per_row) {
  const int64_t g = (int64_t(1) << 17) / std::max<int64_t>(1, work_per_row * H);
  return std::max<int64_t>(4, (g + 3) / 4 * 4);
}

// Up to 4 batch rows gathered for one call of the row kernel (so each load of W feeds 4 rows).
template <typename T>
struct RowGroup {
  T* y[4];
  const T* x[4];
  int n = 0;
  bool add(T* yr, const T* xr) {  // true when full
    y[n] = yr;
    x[n] = xr;
    return ++n == 4;
  }
  void flush(const RowKernels<T>& k, const T* M, int64_t H, bool accumulate, Act act) {
    if (n > 0) k.vecmat_rows(n, y, x, M, H, H, accumulate, act);
    n = 0;
  }
};

Act act_of(bool relu) { return relu ? Act::Relu : Act::Tanh; }

// Per-item lengths, validated, or all T.
struct Lengths {
  const int64_t* len = nullptr;
  int64_t T = 0;
  bool sorted_desc = true;  // items active at any step then form a prefix of the batch

  Lengths(const int64_t* l, int64_t B, int64_t T_) : len(l), T(T_) {
    if (!len) return;
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK(len[b] >= 0 && len[b] <= T, "rnnfused: lengths[", b, "] = ", len[b],
                  " is outside [0, ", T, "]");
      if (b > 0 && len[b] > len[b - 1]) sorted_desc = false;
    }
  }
  bool masked() const { return len != nullptr; }
  int64_t of(int64_t b) const { return len ? len[b] : T; }
  bool active(int64_t b, int64_t t) const { return t < of(b); }
  // The step whose previous state is h0.
  int64_t first_step(int64_t b, bool reverse) const { return reverse ? of(b) - 1 : 0; }
  // Active rows at step t if they form a prefix (sorted lengths), else B.
  int64_t rows_to_compute(int64_t B, int64_t t) const {
    if (!len || !sorted_desc) return B;
    // First item inactive at t (t >= its length): the lengths are non-increasing.
    return std::upper_bound(len, len + B, t, [](int64_t tt, int64_t l) { return tt >= l; }) - len;
  }
};

// Row-major C(m×n) = beta·C + A(m×k) · (trans_b ? B(n×k)ᵀ : B(k×n)) through ATen's BLAS.
template <typename T>
void gemm(T* C, const T* A, const T* Bm, int64_t m, int64_t n, int64_t k, bool trans_b,
          bool accumulate) {
  if (m == 0) return;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  const at::Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, opts);
  const at::Tensor b = trans_b ? at::from_blob(const_cast<T*>(Bm), {n, k}, opts).t()
                               : at::from_blob(const_cast<T*>(Bm), {k, n}, opts);
  if (accumulate) c.addmm_(a, b);
  else at::mm_out(c, a, b);
}

template <typename T>
void fwd_impl(const RNNFwdParams& p) {
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  T* out = static_cast<T*>(p.out);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* W = static_cast<const T*>(p.w_hh);
  T* hn = static_cast<T*>(p.hn);
  const Lengths L(p.lengths, B, T_);
  const Act act = act_of(p.relu);
  const RowKernels<T>& k = row_kernels<T>();
  auto step_of = [&](int64_t s) { return p.reverse ? T_ - 1 - s : s; };

  if (T_ > 0 && B > 0) {
    if (choose_path(B, H, sizeof(T)) == Path::Fused) {
      std::vector<T> WT(static_cast<size_t>(H * H));  // W_hhᵀ, so each k reads one contiguous row
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < H; ++j) WT[j * H + i] = W[i * H + j];
      const int64_t grain = row_grain(H, H);
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = step_of(s);
        T* cur = out + t * BH;
        const T* nb = out + (p.reverse ? t + 1 : t - 1) * BH;  // the neighbouring step
        at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
          RowGroup<T> grp;
          for (int64_t b = b0; b < b1; ++b) {
            T* y = cur + b * H;
            if (!L.active(b, t)) { std::fill(y, y + H, T(0)); continue; }
            const T* prev = t == L.first_step(b, p.reverse) ? h0 + b * H : nb + b * H;
            if (grp.add(y, prev)) grp.flush(k, WT.data(), H, /*accumulate=*/true, act);
          }
          grp.flush(k, WT.data(), H, /*accumulate=*/true, act);
        });
      }
    } else {
      // State buffer only where rows may start at different steps (masked); else read h_prev
      // from the previous step's output in place.
      T* state = static_cast<T*>(p.state);
      if (L.masked()) std::memcpy(state, h0, sizeof(T) * BH);
      const int64_t grain = row_grain(H, 16);
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = step_of(s);
        T* cur = out + t * BH;
        const T* prev = L.masked() ? state : (s == 0 ? h0 : out + step_of(s - 1) * BH);
        const int64_t m = L.rows_to_compute(B, t);
        gemm<T>(cur, prev, W, m, H, H, /*trans_b=*/true, /*accumulate=*/true);
        at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            T* y = cur + b * H;
            if (!L.active(b, t)) { std::fill(y, y + H, T(0)); continue; }
            k.act_row(y, H, act);
            if (L.masked()) std::memcpy(state + b * H, y, sizeof(T) * H);
          }
        });
      }
    }
  }
  // h_n: the output of each item's last active step, h0 if it has none.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = T_ > 0 ? L.of(b) : 0;
    const T* src = len == 0 ? h0 + b * H : out + (p.reverse ? 0 : len - 1) * BH + b * H;
    std::memcpy(hn + b * H, src, sizeof(T) * H);
  }
}

template <typename T>
void bwd_impl(const RNNBwdParams& p) {
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  const T* g = static_cast<const T*>(p.grad_out);
  const T* out = static_cast<const T*>(p.out);
  const T* W = static_cast<const T*>(p.w_hh);
  T* dz = static_cast<T*>(p.dz);
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dh = static_cast<T*>(p.state);  // (B, H): the running dL/dh
  T* tmp = dh + BH;                  // (B, H): scratch for the masked gemm path
  const Lengths L(p.lengths, B, T_);
  const Act act = act_of(p.relu);
  const RowKernels<T>& k = row_kernels<T>();

  if (p.grad_hn) std::memcpy(dh, p.grad_hn, sizeof(T) * BH);
  else std::fill(dh, dh + BH, T(0));
  std::fill(dz_first, dz_first + BH, T(0));

  // Processing order is the reverse of the forward's: forward direction t = T-1..0.
  auto step_of = [&](int64_t s) { return p.reverse ? s : T_ - 1 - s; };
  const bool fused = choose_path(B, H, sizeof(T)) == Path::Fused;
  const int64_t grain = row_grain(H, fused ? H : 16);
  for (int64_t s = 0; s < T_ && B > 0; ++s) {
    const int64_t t = step_of(s);
    T* dzt = dz + t * BH;
    const T* gt = g ? g + t * BH : nullptr;
    const T* ot = out + t * BH;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      RowGroup<T> grp;
      for (int64_t b = b0; b < b1; ++b) {
        T* dzr = dzt + b * H;
        if (!L.active(b, t)) { std::fill(dzr, dzr + H, T(0)); continue; }
        k.dz_row(dzr, dh + b * H, gt ? gt + b * H : nullptr, ot + b * H, H, act);
        if (t == L.first_step(b, p.reverse)) std::memcpy(dz_first + b * H, dzr, sizeof(T) * H);
        // dh = dz_t · W_hh (in place: the product reads dz_t, not dh).
        if (fused && grp.add(dh + b * H, dzr)) grp.flush(k, W, H, /*accumulate=*/false, Act::None);
      }
      if (fused) grp.flush(k, W, H, /*accumulate=*/false, Act::None);
    });
    if (!fused) {
      const int64_t m = L.rows_to_compute(B, t);
      if (!L.masked() || L.sorted_desc) {
        gemm<T>(dh, dzt, W, m, H, H, /*trans_b=*/false, /*accumulate=*/false);
      } else {
        gemm<T>(tmp, dzt, W, B, H, H, /*trans_b=*/false, /*accumulate=*/false);
        for (int64_t b = 0; b < B; ++b)
          if (L.active(b, t)) std::memcpy(dh + b * H, tmp + b * H, sizeof(T) * H);
      }
    }
  }
  std::memcpy(p.grad_h0, dh, sizeof(T) * BH);
}

}  // namespace
}  // namespace cpu

void rnn_fwd_cpu(const RNNFwdParams& p, c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return cpu::fwd_impl<float>(p);
    case c10::ScalarType::Double: return cpu::fwd_impl<double>(p);
    default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
  }
}

void rnn_bwd_cpu(const RNNBwdParams& p, c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return cpu::bwd_impl<float>(p);
    case c10::ScalarType::Double: return cpu::bwd_impl<double>(p);
    default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype);
  }
}

}  // namespace rnnfused
