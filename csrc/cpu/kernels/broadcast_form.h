// rnnfused CPU kernels: the broadcast form (RowKernels::vecmat_rows), y = x · M over a row-major
// M read as stored. Per ISA (vec.h says how these headers are compiled).
//
// A plain product, cell-free: the backward's dh = dz W_hh over W_hh as stored (the dot form's
// backward partner, B = 1), and the fused cell step's grad_x = dz W_ih and grad_h = dz W_hh.
// With G gates the sum simply runs over K = G·H rows of W_hh.
#pragma once
#include "vec.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

// The broadcast form (RowKernels::vecmat_rows). One block of NV full vectors of columns from n0,
// for RB rows: RB·NV accumulators stay in registers across the whole k loop; each vector of M
// loaded feeds RB fused multiply-adds, and x_r[k] is broadcast.
template <class V, int RB, int NV>
RNNFUSED_INLINE void vecmat_block(typename V::value_type* const* y,
                                  const typename V::value_type* const* x,
                                  const typename V::value_type* M, int64_t K, int64_t ldm,
                                  int64_t n0, bool accumulate) {
  using T = typename V::value_type;
  constexpr int64_t L = V::size();
  V a[RB][NV];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NV; ++i) a[r][i] = accumulate ? V::loadu(y[r] + n0 + i * L) : V(T(0));
  const T* m = M + n0;
  for (int64_t k = 0; k < K; ++k, m += ldm) {
    V w[NV];
    for (int i = 0; i < NV; ++i) w[i] = V::loadu(m + i * L);
    for (int r = 0; r < RB; ++r) {
      const V xb(x[r][k]);
      for (int i = 0; i < NV; ++i) a[r][i] = vfmadd(xb, w[i], a[r][i]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < NV; ++i) a[r][i].store(y[r] + n0 + i * L);
}

// The last, partial vector of columns (count < L from n0), one row.
template <class V>
void vecmat_tail(typename V::value_type* y, const typename V::value_type* x,
                 const typename V::value_type* M, int64_t K, int64_t ldm, int64_t n0,
                 int64_t count, bool accumulate) {
  using T = typename V::value_type;
  V a = accumulate ? V::loadu(y + n0, count) : V(T(0));
  const T* m = M + n0;
  for (int64_t k = 0; k < K; ++k, m += ldm) a = vfmadd(V(x[k]), V::loadu(m, count), a);
  a.store(y + n0, count);
}

// Full vectors left over after the NV-wide blocks, in blocks of NV/2, NV/4, ..., 1 vectors, so
// their accumulators still overlap.
template <class V, int RB, int NV>
RNNFUSED_INLINE void vecmat_left(typename V::value_type* const* y,
                                 const typename V::value_type* const* x,
                                 const typename V::value_type* M, int64_t K, int64_t ldm,
                                 int64_t& n, int64_t n1, bool accumulate) {
  if constexpr (NV >= 1) {
    constexpr int64_t L = V::size();
    if (n + NV * L <= n1) {
      vecmat_block<V, RB, NV>(y, x, M, K, ldm, n, accumulate);
      n += NV * L;
    }
    vecmat_left<V, RB, NV / 2>(y, x, M, K, ldm, n, n1, accumulate);
  }
}

// RB rows, columns [n0, n1): wide blocks first, then narrower ones, then the partial vector.
// kAcc accumulators in flight: 8 for 16 vector registers, 16 for 32.
template <class V, int RB, int kAcc>
void vecmat_rows_fixed(typename V::value_type* const* y, const typename V::value_type* const* x,
                       const typename V::value_type* M, int64_t K, int64_t ldm, int64_t n0,
                       int64_t n1, bool accumulate) {
  constexpr int64_t L = V::size();
  constexpr int NV = kAcc / RB;
  int64_t n = n0;
  for (; n + NV * L <= n1; n += NV * L)
    vecmat_block<V, RB, NV>(y, x, M, K, ldm, n, accumulate);
  vecmat_left<V, RB, NV / 2>(y, x, M, K, ldm, n, n1, accumulate);
  if (n < n1)
    for (int r = 0; r < RB; ++r) vecmat_tail<V>(y[r], x[r], M, K, ldm, n, n1 - n, accumulate);
}

template <class V, int kAcc>
void vecmat_rows(int64_t nrows, typename V::value_type* const* y,
                 const typename V::value_type* const* x, const typename V::value_type* M,
                 int64_t K, int64_t ldm, int64_t n0, int64_t n1, bool accumulate) {
  int64_t r = 0;
  for (; r + 4 <= nrows; r += 4)
    vecmat_rows_fixed<V, 4, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate);
  if (r + 2 <= nrows) {
    vecmat_rows_fixed<V, 2, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate);
    r += 2;
  }
  if (r < nrows) vecmat_rows_fixed<V, 1, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
