// rnnfused CPU row kernels, written once and compiled per instruction set.
//
// Included by rnn_cpu_avx2.cpp (compiled for AVX2+FMA, Sleef's vector tanh) and by
// rnn_cpu_default.cpp (baseline x86-64 / any other processor). Each defines CPU_CAPABILITY
// before including this file, so ATen's Vectorized<T> and our functions land in a namespace of
// their own for that capability (the same scheme ATen uses for its own kernels). rnn_cpu.cpp
// picks one set at run time.
//
// Only ATen's header-only vector types are used here: no tensors, no dispatcher.
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

#include "rnn_cpu_rows.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

template <typename T>
inline Vectorized<T> apply_act(Vectorized<T> v, Act act) {
  switch (act) {
    case Act::Tanh: return v.tanh();
    case Act::Relu: return at::vec::maximum(v, Vectorized<T>(T(0)));  // NaN-propagating
    default: return v;
  }
}

// One block of NV full vectors of columns, starting at n0, for RB rows at once:
//   y_r[n] = act((accumulate ? y_r[n] : 0) + Σ_k x_r[k] · M[k·N + n]),  r < RB.
// RB·NV accumulators stay in registers across the whole k loop; each vector of M loaded feeds RB
// fused multiply-adds, and x_r[k] is broadcast.
template <typename T, int RB, int NV>
inline void vecmat_block(T* const* y, const T* const* x, const T* M, int64_t K, int64_t N,
                         int64_t n0, bool accumulate, Act act) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  V a[RB][NV];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NV; ++i) a[r][i] = accumulate ? V::loadu(y[r] + n0 + i * L) : V(T(0));
  const T* m = M + n0;
  for (int64_t k = 0; k < K; ++k, m += N) {
    V w[NV];
    for (int i = 0; i < NV; ++i) w[i] = V::loadu(m + i * L);
    for (int r = 0; r < RB; ++r) {
      const V xb(x[r][k]);
      for (int i = 0; i < NV; ++i) a[r][i] = at::vec::fmadd(xb, w[i], a[r][i]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NV; ++i) apply_act(a[r][i], act).store(y[r] + n0 + i * L);
}

// The last, partial vector of columns (count < L from n0), one row.
template <typename T>
inline void vecmat_tail(T* y, const T* x, const T* M, int64_t K, int64_t N, int64_t n0,
                        int64_t count, bool accumulate, Act act) {
  using V = Vectorized<T>;
  V a = accumulate ? V::loadu(y + n0, count) : V(T(0));
  const T* m = M + n0;
  for (int64_t k = 0; k < K; ++k, m += N) a = at::vec::fmadd(V(x[k]), V::loadu(m, count), a);
  apply_act(a, act).store(y + n0, static_cast<int>(count));
}

// RB rows, all columns: wide blocks first, then single vectors, then the partial vector.
// About 8 accumulators in flight (two FMA pipes × four cycles of latency).
template <typename T, int RB>
inline void vecmat_rows_fixed(T* const* y, const T* const* x, const T* M, int64_t K, int64_t N,
                              bool accumulate, Act act) {
  constexpr int64_t L = Vectorized<T>::size();
  constexpr int NV = RB >= 4 ? 2 : (RB == 2 ? 4 : 8);
  int64_t n = 0;
  for (; n + NV * L <= N; n += NV * L) vecmat_block<T, RB, NV>(y, x, M, K, N, n, accumulate, act);
  // What is left (< NV vectors) in one pass, so its accumulators still overlap.
  const int64_t left = (N - n) / L;
  if (NV > 4 && left >= 4) { vecmat_block<T, RB, (NV > 4 ? 4 : 1)>(y, x, M, K, N, n, accumulate, act); n += 4 * L; }
  if (NV > 2 && (N - n) / L >= 2) { vecmat_block<T, RB, (NV > 2 ? 2 : 1)>(y, x, M, K, N, n, accumulate, act); n += 2 * L; }
  if (NV > 1 && (N - n) / L >= 1) { vecmat_block<T, RB, 1>(y, x, M, K, N, n, accumulate, act); n += L; }
  if (n < N)
    for (int r = 0; r < RB; ++r) vecmat_tail<T>(y[r], x[r], M, K, N, n, N - n, accumulate, act);
}

template <typename T>
void vecmat_rows(int nrows, T* const* y, const T* const* x, const T* M, int64_t K, int64_t N,
                 bool accumulate, Act act) {
  int r = 0;
  for (; r + 4 <= nrows; r += 4) vecmat_rows_fixed<T, 4>(y + r, x + r, M, K, N, accumulate, act);
  if (r + 2 <= nrows) {
    vecmat_rows_fixed<T, 2>(y + r, x + r, M, K, N, accumulate, act);
    r += 2;
  }
  if (r < nrows) vecmat_rows_fixed<T, 1>(y + r, x + r, M, K, N, accumulate, act);
}

template <typename T>
void act_row(T* y, int64_t N, Act act) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  int64_t n = 0;
  for (; n + L <= N; n += L) apply_act(V::loadu(y + n), act).store(y + n);
  if (n < N) apply_act(V::loadu(y + n, N - n), act).store(y + n, static_cast<int>(N - n));
}

// dz[n] = (dh[n] + g[n]) · act'(h[n]), act' taken from the activation's output h:
// tanh' = 1 - h², relu' = !(h <= 0) (1 where h is NaN, as torch's threshold_backward passes the
// gradient there). g may be null (no gradient flows into the outputs).
template <typename T>
void dz_row(T* dz, const T* dh, const T* g, const T* h, int64_t N, Act act) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  const V one(T(1)), zero(T(0));  // le() yields 1 or 0 per lane
  auto body = [&](int64_t n, int64_t count) {
    V d = V::loadu(dh + n, count);
    if (g) d = d + V::loadu(g + n, count);
    const V hv = V::loadu(h + n, count);
    const V deriv = act == Act::Tanh ? one - hv * hv : one - hv.le(zero);
    (d * deriv).store(dz + n, static_cast<int>(count));
  };
  int64_t n = 0;
  for (; n + L <= N; n += L) body(n, L);
  if (n < N) body(n, N - n);
}

template <typename T>
RowKernels<T> make_row_kernels() {
  return RowKernels<T>{&vecmat_rows<T>, &act_row<T>, &dz_row<T>};
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
