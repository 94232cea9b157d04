// rnnfused CPU kernels: the vector types and operations, and the math policy the cells'
// pointwise definitions run with (VecMath).
//
// Compiled once per instruction set: every header under csrc/cpu/kernels/ is included only by
// the per-instruction-set sources (rnn_cpu_default.cpp, rnn_cpu_avx2.cpp, rnn_cpu_avx512.cpp,
// through make_tables.h), each of which defines CPU_CAPABILITY first, so ATen's Vectorized<T>
// and everything here land in a namespace of their own for that capability (the scheme ATen
// uses for its own kernels). Only ATen's header-only vector types are used: no tensors, no
// dispatcher.
//
// The kernels are templates over the vector type V: ATen's Vectorized<T>, or GenVec below.
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

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

// sigmoid(x) = 1 / (1 + exp(-x)), the LSTM's gates: ATen's vectorised exp (Sleef's 1-ulp exp on
// AVX2 / AVX-512, std::exp on the baseline), so float32 stays within a few ulp of torch.sigmoid.
// exp(-x) = inf for x -> -inf gives 0, +inf gives 1, NaN stays NaN.
template <typename T>
RNNFUSED_INLINE Vectorized<T> vsigmoid(const Vectorized<T>& x) {
  const Vectorized<T> one(T(1));
  return one / (one + x.neg().exp());
}
template <typename T, int N>
RNNFUSED_INLINE GenVec<T, N> vsigmoid(const GenVec<T, N>& x) {
  GenVec<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = T(1) / (T(1) + std::exp(-x.v[i]));
  return r;
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
// The math policy of the CPU kernels (csrc/cells/cell.h): the elementary functions a cell's
// pointwise forward and backward call, over this build's vector types. Exactly the functions
// above: the float32 rational tanh, float64's 1-ulp tanh, the NaN-propagating relu and relu'
// from the output, the sigmoid from exp.
struct VecMath {
  template <class V>
  static RNNFUSED_INLINE V tanh(const V& x) { return vtanh(x); }
  template <class V>
  static RNNFUSED_INLINE V relu(const V& x) { return vrelu(x); }
  template <class V>
  static RNNFUSED_INLINE V relu_grad(const V& h) { return vrelu_deriv(h); }
  template <class V>
  static RNNFUSED_INLINE V sigmoid(const V& x) { return vsigmoid(x); }
};

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
