// rnnfused CPU kernels: the dot form (row_table.h, DotArgs; CellKernels::dot_rows). Per ISA
// (vec.h says how these headers are compiled).
//
// Over weights as nn.RNN stores them (no per-call preparation): each output column is a dot
// product of an input row with a contiguous weight row. The recurrence's forward for one row
// (B = 1) and the fused cell step's forward (both products into the same accumulators) run it.
// The sums are stored (plus init and biases) once per tile, then the cell's forward runs over
// the row's columns while they are in L1 (cell_fwd_row, epilogue.h): a lane reduction per
// output leaves them scalar, where the panel form keeps whole vectors of units in registers.
//
// G > 1 gates: the columns of the products are then the G·H gate rows of W_hh (and W_ih), the
// tiles run over each gate block's columns [g·H + n0, g·H + n1) into the G·H-wide pre-activation
// row (init = that row, so nothing new is allocated), and the cell's pass reads the G blocks of
// a vector of units and writes h (and c) for them (epilogue.h, Units and gates).
#pragma once
#include "epilogue.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

// The dot form (DotArgs). Register tile: RB rows × 4 columns of dot products, each a vector of
// partial sums over the lanes; per chunk of L values of k, RB loads of x, 4 loads of w and
// 4·RB fused multiply-adds.
constexpr int kDotCols = 4;

template <class V, int RB>
RNNFUSED_INLINE void dot_accumulate(V (&acc)[RB][kDotCols], const typename V::value_type* const* xr,
                                    const typename V::value_type* const* wr, int64_t K) {
  constexpr int64_t L = V::size();
  int64_t k = 0;
  if constexpr (RB == 1) {
    // One row: each accumulator would wait on its own previous FMA (latency 4-5 cycles) every
    // chunk; a second set of accumulators over the odd chunks halves that chain.
    V acc2[kDotCols];
    for (int c = 0; c < kDotCols; ++c) acc2[c] = V(typename V::value_type(0));
    for (; k + 2 * L <= K; k += 2 * L) {
      const V x0 = V::loadu(xr[0] + k), x1 = V::loadu(xr[0] + k + L);
      for (int c = 0; c < kDotCols; ++c) {
        acc[0][c] = vfmadd(x0, V::loadu(wr[c] + k), acc[0][c]);
        acc2[c] = vfmadd(x1, V::loadu(wr[c] + k + L), acc2[c]);
      }
    }
    for (int c = 0; c < kDotCols; ++c) acc[0][c] = acc[0][c] + acc2[c];
  }
  for (; k + L <= K; k += L) {
    V xv[RB];
    for (int r = 0; r < RB; ++r) xv[r] = V::loadu(xr[r] + k);
    for (int c = 0; c < kDotCols; ++c) {
      const V w = V::loadu(wr[c] + k);
      for (int r = 0; r < RB; ++r) acc[r][c] = vfmadd(xv[r], w, acc[r][c]);
    }
  }
  if (k < K) {  // the partial chunk: lanes past K load as zero (from both, so no 0·inf)
    const int64_t n = K - k;
    V xv[RB];
    for (int r = 0; r < RB; ++r) xv[r] = V::loadu(xr[r] + k, n);
    for (int c = 0; c < kDotCols; ++c) {
      const V w = V::loadu(wr[c] + k, n);
      for (int r = 0; r < RB; ++r) acc[r][c] = vfmadd(xv[r], w, acc[r][c]);
    }
  }
}

// Rows r0..r0+RB-1, columns n0..n0+ncols-1 (ncols <= 4; missing columns repeat the last one and
// are not stored). kTwo: the second operand (x1, w1) is present.
template <class V, int RB, bool kTwo>
RNNFUSED_INLINE void dot_block(const DotArgs<typename V::value_type>& a, int64_t r0, int64_t n0,
                               int64_t ncols) {
  using T = typename V::value_type;
  V acc[RB][kDotCols];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < kDotCols; ++c) acc[r][c] = V(T(0));
  const T* xr[RB];
  const T* wr[kDotCols];
  for (int r = 0; r < RB; ++r) xr[r] = a.k0 > 0 ? a.x0[r0 + r] : nullptr;
  for (int c = 0; c < kDotCols; ++c) wr[c] = a.w0 + (n0 + std::min<int64_t>(c, ncols - 1)) * a.k0;
  dot_accumulate<V, RB>(acc, xr, wr, a.k0);
  if constexpr (kTwo) {
    for (int r = 0; r < RB; ++r) xr[r] = a.x1[r0 + r];
    for (int c = 0; c < kDotCols; ++c) wr[c] = a.w1 + (n0 + std::min<int64_t>(c, ncols - 1)) * a.k1;
    dot_accumulate<V, RB>(acc, xr, wr, a.k1);
  }
  for (int r = 0; r < RB; ++r) {
    T s[kDotCols];
    reduce4(acc[r], s);
    T* y = a.y[r0 + r];
    const T* in = a.init ? a.init[r0 + r] : nullptr;
    if (ncols == kDotCols) {  // branch-free fixed-size loops (the compiler vectorises them)
      if (in)
        for (int c = 0; c < kDotCols; ++c) s[c] += in[n0 + c];
      if (a.bias0)
        for (int c = 0; c < kDotCols; ++c) s[c] += a.bias0[n0 + c];
      if (a.bias1)
        for (int c = 0; c < kDotCols; ++c) s[c] += a.bias1[n0 + c];
      for (int c = 0; c < kDotCols; ++c) y[n0 + c] = s[c];
      continue;
    }
    for (int64_t c = 0; c < ncols; ++c) {
      const int64_t n = n0 + c;
      T v = s[c];
      if (in) v += in[n];
      if (a.bias0) v += a.bias0[n];
      if (a.bias1) v += a.bias1[n];
      y[n] = v;
    }
  }
}

template <class V, int RB, bool kTwo>
void dot_cols(const DotArgs<typename V::value_type>& a, int64_t r0, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n += kDotCols)
    dot_block<V, RB, kTwo>(a, r0, n, std::min<int64_t>(kDotCols, n1 - n));
}

// The rows left over after the full blocks of RBmax: one block of rows - r (< RBmax) rows.
template <class V, int RB, bool kTwo>
void dot_cols_left(const DotArgs<typename V::value_type>& a, int64_t left, int64_t r0, int64_t n0,
                   int64_t n1) {
  if constexpr (RB >= 1) {
    if (left == RB) dot_cols<V, RB, kTwo>(a, r0, n0, n1);
    else dot_cols_left<V, RB - 1, kTwo>(a, left, r0, n0, n1);
  }
}
// Columns in tiles whose weight rows (about 16 KiB) stay in L1 while every row block streams
// past them; rows in blocks of RBmax.
template <class V, int RBmax, bool kTwo>
void dot_tiles(const DotArgs<typename V::value_type>& a, int64_t n0, int64_t n1) {
  using T = typename V::value_type;
  const int64_t K = a.k0 + a.k1;
  const int64_t fit = (int64_t(16) << 10) / std::max<int64_t>(1, K * int64_t(sizeof(T)));
  const int64_t tile = std::max<int64_t>(kDotCols, fit / kDotCols * kDotCols);
  for (int64_t nt = n0; nt < n1; nt += tile) {
    const int64_t ne = std::min(n1, nt + tile);
    int64_t r = 0;
    for (; r + RBmax <= a.nrows; r += RBmax) dot_cols<V, RBmax, kTwo>(a, r, nt, ne);
    if (r < a.nrows) dot_cols_left<V, RBmax - 1, kTwo>(a, a.nrows - r, r, nt, ne);
  }
}

// Columns [n0, n1) of every row, then cell C's forward over them.
template <class V, int RBmax, class C>
void dot_rows(const DotArgs<typename V::value_type>& a, int64_t n0, int64_t n1) {
  if (a.nrows <= 0 || n1 <= n0) return;
  if (a.k1 > 0 && a.k0 > 0) dot_tiles<V, RBmax, true>(a, n0, n1);
  else if (a.k1 > 0) {  // only the second operand: run it as the first
    DotArgs<typename V::value_type> b = a;
    b.x0 = a.x1; b.w0 = a.w1; b.k0 = a.k1; b.k1 = 0;
    dot_tiles<V, RBmax, false>(b, n0, n1);
  } else dot_tiles<V, RBmax, false>(a, n0, n1);
  for (int64_t r = 0; r < a.nrows; ++r) cell_fwd_row<V, C>(a.y[r] + n0, n1 - n0, a.cell);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
