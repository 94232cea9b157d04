// rnnfused CPU row kernels, written once and compiled per instruction set.
//
// Included by rnn_cpu_default.cpp (baseline; also the portable 16-lane Vec16 build),
// rnn_cpu_avx2.cpp (AVX2 + FMA) and rnn_cpu_avx512.cpp (AVX-512). Each defines CPU_CAPABILITY
// before including this file, so ATen's Vectorized<T> and our functions land in a namespace of
// their own for that capability (the scheme ATen uses for its own kernels). rnn_cpu_isa.cpp picks
// one set at run time.
//
// The kernels are templates over the vector type V (ATen's Vectorized<T>, or GenVec below) and
// the register blocking, which each build chooses for its register file (make_row_kernels).
// Only ATen's header-only vector types are used here: no tensors, no dispatcher.
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "rnn_cpu_rows.h"

#if defined(__GNUC__) || defined(__clang__)
#define RNNFUSED_INLINE inline __attribute__((always_inline))
#else
#define RNNFUSED_INLINE inline
#endif

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// ---------------------------------------------------------------------------------------------
// GenVec: a fixed-width vector of N lanes in plain C++ (the compiler maps it to whatever the
// baseline has). Only the Vec16 build uses it, to run the AVX-512 blocking on any processor.
template <typename T, int N>
struct GenVec {
  using value_type = T;
  T v[N];
  static constexpr int64_t size() { return N; }
  GenVec() = default;
  GenVec(T s) {  // NOLINT: implicit, like Vectorized<T>(T)
    for (int i = 0; i < N; ++i) v[i] = s;
  }
  static GenVec loadu(const T* p, int64_t count = N) {
    GenVec r;
    for (int i = 0; i < N; ++i) r.v[i] = i < count ? p[i] : T(0);
    return r;
  }
  void store(T* p, int64_t count = N) const {
    for (int i = 0; i < N && i < count; ++i) p[i] = v[i];
  }
#define RNNFUSED_GENVEC_OP(op)                                  \
  friend GenVec operator op(const GenVec& a, const GenVec& b) { \
    GenVec r;                                                   \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] op b.v[i];      \
    return r;                                                   \
  }
  RNNFUSED_GENVEC_OP(+)
  RNNFUSED_GENVEC_OP(-)
  RNNFUSED_GENVEC_OP(*)
  RNNFUSED_GENVEC_OP(/)
#undef RNNFUSED_GENVEC_OP
};

// ---------------------------------------------------------------------------------------------
// The few vector operations the kernels use, for both vector types.
template <typename T>
RNNFUSED_INLINE Vectorized<T> vfmadd(const Vectorized<T>& a, const Vectorized<T>& b,
                                     const Vectorized<T>& c) {
  return at::vec::fmadd(a, b, c);
}
template <typename T, int N>
RNNFUSED_INLINE GenVec<T, N> vfmadd(const GenVec<T, N>& a, const GenVec<T, N>& b,
                                    const GenVec<T, N>& c) {
  return a * b + c;
}

// min(max(x, lo), hi); a NaN in x stays NaN (ATen's clamp_min/max keep x's NaN).
template <typename T>
RNNFUSED_INLINE Vectorized<T> vclamp(const Vectorized<T>& x, T lo, T hi) {
  return at::vec::clamp_min(at::vec::clamp_max(x, Vectorized<T>(hi)), Vectorized<T>(lo));
}
template <typename T, int N>
RNNFUSED_INLINE GenVec<T, N> vclamp(const GenVec<T, N>& x, T lo, T hi) {
  GenVec<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = x.v[i] > hi ? hi : (x.v[i] < lo ? lo : x.v[i]);
  return r;
}

// relu, NaN-propagating (torch.relu keeps NaN).
template <typename T>
RNNFUSED_INLINE Vectorized<T> vrelu(const Vectorized<T>& x) {
  return at::vec::maximum(x, Vectorized<T>(T(0)));
}
template <typename T, int N>
RNNFUSED_INLINE GenVec<T, N> vrelu(const GenVec<T, N>& x) {
  GenVec<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = x.v[i] < T(0) ? T(0) : x.v[i];
  return r;
}

// relu'(from the output h): 0 where h <= 0, else 1 (1 where h is NaN, as torch's
// threshold_backward passes the gradient there).
template <typename T>
RNNFUSED_INLINE Vectorized<T> vrelu_deriv(const Vectorized<T>& h) {
  return Vectorized<T>(T(1)) - h.le(Vectorized<T>(T(0)));  // le(): 1 or 0 per lane
}
template <typename T, int N>
RNNFUSED_INLINE GenVec<T, N> vrelu_deriv(const GenVec<T, N>& h) {
  GenVec<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = h.v[i] <= T(0) ? T(0) : T(1);
  return r;
}

// tanh's last step: exactly ±1 where |x| >= 9.0109 (where float32 tanh rounds to ±1, so that
// 1 - h² is exactly 0 there as in torch), else r. xc = x clamped to [-9, 9]: xc/9 is ±1 there.
RNNFUSED_INLINE Vectorized<float> saturate_tanh(const Vectorized<float>& x,
                                                const Vectorized<float>& xc,
                                                const Vectorized<float>& r) {
  return Vectorized<float>::blendv(r, xc * Vectorized<float>(1.0f / 9.0f),
                                   x.abs() >= Vectorized<float>(9.0109f));
}
template <int N>
RNNFUSED_INLINE GenVec<float, N> saturate_tanh(const GenVec<float, N>& x,
                                               const GenVec<float, N>& xc,
                                               const GenVec<float, N>& r) {
  GenVec<float, N> o;
  for (int i = 0; i < N; ++i) o.v[i] = std::fabs(x.v[i]) >= 9.0109f ? xc.v[i] * (1.0f / 9.0f) : r.v[i];
  return o;
}

// tanh. float: tanh(x) = x·P(x²)/Q(x²) on x clamped to [-9, 9], P of degree 6 and Q of degree 3
// in x², fitted for minimax relative error (9 FMAs, one division; Sleef's 1-ulp tanhf costs
// several times that); exactly ±1 past |x| = 9.0109. Measured error against float64 tanh over 5·10^6 inputs: ≤ 2.8e-7
// relative, ≤ 4.7 ulp with FMA (≤ 5.7 without: the baseline build; tests/test_cpu_kernels.py
// holds it to 6). ±inf → ±1, NaN → NaN.
// float64 keeps the 1-ulp tanh (Sleef through ATen, or std::tanh).
template <class V>
RNNFUSED_INLINE V tanh_rational_f32(const V& x_in) {
  const V x = vclamp(x_in, -9.0f, 9.0f);
  const V t = x * x;
  V p(-8.488686e-14f);
  p = vfmadd(p, t, V(5.2779604e-11f));
  p = vfmadd(p, t, V(-2.02253e-08f));
  p = vfmadd(p, t, V(1.1154339e-05f));
  p = vfmadd(p, t, V(0.0031039598f));
  p = vfmadd(p, t, V(0.13084014f));
  p = vfmadd(p, t, V(1.0f));
  V q(0.000254615f);
  q = vfmadd(q, t, V(0.024495194f));
  q = vfmadd(q, t, V(0.4641734f));
  q = vfmadd(q, t, V(1.0f));
  return saturate_tanh(x_in, x, vclamp((x * p) / q, -1.0f, 1.0f));
}

RNNFUSED_INLINE Vectorized<float> vtanh(const Vectorized<float>& x) { return tanh_rational_f32(x); }
RNNFUSED_INLINE Vectorized<double> vtanh(const Vectorized<double>& x) { return x.tanh(); }
template <int N>
RNNFUSED_INLINE GenVec<float, N> vtanh(const GenVec<float, N>& x) { return tanh_rational_f32(x); }
template <int N>
RNNFUSED_INLINE GenVec<double, N> vtanh(const GenVec<double, N>& x) {
  GenVec<double, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = std::tanh(x.v[i]);
  return r;
}

template <class V>
RNNFUSED_INLINE V apply_act(const V& v, Act act) {
  switch (act) {
    case Act::Tanh: return vtanh(v);
    case Act::Relu: return vrelu(v);
    default: return v;
  }
}

// reduce4: out[c] = Σ over the lanes of a[c], c < 4 (the end of four dot products).
template <class V, typename T>
RNNFUSED_INLINE void reduce4(const V* a, T* out) {
  constexpr int64_t L = V::size();
  for (int c = 0; c < 4; ++c) {
    T buf[L];
    a[c].store(buf);
    // Pairwise, so the generic build sums in a similar order to the shuffling ones.
    for (int64_t w = L / 2; w >= 1; w /= 2)
      for (int64_t i = 0; i < w; ++i) buf[i] += buf[i + w];
    out[c] = buf[0];
  }
}

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
// Four 8-float vectors → their four sums: two levels of horizontal adds, then the two 128-bit
// halves added.
RNNFUSED_INLINE __m128 reduce4_m256(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
// Four 4-double vectors → their four sums.
RNNFUSED_INLINE __m256d reduce4_m256d(__m256d a0, __m256d a1, __m256d a2, __m256d a3) {
  const __m256d h01 = _mm256_hadd_pd(a0, a1);  // a0 01, a1 01, a0 23, a1 23
  const __m256d h23 = _mm256_hadd_pd(a2, a3);
  return _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20),   // a0 01, a1 01, a2 01, a3 01
                       _mm256_permute2f128_pd(h01, h23, 0x31));  // a0 23, a1 23, a2 23, a3 23
}
#endif

#if defined(CPU_CAPABILITY_AVX2)
RNNFUSED_INLINE void reduce4(const Vectorized<float>* a, float* out) {
  _mm_storeu_ps(out, reduce4_m256(a[0], a[1], a[2], a[3]));
}
RNNFUSED_INLINE void reduce4(const Vectorized<double>* a, double* out) {
  _mm256_storeu_pd(out, reduce4_m256d(a[0], a[1], a[2], a[3]));
}
#elif defined(CPU_CAPABILITY_AVX512)
// Fold each 512-bit accumulator to 256 bits (low half + high half), then as AVX2.
RNNFUSED_INLINE __m256 fold512(__m512 z) {
  return _mm256_add_ps(_mm512_castps512_ps256(z),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
}
RNNFUSED_INLINE __m256d fold512(__m512d z) {
  return _mm256_add_pd(_mm512_castpd512_pd256(z), _mm512_extractf64x4_pd(z, 1));
}
RNNFUSED_INLINE void reduce4(const Vectorized<float>* a, float* out) {
  _mm_storeu_ps(out, reduce4_m256(fold512(a[0]), fold512(a[1]), fold512(a[2]), fold512(a[3])));
}
RNNFUSED_INLINE void reduce4(const Vectorized<double>* a, double* out) {
  _mm256_storeu_pd(out, reduce4_m256d(fold512(a[0]), fold512(a[1]), fold512(a[2]), fold512(a[3])));
}
#endif

// ---------------------------------------------------------------------------------------------
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

template <class V>
void act_range(typename V::value_type* y, int64_t N, Act act) {
  if (act == Act::None) return;
  constexpr int64_t L = V::size();
  int64_t n = 0;
  for (; n + L <= N; n += L) apply_act(V::loadu(y + n), act).store(y + n);
  if (n < N) apply_act(V::loadu(y + n, N - n), act).store(y + n, N - n);
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

template <class V, int RBmax>
void dot_rows(const DotArgs<typename V::value_type>& a, int64_t n0, int64_t n1) {
  if (a.nrows <= 0 || n1 <= n0) return;
  if (a.k1 > 0 && a.k0 > 0) dot_tiles<V, RBmax, true>(a, n0, n1);
  else if (a.k1 > 0) {  // only the second operand: run it as the first
    DotArgs<typename V::value_type> b = a;
    b.x0 = a.x1; b.w0 = a.w1; b.k0 = a.k1; b.k1 = 0;
    dot_tiles<V, RBmax, false>(b, n0, n1);
  } else dot_tiles<V, RBmax, false>(a, n0, n1);
  if (a.act != Act::None)
    for (int64_t r = 0; r < a.nrows; ++r) act_range<V>(a.y[r] + n0, n1 - n0, a.act);
}

// ---------------------------------------------------------------------------------------------
// The broadcast form (RowKernels::vecmat_rows). One block of NV full vectors of columns from n0,
// for RB rows: RB·NV accumulators stay in registers across the whole k loop; each vector of M
// loaded feeds RB fused multiply-adds, and x_r[k] is broadcast.
template <class V, int RB, int NV>
RNNFUSED_INLINE void vecmat_block(typename V::value_type* const* y,
                                  const typename V::value_type* const* x,
                                  const typename V::value_type* M, int64_t K, int64_t ldm,
                                  int64_t n0, bool accumulate, Act act) {
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
    for (int i = 0; i < NV; ++i) apply_act(a[r][i], act).store(y[r] + n0 + i * L);
}

// The last, partial vector of columns (count < L from n0), one row.
template <class V>
void vecmat_tail(typename V::value_type* y, const typename V::value_type* x,
                 const typename V::value_type* M, int64_t K, int64_t ldm, int64_t n0,
                 int64_t count, bool accumulate, Act act) {
  using T = typename V::value_type;
  V a = accumulate ? V::loadu(y + n0, count) : V(T(0));
  const T* m = M + n0;
  for (int64_t k = 0; k < K; ++k, m += ldm) a = vfmadd(V(x[k]), V::loadu(m, count), a);
  apply_act(a, act).store(y + n0, count);
}

// Full vectors left over after the NV-wide blocks, in blocks of NV/2, NV/4, ..., 1 vectors, so
// their accumulators still overlap.
template <class V, int RB, int NV>
RNNFUSED_INLINE void vecmat_left(typename V::value_type* const* y,
                                 const typename V::value_type* const* x,
                                 const typename V::value_type* M, int64_t K, int64_t ldm,
                                 int64_t& n, int64_t n1, bool accumulate, Act act) {
  if constexpr (NV >= 1) {
    constexpr int64_t L = V::size();
    if (n + NV * L <= n1) {
      vecmat_block<V, RB, NV>(y, x, M, K, ldm, n, accumulate, act);
      n += NV * L;
    }
    vecmat_left<V, RB, NV / 2>(y, x, M, K, ldm, n, n1, accumulate, act);
  }
}

// RB rows, columns [n0, n1): wide blocks first, then narrower ones, then the partial vector.
// kAcc accumulators in flight: 8 for 16 vector registers, 16 for 32.
template <class V, int RB, int kAcc>
void vecmat_rows_fixed(typename V::value_type* const* y, const typename V::value_type* const* x,
                       const typename V::value_type* M, int64_t K, int64_t ldm, int64_t n0,
                       int64_t n1, bool accumulate, Act act) {
  constexpr int64_t L = V::size();
  constexpr int NV = kAcc / RB;
  int64_t n = n0;
  for (; n + NV * L <= n1; n += NV * L)
    vecmat_block<V, RB, NV>(y, x, M, K, ldm, n, accumulate, act);
  vecmat_left<V, RB, NV / 2>(y, x, M, K, ldm, n, n1, accumulate, act);
  if (n < n1)
    for (int r = 0; r < RB; ++r) vecmat_tail<V>(y[r], x[r], M, K, ldm, n, n1 - n, accumulate, act);
}

template <class V, int kAcc>
void vecmat_rows(int64_t nrows, typename V::value_type* const* y,
                 const typename V::value_type* const* x, const typename V::value_type* M,
                 int64_t K, int64_t ldm, int64_t n0, int64_t n1, bool accumulate, Act act) {
  int64_t r = 0;
  for (; r + 4 <= nrows; r += 4)
    vecmat_rows_fixed<V, 4, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate, act);
  if (r + 2 <= nrows) {
    vecmat_rows_fixed<V, 2, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate, act);
    r += 2;
  }
  if (r < nrows) vecmat_rows_fixed<V, 1, kAcc>(y + r, x + r, M, K, ldm, n0, n1, accumulate, act);
}

// ---------------------------------------------------------------------------------------------
// The panel form (RowKernels::panel_rows, PanelArgs). NP vectors per panel; a block of RB rows ×
// PB panels keeps RB·PB·NP accumulators in registers for the whole k loop (AVX2, float: 6 rows ×
// 1 panel = 12 accumulators, an SGEMM micro-kernel's 6×16).
template <class V>
constexpr int panel_vectors() {
  static_assert(kPanel % V::size() == 0, "a panel is a whole number of vectors");
  return static_cast<int>(kPanel / V::size());
}

// Panels per block for RB rows on a register file of kRegs vectors: per k, the block holds
// its RB·PB·NP accumulators, its PB·NP panel vectors and one broadcast in registers, so
// RB·PB·NP + PB·NP + 1 <= kRegs (one row: the panel vectors are FMA memory operands instead).
// At most 6 panels.
template <class V, int kRegs, int RB>
constexpr int panel_group() {
  const int np = panel_vectors<V>();
  const int pb = RB == 1 ? (kRegs - 2) / np : (kRegs - 1) / ((RB + 1) * np);
  return pb < 1 ? 1 : (pb > 6 ? 6 : pb);
}

// Rows r0..r0+RB-1, panels j0..j0+PB-1; columns at or past n1 are neither loaded nor stored.
template <class V, int RB, int PB>
RNNFUSED_INLINE void panel_block(const PanelArgs<typename V::value_type>& a, int64_t r0,
                                 int64_t j0, int64_t n1) {
  using T = typename V::value_type;
  constexpr int64_t L = V::size();
  constexpr int NP = panel_vectors<V>();
  constexpr int NV = PB * NP;
  const int64_t col0 = j0 * kPanel;
  V acc[RB][NV];
  for (int r = 0; r < RB; ++r) {
    const T* in = a.init ? a.init[r0 + r] : nullptr;
    for (int v = 0; v < NV; ++v) {
      const int64_t col = col0 + v * L;
      const int64_t cnt = std::min<int64_t>(L, n1 - col);
      V s(T(0));
      if (cnt >= L) {
        if (in) s = V::loadu(in + col);
        if (a.bias) s = s + V::loadu(a.bias + col);
      } else if (cnt > 0) {
        if (in) s = V::loadu(in + col, cnt);
        if (a.bias) s = s + V::loadu(a.bias + col, cnt);
      }
      acc[r][v] = s;
    }
  }
  const int64_t K = a.K;
  const T* w = a.wp + j0 * K * kPanel;
  const T* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = a.x[r0 + r];
  // In this order (panel vectors, then per row: its broadcast and its FMAs) so that only one
  // broadcast is live at a time: GCC keeps the source order on x86, and hoisting every row's
  // broadcast first spills accumulators (15 of 16 registers for 6 rows × 2 vectors).
  for (int64_t k = 0; k < K; ++k) {
    const T* wk = w + k * kPanel;
    if constexpr (RB == 1) {
      const V xb(xr[0][k]);
      for (int p = 0; p < PB; ++p)
        for (int i = 0; i < NP; ++i)
          acc[0][p * NP + i] = vfmadd(xb, V::loadu(wk + p * K * kPanel + i * L), acc[0][p * NP + i]);
    } else {
      V wv[NV];
      for (int p = 0; p < PB; ++p)
        for (int i = 0; i < NP; ++i) wv[p * NP + i] = V::loadu(wk + p * K * kPanel + i * L);
      for (int r = 0; r < RB; ++r) {
        const V xb(xr[r][k]);
        for (int v = 0; v < NV; ++v) acc[r][v] = vfmadd(xb, wv[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    T* y = a.y[r0 + r];
    for (int v = 0; v < NV; ++v) {
      const int64_t col = col0 + v * L;
      const int64_t cnt = std::min<int64_t>(L, n1 - col);
      if (cnt >= L) apply_act(acc[r][v], a.act).store(y + col);
      else if (cnt > 0) apply_act(acc[r][v], a.act).store(y + col, cnt);
    }
  }
}

// The panels left after the full groups of PB: one group of P < PB panels, P = the remainder.
template <class V, int RB, int P>
RNNFUSED_INLINE void panel_left(const PanelArgs<typename V::value_type>& a, int64_t r0, int64_t j,
                                int64_t jb, int64_t n1) {
  if constexpr (P >= 1) {
    if (jb - j >= P) panel_block<V, RB, P>(a, r0, j, n1);
    else panel_left<V, RB, P - 1>(a, r0, j, jb, n1);
  }
}

// Rows r0..r0+RB-1 over panels [ja, jb).
template <class V, int kRegs, int RB>
void panel_rowblock(const PanelArgs<typename V::value_type>& a, int64_t r0, int64_t ja,
                    int64_t jb, int64_t n1) {
  constexpr int PB = panel_group<V, kRegs, RB>();
  int64_t j = ja;
  for (; j + PB <= jb; j += PB) panel_block<V, RB, PB>(a, r0, j, n1);
  if (j < jb) panel_left<V, RB, PB - 1>(a, r0, j, jb, n1);
}

// The rows left after the full blocks of RBmax: one block of `left` (< RBmax) rows.
template <class V, int kRegs, int RB>
void panel_rows_left(const PanelArgs<typename V::value_type>& a, int64_t left, int64_t r0,
                     int64_t ja, int64_t jb, int64_t n1) {
  if constexpr (RB >= 1) {
    if (left == RB) panel_rowblock<V, kRegs, RB>(a, r0, ja, jb, n1);
    else panel_rows_left<V, kRegs, RB - 1>(a, left, r0, ja, jb, n1);
  }
}

// Rows in blocks of RBmax (the most rows whose block of one panel fits the registers, at most
// 8); panels in tiles of about 16 KiB that stay in L1 while every row block passes (one tile
// when all rows make one block).
template <class V, int kRegs>
void panel_rows(const PanelArgs<typename V::value_type>& a, int64_t n0, int64_t n1) {
  using T = typename V::value_type;
  constexpr int NP = panel_vectors<V>();
  constexpr int RBq = (kRegs - 1 - NP) / NP;
  constexpr int RBmax = RBq < 1 ? 1 : (RBq > 8 ? 8 : RBq);
  if (a.nrows <= 0 || n1 <= n0) return;
  const int64_t ja = n0 / kPanel, jb = (n1 + kPanel - 1) / kPanel;
  int64_t tile = jb - ja;
  if (a.nrows > RBmax) {
    constexpr int PB = panel_group<V, kRegs, RBmax>();
    const int64_t fit = (int64_t(16) << 10) / std::max<int64_t>(1, a.K * kPanel * int64_t(sizeof(T)));
    tile = std::max<int64_t>(PB, fit / PB * PB);
  }
  for (int64_t jt = ja; jt < jb; jt += tile) {
    const int64_t je = std::min(jb, jt + tile);
    int64_t r = 0;
    for (; r + RBmax <= a.nrows; r += RBmax) panel_rowblock<V, kRegs, RBmax>(a, r, jt, je, n1);
    if (r < a.nrows) panel_rows_left<V, kRegs, RBmax - 1>(a, a.nrows - r, r, jt, je, n1);
  }
}

template <class V>
void act_row(typename V::value_type* y, int64_t N, Act act) {
  act_range<V>(y, N, act);
}

// dz[n] = (dh[n] + g[n]) · act'(h[n]), act' from the activation's output h: tanh' = 1 - h²,
// relu' = !(h <= 0). g may be null (no gradient flows into the outputs).
template <class V>
void dz_row(typename V::value_type* dz, const typename V::value_type* dh,
            const typename V::value_type* g, const typename V::value_type* h, int64_t N, Act act) {
  using T = typename V::value_type;
  constexpr int64_t L = V::size();
  const V one(T(1));
  auto body = [&](int64_t n, int64_t count) {
    V d = V::loadu(dh + n, count);
    if (g) d = d + V::loadu(g + n, count);
    const V hv = V::loadu(h + n, count);
    const V deriv = act == Act::Tanh ? one - hv * hv : vrelu_deriv(hv);
    (d * deriv).store(dz + n, count);
  };
  int64_t n = 0;
  for (; n + L <= N; n += L) body(n, L);
  if (n < N) body(n, N - n);
}

// One instruction set's table. RBdot: rows per dot-form tile (its 4·RBdot accumulators plus RBdot
// row vectors fit the register file); kAcc: accumulators of the broadcast form.
// kRegs: vector registers (16 for AVX2, 32 for AVX-512), for the panel form's blocking.
template <class V, int RBdot, int kAcc, int kRegs>
RowKernels<typename V::value_type> make_row_kernels(Isa isa) {
  return RowKernels<typename V::value_type>{isa, &dot_rows<V, RBdot>, &vecmat_rows<V, kAcc>,
                                            &panel_rows<V, kRegs>, &act_row<V>, &dz_row<V>};
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
