// rnnfused SIMT emulator: CUDA's execution model on the host, for testing the CUDA kernels on a
// machine without a GPU. Test code only: compiled into the emulation builds (docs/emulator.md),
// never into the rnnfused extension.
//
// What a kernel sees here, through csrc/cuda/portable.cuh:
//   threadIdx / blockIdx / blockDim / gridDim, __syncthreads, __shfl_xor_sync, __ldg / __ldcg /
//   __stcg, __threadfence, atomicAdd, an acquire load (ld_acquire_gpu), __nanosleep (backoff),
//   __trap, static and dynamic shared memory, __half / __nv_bfloat16 with CUDA's conversions,
//   min / max / fma / tanh.
// How it runs (csrc/emu/simt.cpp): every CUDA thread is a fiber on the calling host thread; a
// scheduler switches between fibers only at the primitives above, under one of several
// schedules (in order, reversed, random with preemption). It checks what a GPU run would not:
// divergent __syncthreads (threads of one block at different barriers, or some exited), deadlock
// (no thread can progress), shuffles whose mask does not match the threads that arrive, reads of
// shared memory never written (poisoned with 0xFF bytes: NaN in every float type), a cooperative
// grid larger than can be co-resident, and (in its memory model) cross-block reads that no
// release/acquire orders after the write. Built with -fsanitize=thread, it annotates its
// synchronisation for ThreadSanitizer so that races between CUDA threads are reported.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

// ------------------------------------------------------------------------------------------------
// CUDA qualifiers and vector types.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned x, y, z; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };

// CUDA's math overloads (host and device) that the kernels call unqualified.
using std::fma;
using std::tanh;
#define RNNF_EMU_MINMAX(T)                                     \
  inline T min(T a, T b) { return b < a ? b : a; }             \
  inline T max(T a, T b) { return a < b ? b : a; }
RNNF_EMU_MINMAX(int)
RNNF_EMU_MINMAX(unsigned)
RNNF_EMU_MINMAX(long)
RNNF_EMU_MINMAX(unsigned long)
RNNF_EMU_MINMAX(long long)
RNNF_EMU_MINMAX(unsigned long long)
RNNF_EMU_MINMAX(float)
RNNF_EMU_MINMAX(double)
#undef RNNF_EMU_MINMAX

// ------------------------------------------------------------------------------------------------
// __half and __nv_bfloat16: 16-bit storage (the layout of at::Half / at::BFloat16) with CUDA's
// round-to-nearest-even conversions.
struct __half { unsigned short bits; };
struct alignas(4) __half2 { __half x, y; };
struct __nv_bfloat16 { unsigned short bits; };
struct alignas(4) __nv_bfloat162 { __nv_bfloat16 x, y; };

namespace simt {
float half_bits_to_float(unsigned short h);
unsigned short float_to_half_bits_rn(float f);
inline float bf16_bits_to_float(unsigned short b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned short float_to_bf16_bits_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN: CUDA's canonical bfloat16 NaN
  u += 0x7fffu + ((u >> 16) & 1u);                     // round to nearest, ties to even
  return static_cast<unsigned short>(u >> 16);
}
}  // namespace simt

inline float __half2float(__half h) { return simt::half_bits_to_float(h.bits); }
inline __half __float2half_rn(float f) { return __half{simt::float_to_half_bits_rn(f)}; }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
inline float __bfloat162float(__nv_bfloat16 b) { return simt::bf16_bits_to_float(b.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{simt::float_to_bf16_bits_rn(f)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 b) {
  return float2{__bfloat162float(b.x), __bfloat162float(b.y)};
}

// ------------------------------------------------------------------------------------------------
// The emulator's interface. The scheduling and bookkeeping live out of line in simt.cpp (built
// without ThreadSanitizer instrumentation, so that only the kernels' own memory accesses, made in
// the inline functions below, are checked for races).
namespace simt {

enum class Schedule : int { kInOrder = 0, kReverse = 1, kRandom = 2 };

struct Options {
  Schedule schedule = Schedule::kInOrder;
  uint64_t seed = 1;
  double preempt_prob = 0.05;  // kRandom: chance of a switch at each primitive call
  int random_resident_blocks = 4;  // kRandom: blocks of a plain launch run at once
  bool memory_model = true;    // delayed cross-block visibility of __stcg stores (see simt.cpp)
  size_t stack_bytes = 0;      // 0: the default (64 KiB, 256 KiB under sanitizers)
};
Options get_options();
void set_options(const Options& o);

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_smem = 0;
  bool cooperative = false;
  long long max_coresident_blocks = 0;  // a cooperative grid must not exceed it (> 0)
  const char* name = "kernel";
};

// Runs one launch to completion on the calling host thread: every thread of every block runs
// `body` (the kernel called with its arguments). Throws std::runtime_error naming the kernel and
// the problem if the launch is invalid or a check fails (no partial results are to be trusted).
void launch(const LaunchConfig& cfg, const std::function<void()>& body);

struct Stats {
  long long launches = 0, cooperative_launches = 0, blocks = 0, threads = 0, switches = 0,
            barriers = 0, shuffles = 0, stale_reads = 0, sleeps = 0;
};
Stats stats();
void reset_stats();
// Launches so far of the kernel named `name` (LaunchConfig::name), since the last reset_stats().
long long launches_of(const std::string& name);

// Built-in variables of the running CUDA thread.
struct ThreadVars {
  uint3 threadIdx, blockIdx;
  dim3 blockDim, gridDim;
};
const ThreadVars& vars();

// Primitives (out of line).
void syncthreads(const char* file, int line);
void threadfence();
void preempt_point();
// __nanosleep: a backoff in a spin (counted; the scheduler may switch here).
void nanosleep(unsigned ns);
// A kernel's deliberate trap (__trap): the launch fails with `msg`.
[[noreturn]] void trap(const std::string& msg);
unsigned atomic_add(unsigned* p, unsigned v);
unsigned ld_acquire(const unsigned* p);
unsigned ld_relaxed(const unsigned* p);
void* dynamic_shared(size_t align);
void* static_shared(const void* site, size_t bytes);
uint64_t shfl_xor_bits(unsigned mask, uint64_t bits, int lane_mask, int width, const char* file, int line);
// The memory model: where a cross-block read of `p` comes from (p itself, or the value another
// block's not yet released store replaced), and the record of a store about to be made.
const void* read_source(const void* p, size_t bytes);
void before_store(void* p, size_t bytes);

}  // namespace simt

#ifndef SIMT_IMPLEMENTATION  // the emulator's own code names the fields, not the built-ins
#define threadIdx (::simt::vars().threadIdx)
#define blockIdx (::simt::vars().blockIdx)
#define blockDim (::simt::vars().blockDim)
#define gridDim (::simt::vars().gridDim)
#endif

#define __syncthreads() ::simt::syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(...) ::simt::shfl_xor_at(__FILE__, __LINE__, __VA_ARGS__)

namespace simt {
template <typename T>
T shfl_xor_at(const char* file, int line, unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shfl_xor_bits(mask, bits, lane_mask, width, file, line);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}
}  // namespace simt

// Global-memory loads and stores with cache hints: same values as plain accesses on a coherent
// host, but they are where the scheduler may preempt and where the memory model acts. The access
// itself is made here, in the kernel's own (sanitizer-instrumented) code.
template <typename T>
inline T __ldg(const T* p) {
  ::simt::preempt_point();
  return *static_cast<const T*>(::simt::read_source(p, sizeof(T)));
}
template <typename T>
inline T __ldcg(const T* p) {
  ::simt::preempt_point();
  return *static_cast<const T*>(::simt::read_source(p, sizeof(T)));
}
template <typename T>
inline void __stcg(T* p, T v) {
  ::simt::preempt_point();
  ::simt::before_store(p, sizeof(T));
  *p = v;
}
inline void __threadfence() { ::simt::threadfence(); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return ::simt::atomic_add(p, v); }
