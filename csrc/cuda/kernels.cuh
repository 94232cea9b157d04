// rnnfused: the CUDA kernels of the sequential recurrence, their launch plans and the heuristic.
// Included by the per-dtype files rnn_f32.cu / rnn_f64.cu / rnn_f16.cu / rnn_bf16.cu (one
// instantiation each, so builds run in parallel). No ATen tensors here: raw pointers only.
//
// Notation: T steps, B batch items, H hidden size, storage type T (float, double, __half,
// __nv_bfloat16), accumulation type A (float; double for double). s is the step number in
// processing order, t the time index it touches:
//   forward  : t = s            (reverse direction: t = T-1-s)
//   backward : t = T-1-s        (reverse direction: t = s)
// Item b is active at t iff t < len(b), len(b) = clamp(lengths[b], 0, T) (T without lengths).
//
// Kernels
//  1. step_kernel<T, BWD, Cfg>: one launch per step; a tiled (batch x H) GEMM over K = H with the
//     whole step fused into it. Forward: out[t] = act(out[t] + h_{t-1} W_hhᵀ), state ping-pong in
//     A. Backward: dz_t is formed while loading the A operand ((dh + g_t) * act'(h_t)); CTAs of the
//     first column tile also store dz[t] (and dz_first); the product gives dh_{t-1} = dz_t W_hh.
//     Any B, any H. The general fallback.
//  2. persist_kernel<T, BWD>: one launch for all T steps. A group of G CTAs owns a batch slice;
//     CTA g of the group keeps rows [g*R, g*R+R) of W_hh (forward) or of W_hhᵀ (backward) in
//     shared memory, in storage precision, for the whole sequence. Per step each CTA loads the
//     previous state of its batch slice (whole rows, from the A state buffer through L2) in
//     chunks of BC items, computes its R outputs per item, and writes them back; for G > 1 the
//     group then meets at a barrier (monotonic counter per group, release/acquire), and the grid is
//     launched cooperatively (co-residency guaranteed by the driver, also checked before by the
//     occupancy API). G == 1 needs no barrier at all (__syncthreads only).
//  3. plan_persistent / choose(): the heuristic. Persistent wherever W_hh fits on chip (spread
//     over at most all SMs) and the grid can be co-resident; stepwise otherwise.
#pragma once

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <tuple>
#include <map>

#include "../rnn.h"
#include "launch.h"

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

// Activation and its derivative from the output. relu keeps NaN (x < 0 is false for NaN), like
// torch.relu.
__device__ __forceinline__ float act(float x, bool relu) { return relu ? (x < 0.f ? 0.f : x) : tanhf(x); }
__device__ __forceinline__ double act(double x, bool relu) { return relu ? (x < 0.0 ? 0.0 : x) : tanh(x); }
template <typename A>
__device__ __forceinline__ A dact(A y, bool relu) {
  return relu ? (y <= A(0) ? A(0) : A(1)) : A(1) - y * y;  // relu' passes NaN like torch
}

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
  const T* w = nullptr;        // (H,H) row-major W_hh
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
  int G = 1, R = 4, BBg = 1, BC = 4, Hp = 128;  // persistent plan
  bool relu = false, reverse = false;
};

// ------------------------------------------------------------------------------------------------
// 1. Stepwise kernel: C[b][n] = sum_k Aop[b][k] * Bop[k][n] for one step, fused epilogue.
//    forward : Aop = h_{t-1} (B x H), Bop[k][n] = W[n][k]     -> pre-activation increment
//    backward: Aop = dz_t    (B x H), Bop[k][n] = W[k][n]     -> dh_{t-1}
// Grid: x = batch tiles (BM), y = column tiles (BN); 256 threads; thread (tx, ty) owns outputs
// (ty + i*NTY, tx + j*NTX), i < TM, j < TN (interleaved: conflict-free shared-memory reads).

template <int BM_, int BN_, int TM_, int TN_>
struct StepCfg {
  static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, BK = 32, NT = 256;
  static constexpr int NTX = BN / TN, NTY = BM / TM;
  static_assert(NTX * NTY == NT, "step tile must map onto 256 threads");
};
using StepSmall = StepCfg<8, 64, 1, 2>;   // B <= 32
using StepLarge = StepCfg<64, 64, 4, 4>;  // B > 32

template <typename T, bool BWD, typename Cfg>
__global__ void __launch_bounds__(256) step_kernel(Args<T> a) {
  using A = acc_t<T>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, TM = Cfg::TM, TN = Cfg::TN, BK = Cfg::BK;
  constexpr int NT = Cfg::NT, NTX = Cfg::NTX, NTY = Cfg::NTY;
  __shared__ A As[BK][BM + 1];
  __shared__ A Bs[BK][BN + 1];

  const int tid = threadIdx.x, tx = tid % NTX, ty = tid / NTX;
  const int64_t B = a.B, H = a.H, NS = a.steps, s = a.s;
  const int64_t t = (a.reverse != BWD) ? NS - 1 - s : s;
  const int64_t b0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;
  const int64_t BH = B * H, tBH = t * BH;
  const A* scur = a.state + (s & 1) * BH;
  A* snext = a.state + ((s + 1) & 1) * BH;

  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = A(0);

  for (int64_t k0 = 0; k0 < H; k0 += BK) {
    // A operand tile, stored transposed: As[kk][m]. Compile-time trip counts, loads first and
    // stores after, so that all of a thread's global loads are in flight together.
    static_assert((BM * BK) % NT == 0 && (BN * BK) % NT == 0, "tile loads must divide evenly");
    constexpr int LA = BM * BK / NT, LB = BN * BK / NT;
    A av_ld[LA];
#pragma unroll
    for (int it = 0; it < LA; ++it) {
      const int i = tid + it * NT;
      const int m = i / BK, kk = i % BK;
      const int64_t b = b0 + m, k = k0 + kk;
      A v = A(0);
      if (b < B && k < H) {
        const int64_t idx = b * H + k;
        if (!BWD) {
          v = s == 0 ? to_acc(a.vec0[idx]) : scur[idx];
        } else {
          const int64_t len = item_len(a.lengths, b, NS);
          if (t < len) {
            const A dh = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : scur[idx];
            const A g = a.gout ? to_acc(a.gout[tBH + idx]) : A(0);
            v = (dh + g) * dact(to_acc(a.out[tBH + idx]), a.relu);
          }
          if (blockIdx.y == 0) {  // one column tile stores dz (it sees every k of its rows)
            a.dz[tBH + idx] = Cvt<T>::from(v);
            if (t == first_step(len, a.reverse)) a.dz_first[idx] = Cvt<T>::from(v);
          }
        }
      }
      av_ld[it] = v;
    }
    // B operand tile: Bs[kk][n].
    A bv_ld[LB];
#pragma unroll
    for (int it = 0; it < LB; ++it) {
      const int i = tid + it * NT;
      if (!BWD) {  // Bs[kk][n] = W[n0+n][k0+kk]; consecutive threads walk k (coalesced)
        const int n = i / BK, kk = i % BK;
        const int64_t row = n0 + n, k = k0 + kk;
        bv_ld[it] = (row < H && k < H) ? to_acc(a.w[row * H + k]) : A(0);
      } else {     // Bs[kk][n] = W[k0+kk][n0+n]; consecutive threads walk n (coalesced)
        const int kk = i / BN, n = i % BN;
        const int64_t row = k0 + kk, col = n0 + n;
        bv_ld[it] = (row < H && col < H) ? to_acc(a.w[row * H + col]) : A(0);
      }
    }
#pragma unroll
    for (int it = 0; it < LA; ++it) {
      const int i = tid + it * NT;
      As[i % BK][i / BK] = av_ld[it];
    }
#pragma unroll
    for (int it = 0; it < LB; ++it) {
      const int i = tid + it * NT;
      if (!BWD) Bs[i % BK][i / BK] = bv_ld[it];
      else Bs[i / BN][i % BN] = bv_ld[it];
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < BK; ++kk) {
      A av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = As[kk][ty + i * NTY];
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * NTX];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  const bool last_step = (s == NS - 1);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t b = b0 + ty + i * NTY;
    if (b >= B) continue;
    const bool active = t < item_len(a.lengths, b, NS);
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tx + j * NTX;
      if (n >= H) continue;
      const int64_t idx = b * H + n;
      A v;
      if (!BWD) {
        if (active) {
          v = act(to_acc(a.out[tBH + idx]) + acc[i][j], a.relu);
          a.out[tBH + idx] = Cvt<T>::from(v);
        } else {
          v = s == 0 ? to_acc(a.vec0[idx]) : scur[idx];
          a.out[tBH + idx] = Cvt<T>::zero();
        }
      } else {
        if (active) v = acc[i][j];
        else v = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : scur[idx];
      }
      snext[idx] = v;
      if (last_step) a.last[idx] = Cvt<T>::from(v);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// 2. Persistent kernel.

template <typename A> struct PersistThreads { static constexpr int value = 512; };
template <> struct PersistThreads<double> { static constexpr int value = 256; };  // registers
constexpr int kPrefetch = 4;  // epilogue operands per thread loaded early (before the dot)
constexpr int kKChunk = 128;    // k per warp iteration (32 lanes x 4); rows are padded to it
constexpr int kLoadBatch = 8;  // state loads in flight per thread in the persistent loader

// Sum of v[0..15] over the 32 lanes of a warp in 16 shuffles (transpose-reduce). On return,
// lane l holds the total of index (l >> 1) & 15.
template <typename A>
__device__ __forceinline__ A warp_reduce16(A (&v)[16], int lane) {
  constexpr unsigned kFull = 0xffffffffu;
  {
    const bool up = lane & 16;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const A send = up ? v[i] : v[i + 8], keep = up ? v[i + 8] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 16);
    }
  }
  {
    const bool up = lane & 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const A send = up ? v[i] : v[i + 4], keep = up ? v[i + 4] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 8);
    }
  }
  {
    const bool up = lane & 4;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const A send = up ? v[i] : v[i + 2], keep = up ? v[i + 2] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 4);
    }
  }
  {
    const bool up = lane & 2;
    const A send = up ? v[0] : v[1], keep = up ? v[1] : v[0];
    v[0] = keep + __shfl_xor_sync(kFull, send, 2);
  }
  return v[0] + __shfl_xor_sync(kFull, v[0], 1);
}

// Barrier of the G CTAs of one group. The counter only grows (target = G * (steps done)); the
// comparison is wrap-safe. Pattern as cooperative_groups' grid sync: bar.sync, then thread 0
// fences (release, cumulative over the CTA's writes), arrives, spins with ld.acquire.gpu, fences.
__device__ __forceinline__ void group_barrier(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
    unsigned v;
    while (true) {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(counter) : "memory");
      if (static_cast<int>(v - target) >= 0) break;
    }
    __threadfence();
  }
  __syncthreads();
}

template <typename T, bool BWD>
__global__ void __launch_bounds__(PersistThreads<acc_t<T>>::value, 1) persist_kernel(Args<T> a) {
  using A = acc_t<T>;
  constexpr int NT = PersistThreads<A>::value, NW = NT / 32;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int G = a.G, R = a.R, BCmax = a.BC, Hp = a.Hp;
  const int g = blockIdx.x % G;
  const int64_t q = blockIdx.x / G;
  const int64_t NS = a.steps, B = a.B, H = a.H, BH = B * H;
  const int64_t row0 = (int64_t)g * R;
  const int Rc = (int)min((int64_t)R, H - row0);  // >= 1: the plan makes G = ceil(H / R)
  const int64_t gb0 = q * a.BBg, gb1 = min(B, gb0 + a.BBg);
  const int NR = R / 4, nkc = Hp / kKChunk;

  T* Ws = reinterpret_cast<T*>(smem_raw);  // [R][Hp]
  const size_t ws_bytes = ((size_t)R * Hp * sizeof(T) + 15) & ~size_t(15);
  A* vs = reinterpret_cast<A*>(smem_raw + ws_bytes);  // [BC][Hp]
  A* red = vs + (size_t)BCmax * Hp;                    // [KS][BCa][R]

  // W slice, zero-padded to R rows and Hp columns. Forward: Ws[r][k] = W[row0+r][k].
  // Backward: Ws[r][j] = W[j][row0+r] (columns of W; consecutive threads walk j so the shared
  // stores are conflict-free; the strided global reads happen once).
  for (int64_t i = tid; i < (int64_t)R * Hp; i += NT) {
    const int r = (int)(i / Hp), k = (int)(i % Hp);
    T v = Cvt<T>::zero();
    if (r < Rc && k < H) v = BWD ? a.w[(int64_t)k * H + row0 + r] : a.w[(row0 + r) * H + k];
    Ws[i] = v;
  }

  unsigned* counter = (G > 1) ? a.counters + q : nullptr;
  for (int64_t s = 0; s < NS; ++s) {
    const int64_t t = (a.reverse != BWD) ? NS - 1 - s : s;
    const int64_t tBH = t * BH;
    const A* scur = a.state + (s & 1) * BH;
    A* snext = a.state + ((s + 1) & 1) * BH;
    const bool last_step = (s == NS - 1);

    for (int64_t c0 = gb0; c0 < gb1; c0 += BCmax) {
      const int BCc = (int)min((int64_t)BCmax, gb1 - c0);
      const int BCa = (BCc + 3) & ~3;
      const int tiles = NR * (BCa / 4);
      const int KS = max(1, min(NW / tiles, nkc));
      const int nout = BCc * Rc;

      // Epilogue operand, loaded early so its latency hides behind the load + dot below:
      // forward the pre-activation out[t][b][j]; backward the old dh[b][k] (kept if inactive).
      auto load_e = [&](int o) -> A {
        const int bl = o / Rc, r = o % Rc;
        const int64_t idx = (c0 + bl) * H + row0 + r;
        if (!BWD) return to_acc(a.out[tBH + idx]);
        return s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : ld_state(scur + idx);
      };
      A e[kPrefetch];
#pragma unroll
      for (int i = 0; i < kPrefetch; ++i) {
        const int o = tid + i * NT;
        e[i] = o < nout ? load_e(o) : A(0);
      }

      // Vector operand of the chunk: vs[bl][k] (zero-padded rows and columns).
      // Forward: h_{t-1}. Backward: dz_t = (dh + g_t) * act'(h_t), 0 where inactive; the CTA
      // also stores dz (and dz_first) for its own columns [row0, row0 + Rc).
      // Batched: kLoadBatch loads in flight per thread before their shared-memory stores.
      auto fetch = [&](int i) -> A {
        const int bl = i / Hp, k = i % Hp;
        A v = A(0);
        if (bl < BCc && k < H) {
          const int64_t b = c0 + bl, idx = b * H + k;
          if (!BWD) {
            v = s == 0 ? to_acc(a.vec0[idx]) : ld_state(scur + idx);
          } else {
            const int64_t len = item_len(a.lengths, b, NS);
            if (t < len) {
              const A dh = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : ld_state(scur + idx);
              const A gg = a.gout ? to_acc(a.gout[tBH + idx]) : A(0);
              v = (dh + gg) * dact(to_acc(a.out[tBH + idx]), a.relu);
            }
            if (k >= row0 && k < row0 + Rc) {
              a.dz[tBH + idx] = Cvt<T>::from(v);
              if (t == first_step(len, a.reverse)) a.dz_first[idx] = Cvt<T>::from(v);
            }
          }
        }
        return v;
      };
      const int nvs = BCa * Hp;
      for (int i0 = tid; i0 < nvs; i0 += NT * kLoadBatch) {
        A v[kLoadBatch];
#pragma unroll
        for (int u = 0; u < kLoadBatch; ++u) {
          const int i = i0 + u * NT;
          v[u] = i < nvs ? fetch(i) : A(0);
        }
#pragma unroll
        for (int u = 0; u < kLoadBatch; ++u) {
          const int i = i0 + u * NT;
          if (i < nvs) vs[i] = v[u];
        }
      }
      __syncthreads();

      // Dot products: unit u = (k split ks, tile of 4 rows x 4 items), one warp per unit; lanes
      // split k in chunks of 128 (4 consecutive elements each).
      for (int u = warp; u < tiles * KS; u += NW) {
        const int ks = u / tiles, tile = u % tiles;
        const int rt = tile % NR, bt = tile / NR;
        const T* wp = Ws + (size_t)(rt * 4) * Hp + lane * 4;
        const A* hp = vs + (size_t)(bt * 4) * Hp + lane * 4;
        A acc[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) acc[i] = A(0);
        for (int c = ks; c < nkc; c += KS) {
          const int k = c * kKChunk;
          A hv[4][4];
#pragma unroll
          for (int j = 0; j < 4; ++j) ld4(hp + (size_t)j * Hp + k, hv[j]);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            A wv[4];
            ld4(wp + (size_t)i * Hp + k, wv);
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
              for (int x = 0; x < 4; ++x) acc[i * 4 + j] = fma(wv[x], hv[j][x], acc[i * 4 + j]);
          }
        }
        const A sum = warp_reduce16(acc, lane);
        if ((lane & 1) == 0) {
          const int idx16 = (lane >> 1) & 15, rr = idx16 >> 2, bb = idx16 & 3;
          red[((size_t)ks * BCa + bt * 4 + bb) * R + rt * 4 + rr] = sum;
        }
      }
      __syncthreads();

      // Epilogue: output o = (item bl, row r), rows fastest (coalesced global stores).
      auto epi = [&](int o, A ev) {
        const int bl = o / Rc, r = o % Rc;
        const int64_t b = c0 + bl, j = row0 + r, idx = b * H + j;
        A dot = A(0);
        for (int ks = 0; ks < KS; ++ks) dot += red[((size_t)ks * BCa + bl) * R + r];
        const bool active = t < item_len(a.lengths, b, NS);
        A v;
        if (!BWD) {
          if (active) {
            v = act(ev + dot, a.relu);
            a.out[tBH + idx] = Cvt<T>::from(v);
          } else {
            v = vs[(size_t)bl * Hp + j];
            a.out[tBH + idx] = Cvt<T>::zero();
          }
        } else {
          v = active ? dot : ev;
        }
        st_state(snext + idx, v);
        if (last_step) a.last[idx] = Cvt<T>::from(v);
      };
#pragma unroll
      for (int i = 0; i < kPrefetch; ++i) {
        const int o = tid + i * NT;
        if (o < nout) epi(o, e[i]);
      }
      for (int o = tid + kPrefetch * NT; o < nout; o += NT) epi(o, load_e(o));
      // vs and red are rewritten by the next chunk; with G == 1 this is also the step barrier
      // (the state written above is read back by other threads of this CTA only).
      __syncthreads();
    }
    if (G > 1) group_barrier(counter, (unsigned)G * (unsigned)(s + 1));
  }
}

// ------------------------------------------------------------------------------------------------
// 3. Plans and the heuristic (host).

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct DevInfo {
  int dev = 0, nsm = 0, smem_optin = 0, coop = 0;
};
inline DevInfo dev_info() {
  DevInfo d;
  d.dev = c10::cuda::current_device();
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&d.nsm, cudaDevAttrMultiProcessorCount, d.dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, d.dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&d.coop, cudaDevAttrCooperativeLaunch, d.dev));
  return d;
}

struct Plan {
  bool ok = false;
  int G = 1, R = 4, NBg = 1, BBg = 1, BC = 4, Hp = 128, nt = 0;
  size_t smem = 0;
  std::string why;
};

constexpr int64_t kWorkPerCta = 32768;  // target multiply-adds per CTA per step when splitting rows

template <typename T, bool BWD>
Plan plan_persistent_uncached(int64_t B, int64_t H, const DevInfo& d) {
  using A = acc_t<T>;
  constexpr int NT = PersistThreads<A>::value, NW = NT / 32;
  Plan pl;
  pl.nt = NT;
  if (B <= 0 || H <= 0) { pl.why = "empty batch or hidden size"; return pl; }
  const int64_t Hp = round_up(H, kKChunk);
  const int64_t tw = sizeof(T), ta = sizeof(A), smax = d.smem_optin;
  auto smem_for = [&](int64_t R, int64_t BC) -> int64_t {  // R, BC multiples of 4
    const int64_t tiles = (R / 4) * (BC / 4);
    return round_up(R * Hp * tw, 16) + BC * Hp * ta + std::max<int64_t>(tiles, NW) * 16 * ta;
  };
  auto bc_fit = [&](int64_t R, int64_t cap) -> int64_t {  // largest multiple of 4 <= cap that fits
    int64_t bc = 4;
    while (bc + 4 <= cap && smem_for(R, bc + 4) <= smax) bc += 4;
    return bc;
  };
  if (smem_for(4, 4) > smax) {
    pl.why = "hidden_size " + std::to_string(H) + " is too large: 4 rows of W_hh and 4 state rows " +
             "exceed the " + std::to_string(smax) + " bytes of shared memory per block";
    return pl;
  }
  int64_t Gmin = -1;
  const int64_t Gcap = std::min<int64_t>(d.nsm, ceil_div(H, 4));
  for (int64_t G = 1; G <= Gcap; ++G) {
    const int64_t R = round_up(ceil_div(H, G), 4);
    if (smem_for(R, 4) <= smax) { Gmin = ceil_div(H, R); break; }
  }
  if (Gmin < 0) {
    pl.why = "W_hh (hidden_size " + std::to_string(H) + ", " + std::to_string(tw) +
             "-byte elements) does not fit in the shared memory of " + std::to_string(d.nsm) +
             " SMs";
    return pl;
  }
  auto kernel = persist_kernel<T, BWD>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smax));
  auto occupancy = [&](int64_t smem) {
    int n = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, NT, (size_t)smem));
    return (int64_t)n;
  };
  pl.Hp = (int)Hp;
  if (Gmin == 1) {
    // W_hh fits one CTA: each CTA owns a batch slice; no barrier, no co-residency needed.
    const int64_t R = round_up(H, 4);
    const int64_t BBg = std::max<int64_t>(1, ceil_div(B, d.nsm));
    const int64_t BC = bc_fit(R, round_up(BBg, 4));
    const int64_t smem = smem_for(R, BC);
    if (occupancy(smem) < 1) { pl.why = "the persistent kernel cannot be resident on an SM"; return pl; }
    pl.ok = true; pl.G = 1; pl.R = (int)R; pl.BBg = (int)BBg; pl.NBg = (int)ceil_div(B, BBg);
    pl.BC = (int)BC; pl.smem = (size_t)smem;
    return pl;
  }
  if (!d.coop) { pl.why = "the device does not support cooperative launches"; return pl; }
  // Several CTAs per group, one barrier per step: the whole grid must be co-resident.
  for (int64_t NB0 = std::min<int64_t>(B, std::max<int64_t>(1, d.nsm / Gmin)); NB0 >= 1; --NB0) {
    const int64_t BBg = ceil_div(B, NB0), NBg = ceil_div(B, BBg);
    const int64_t Gwork = std::max<int64_t>(1, H * H * BBg / kWorkPerCta);
    int64_t G = std::max<int64_t>(Gmin, std::min<int64_t>(d.nsm / NBg, Gwork));
    G = std::min<int64_t>(G, ceil_div(H, 4));
    const int64_t R = round_up(ceil_div(H, G), 4);
    G = ceil_div(H, R);
    const int64_t BC = bc_fit(R, round_up(BBg, 4));
    const int64_t smem = smem_for(R, BC);
    if (smem > smax) continue;
    if (occupancy(smem) * d.nsm >= G * NBg) {
      pl.ok = true; pl.G = (int)G; pl.R = (int)R; pl.BBg = (int)BBg; pl.NBg = (int)NBg;
      pl.BC = (int)BC; pl.smem = (size_t)smem;
      return pl;
    }
  }
  pl.why = "the " + std::to_string(Gmin) + "+ CTAs per batch group cannot all be co-resident";
  return pl;
}

template <typename T, bool BWD>
Plan plan_persistent(int64_t B, int64_t H) {
  const DevInfo d = dev_info();
  static std::mutex mu;
  static std::map<std::tuple<int, int64_t, int64_t>, Plan> cache;
  const auto key = std::make_tuple(d.dev, B, H);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Plan pl = plan_persistent_uncached<T, BWD>(B, H, d);
  if (pl.ok) {  // (also set inside the uncached plan, before its occupancy queries; the
                // attribute is per device and persists, and the cache key includes the device)
    C10_CUDA_CHECK(cudaFuncSetAttribute(persist_kernel<T, BWD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, d.smem_optin));
  }
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() > 4096) cache.clear();
  cache.emplace(key, pl);
  return pl;
}

// The heuristic, in one place: persistent wherever it has a plan, stepwise otherwise; the
// environment variable RNNFUSED_KERNEL forces one (persistent forced where impossible raises).
template <typename T, bool BWD>
bool choose_persistent(int64_t B, int64_t H, Plan* plan_out) {
  const KernelMode mode = kernel_mode();
  if (mode == KernelMode::kStepwise) return false;
  Plan pl = plan_persistent<T, BWD>(B, H);
  if (mode == KernelMode::kPersistent) {
    TORCH_CHECK(pl.ok, "rnnfused: RNNFUSED_KERNEL=persistent, but the persistent ",
                BWD ? "backward" : "forward", " kernel cannot run batch ", B, ", hidden_size ", H,
                " on this device: ", pl.why, ". Unset RNNFUSED_KERNEL (or set it to auto or "
                "stepwise) to use the stepwise kernel.");
  }
  if (plan_out) *plan_out = pl;
  return pl.ok;
}

// ------------------------------------------------------------------------------------------------
// Launchers.

template <typename T, bool BWD>
void launch_stepwise(Args<T> a, cudaStream_t stream) {
  const bool large = a.B > 32;
  const int64_t gx = ceil_div(a.B, large ? StepLarge::BM : StepSmall::BM);
  const int64_t gy = ceil_div(a.H, large ? StepLarge::BN : StepSmall::BN);
  TORCH_CHECK(gy <= 65535 && gx <= INT32_MAX, "rnnfused: sizes too large for the stepwise grid");
  const dim3 grid((unsigned)gx, (unsigned)gy), block(256);
  for (int64_t s = 0; s < a.steps; ++s) {
    a.s = s;
    if (large) step_kernel<T, BWD, StepLarge><<<grid, block, 0, stream>>>(a);
    else step_kernel<T, BWD, StepSmall><<<grid, block, 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename T, bool BWD>
void launch_persistent(Args<T> a, const Plan& pl, cudaStream_t stream) {
  a.G = pl.G; a.R = pl.R; a.BBg = pl.BBg; a.BC = pl.BC; a.Hp = pl.Hp;
  c10::DataPtr counters;
  if (pl.G > 1) {
    // One counter per batch group, zeroed on the stream (capturable); freed back to the caching
    // allocator after the launch is enqueued, stream-ordered on the current stream.
    counters = c10::cuda::CUDACachingAllocator::get()->allocate(sizeof(unsigned) * pl.NBg);
    C10_CUDA_CHECK(cudaMemsetAsync(counters.get(), 0, sizeof(unsigned) * pl.NBg, stream));
    a.counters = static_cast<unsigned*>(counters.get());
  }
  const dim3 grid((unsigned)(pl.G * pl.NBg)), block(pl.nt);
  auto kernel = persist_kernel<T, BWD>;
  if (pl.G > 1) {
    void* args[] = {&a};
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), grid, block,
                                               args, pl.smem, stream));
  } else {
    kernel<<<grid, block, pl.smem, stream>>>(a);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The kernel arguments both passes fill alike, from rnn.h's RNNCommon.
template <typename T>
Args<T> common_args(const RNNCommon& p) {
  Args<T> a;
  a.lengths = p.lengths;
  a.state = static_cast<acc_t<T>*>(p.state);
  a.steps = p.T;
  a.B = p.B;
  a.H = p.H;
  a.relu = p.relu;
  a.reverse = p.reverse;
  return a;
}

template <typename T>
void fwd_impl(const RNNFwdParams& p, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0) return;
  if (p.T == 0) {  // h_n = h0
    C10_CUDA_CHECK(cudaMemcpyAsync(p.hn, p.h0, sizeof(T) * p.B * p.H, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  Args<T> a = common_args<T>(p);
  a.out = static_cast<T*>(p.out);
  a.w = static_cast<const T*>(p.w_hh);
  a.vec0 = static_cast<const T*>(p.h0);
  a.last = static_cast<T*>(p.hn);
  Plan pl;
  if (choose_persistent<T, false>(p.B, p.H, &pl)) launch_persistent<T, false>(a, pl, stream);
  else launch_stepwise<T, false>(a, stream);
}

template <typename T>
void bwd_impl(const RNNBwdParams& p, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0) return;
  const size_t bytes = sizeof(T) * p.B * p.H;
  if (p.T == 0) {  // grad_h0 = grad_hn (or 0), dz_first = 0
    if (p.grad_hn) C10_CUDA_CHECK(cudaMemcpyAsync(p.grad_h0, p.grad_hn, bytes, cudaMemcpyDeviceToDevice, stream));
    else C10_CUDA_CHECK(cudaMemsetAsync(p.grad_h0, 0, bytes, stream));
    C10_CUDA_CHECK(cudaMemsetAsync(p.dz_first, 0, bytes, stream));
    return;
  }
  Args<T> a = common_args<T>(p);
  a.out = const_cast<T*>(static_cast<const T*>(p.out));  // read only in the backward kernels
  a.w = static_cast<const T*>(p.w_hh);
  a.vec0 = static_cast<const T*>(p.grad_hn);
  a.gout = static_cast<const T*>(p.grad_out);
  a.dz = static_cast<T*>(p.dz);
  a.dz_first = static_cast<T*>(p.dz_first);
  a.last = static_cast<T*>(p.grad_h0);
  Plan pl;
  if (choose_persistent<T, true>(p.B, p.H, &pl)) launch_persistent<T, true>(a, pl, stream);
  else launch_stepwise<T, true>(a, stream);
}

template <typename T>
const char* kernel_name_impl(int64_t B, int64_t H, bool backward) {
  if (B <= 0 || H <= 0) return "stepwise";  // nothing runs; the launcher returns early
  const bool pers = backward ? choose_persistent<T, true>(B, H, nullptr)
                             : choose_persistent<T, false>(B, H, nullptr);
  return pers ? "persistent" : "stepwise";
}

#define RNNFUSED_INSTANTIATE(T)                                                     \
  template void fwd_impl<T>(const RNNFwdParams&, cudaStream_t);                     \
  template void bwd_impl<T>(const RNNBwdParams&, cudaStream_t);                     \
  template const char* kernel_name_impl<T>(int64_t, int64_t, bool);

}  // namespace cuda_detail
}  // namespace rnnfused
