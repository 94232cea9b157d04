// rnnfused CPU: what the step loops of every cell share (rnn_cpu.cpp: one gate block; rnn_cpu_lstm.cpp:
// gate blocks and a second state): per-item lengths, and a product through ATen's BLAS. Baseline
// sources only (not compiled per instruction set).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

namespace rnnfused::cpu {

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
  // Active rows at step t if they form a prefix (sorted lengths), else B: the rows a product at
  // step t must cover.
  int64_t rows_to_compute(int64_t B, int64_t t) const {
    if (!len || !sorted_desc) return B;
    // First item inactive at t (t >= its length): the lengths are non-increasing.
    return std::upper_bound(len, len + B, t, [](int64_t tt, int64_t l) { return tt >= l; }) - len;
  }
};

// Row-major C(m×n) = A(m×k) · (trans_b ? B(n×k)ᵀ : B(k×n)) through ATen's BLAS, onto C when
// accumulate (k = 0: C unchanged, or zeroed).
template <typename T>
void gemm(T* C, const T* A, const T* Bm, int64_t m, int64_t n, int64_t k, bool trans_b,
          bool accumulate) {
  if (m == 0 || n == 0) return;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  if (k == 0) {
    if (!accumulate) c.zero_();
    return;
  }
  const at::Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, opts);
  const at::Tensor b = trans_b ? at::from_blob(const_cast<T*>(Bm), {n, k}, opts).t()
                               : at::from_blob(const_cast<T*>(Bm), {k, n}, opts);
  if (accumulate) c.addmm_(a, b);
  else at::mm_out(c, a, b);
}

}  // namespace rnnfused::cpu
