// rnnfused: the one portability header of the device code.
//
// The kernels (csrc/cuda/device/*.cuh) are written once, in CUDA C++, and compiled twice:
//  - by nvcc, for the GPU: everything below maps to CUDA itself;
//  - by a host C++ compiler with RNNFUSED_EMULATE defined (the test-only emulation build,
//    docs/emulator.md): every CUDA built-in the kernels use maps to the SIMT emulator in
//    csrc/emu/simt.h, which runs each CUDA thread as a fiber with CUDA's execution semantics.
//
// Rules for kernel code, so that both builds see the same text:
//  - shared memory only through RNNF_SHARED (static arrays) and RNNF_DYNAMIC_SHARED (the extern
//    dynamic buffer);
//  - no inline asm in a kernel body: a named device function here with both versions
//    (ld_acquire_gpu, backoff, spin_limit_trap);
//  - only the built-ins listed here (add a line to both branches when a kernel needs another).
#pragma once

#ifndef RNNFUSED_EMULATE
// ------------------------------------------------------------------------------------------------
// nvcc: CUDA itself.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 700
#error "rnnfused's CUDA kernels need compute capability 7.0 or newer (the group barrier's ld.acquire and __nanosleep): remove the architectures below 7.0 from TORCH_CUDA_ARCH_LIST"
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>

#define RNNF_SHARED(type, name, dims) __shared__ type name dims
#define RNNF_DYNAMIC_SHARED(type, name, align) extern __shared__ __align__(align) type name[]

namespace rnnfused {
// Load with acquire semantics at GPU scope: pairs with the release (fence + atomic) of another
// CTA's arrival at a group barrier.
__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// The same load without ordering (relaxed). Not used by the kernels: it is what the mutation
// check (tools/emu_mutate.py) puts in place of ld_acquire_gpu, to prove the tests see the loss.
__device__ __forceinline__ unsigned ld_relaxed_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// Backoff in a spin: the thread sleeps about `ns` nanoseconds (sm_70+), leaving the SM's issue
// slots and the memory system to the threads that will release it.
__device__ __forceinline__ void backoff(unsigned ns) { __nanosleep(ns); }
// A spin past its limit (debug builds, RNNFUSED_SPIN_LIMIT): a message and a trap instead of a
// hang, so that a run on a GPU fails with a cause.
__device__ __forceinline__ void spin_limit_trap(const char* what, unsigned seen, unsigned target) {
  printf("rnnfused: %s: block %d spun past RNNFUSED_SPIN_LIMIT (counter %u, waiting for %u)\n", what,
         (int)blockIdx.x, seen, target);
  __trap();
}
}  // namespace rnnfused

#else
// ------------------------------------------------------------------------------------------------
// Host build: the SIMT emulator provides threadIdx, __syncthreads, shuffles, atomics, fences,
// __ldg/__ldcg/__stcg, shared memory, half/bfloat16 types and conversions.
#include "../emu/simt.h"

#define RNNF_SHARED(type, name, dims)                                             \
  static const char name##_site_ = 0;                                             \
  type(&name) dims = *static_cast<type(*) dims>(::simt::static_shared(&name##_site_, sizeof(type dims)))
#define RNNF_DYNAMIC_SHARED(type, name, align) \
  type* name = static_cast<type*>(::simt::dynamic_shared(align))

namespace rnnfused {
inline unsigned ld_acquire_gpu(const unsigned* p) { return ::simt::ld_acquire(p); }
inline unsigned ld_relaxed_gpu(const unsigned* p) { return ::simt::ld_relaxed(p); }
inline void backoff(unsigned ns) { ::simt::nanosleep(ns); }
inline void spin_limit_trap(const char* what, unsigned seen, unsigned target) {
  ::simt::trap(std::string(what) + ": spun past RNNFUSED_SPIN_LIMIT (counter " + std::to_string(seen) +
               ", waiting for " + std::to_string(target) + ")");
}
}  // namespace rnnfused
#endif
