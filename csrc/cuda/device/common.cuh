// rnnfused device code, shared by the kernels: storage/accumulation types and conversions, the
// cells' math policy on the device, per-item lengths, loads and stores of the exchanged state, and
// the kernel arguments. Device code only: compiled by nvcc and, unchanged, by the host compiler
// under the SIMT emulator (see portable.cuh). No ATen, no CUDA runtime calls.
//
// Notation: T steps, B batch items, H hidden size, storage type T (float, double, __half,
// __nv_bfloat16), accumulation type A (float; double for double). s is the step number in
// processing order, t the time index it touches:
//   forward  : t = s            (reverse direction: t = T-1-s)
//   backward : t = T-1-s        (reverse direction: t = s)
// Item b is active at t iff t < len(b), len(b) = clamp(lengths[b], 0, T) (T without lengths).
#pragma once

#include <cstdint>

#include "../../cells/cell.h"
#include "../portable.cuh"

namespace rnnfused {
namespace cuda_detail {

// ------------------------------------------------------------------------------------------------
// Types and conversions (explicit intrinsics: torch builds with __CUDA_NO_HALF_CONVERSIONS__ etc.)

template <typename T> struct AccT { using type = float; };
template <> struct AccT<double> { using type = double; };
template <typename T> using acc_t = typename AccT<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> struct Cvt;
template <> struct Cvt<float> {
  static __device__ __forceinline__ float from(float x) { return x; }
  static __device__ __forceinline__ float zero() { return 0.f; }
};
template <> struct Cvt<double> {
  static __device__ __forceinline__ double from(double x) { return x; }
  static __device__ __forceinline__ double zero() { return 0.0; }
};
template <> struct Cvt<__half> {
  static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ __half zero() { return __float2half_rn(0.f); }
};
template <> struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ __nv_bfloat16 zero() { return __float2bfloat16_rn(0.f); }
};

// Four consecutive elements from shared memory, converted to the accumulation type. `p` is
// aligned to 4 elements (the callers index with multiples of 4 into rows padded to 128).
__device__ __forceinline__ void ld4(const float* p, float (&v)[4]) {
  const float4 f = *reinterpret_cast<const float4*>(p);
  v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
}
__device__ __forceinline__ void ld4(const double* p, double (&v)[4]) {
  const double2 a = reinterpret_cast<const double2*>(p)[0];
  const double2 b = reinterpret_cast<const double2*>(p)[1];
  v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}
__device__ __forceinline__ void ld4(const __half* p, float (&v)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
  v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}
__device__ __forceinline__ void ld4(const __nv_bfloat16* p, float (&v)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}

// The math policy the kernels give the cells' pointwise functions (csrc/cells/cell.h: a cell's
// forward and backward are templates over the value type and a policy M), over the accumulation
// types float and double. tanh is CUDA's tanhf / tanh; sigmoid from expf / exp. relu keeps NaN (x < 0 is false for NaN),
// like torch.relu; relu' is taken from the output h: 0 where h <= 0, else 1, so NaN passes (as
// torch's threshold_backward). Every kernel calls its cell as Cell::template forward<DeviceMath>
// and Cell::template backward<DeviceMath>, where its products are still in registers.
struct DeviceMath {
  static __device__ __forceinline__ float tanh(float x) { return tanhf(x); }
  static __device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
  template <typename A>
  static __device__ __forceinline__ A relu(A x) { return x < A(0) ? A(0) : x; }
  template <typename A>
  static __device__ __forceinline__ A relu_grad(A h) { return h <= A(0) ? A(0) : A(1); }
  // The LSTM's gates: 1 / (1 + exp(-x)) (0 for x -> -inf, 1 for +inf, NaN stays NaN).
  static __device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
  static __device__ __forceinline__ double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
};

__device__ __forceinline__ int64_t item_len(const int64_t* lengths, int64_t b, int64_t T) {
  if (lengths == nullptr) return T;
  const int64_t l = __ldg(lengths + b);
  return l < 0 ? 0 : (l > T ? T : l);
}
// The time index of an item's first processed forward step (its dz there goes to dz_first).
__device__ __forceinline__ int64_t first_step(int64_t len, bool reverse) {
  return reverse ? (len > 0 ? len - 1 : 0) : 0;
}

// Loads/stores of the exchanged state through L2 (bypassing L1, which is not coherent).
__device__ __forceinline__ float ld_state(const float* p) { return __ldcg(p); }
__device__ __forceinline__ double ld_state(const double* p) { return __ldcg(p); }
__device__ __forceinline__ void st_state(float* p, float v) { __stcg(p, v); }
__device__ __forceinline__ void st_state(double* p, double v) { __stcg(p, v); }

// ------------------------------------------------------------------------------------------------
// Arguments (passed by value to every launch).

template <typename T>
struct Args {
  using A = acc_t<T>;
  T* out = nullptr;            // forward: (T,B,H) pre in, h out. backward: forward output (read).
  const T* w = nullptr;        // (H,H) row-major W_hh (kGates·H rows for a cell with gates)
  const T* vec0 = nullptr;     // forward: h0. backward: grad_hn (nullptr = zeros)
  const T* gout = nullptr;     // backward: grad_out (nullptr = zeros)
  T* dz = nullptr;             // backward: (T,B,H)
  T* dz_first = nullptr;       // backward: (B,H)
  T* last = nullptr;           // forward: h_n. backward: grad_h0
  const int64_t* lengths = nullptr;
  A* state = nullptr;          // (2,B,H)
  unsigned* counters = nullptr;  // persistent, G > 1: one zeroed counter per group
  int64_t steps = 0, B = 0, H = 0;
  int64_t s = 0;               // stepwise: the step number of this launch
  int G = 1, R = 4, BBg = 1, BC = 4, Hp = 128;  // persistent plan (G: CTAs per group)
  Act act = Act::Tanh;         // the cell's variant (Elman: tanh or relu); the cell itself is the
                               // kernels' template parameter
  bool reverse = false;
};

}  // namespace cuda_detail
}  // namespace rnnfused
