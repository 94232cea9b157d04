// The CPU row kernels compiled for AVX-512 (F, BW, DQ, VL: what ATen's own AVX512 capability
// requires; ATen's Vectorized<T> then uses 512-bit intrinsics and Sleef): their tables
// (row_table.h). rnn_cpu_isa.cpp uses them only where the processor has all four (and the OS
// saves the registers).
// The target pragma comes before any include so every function in this file, inline ones from
// headers included, is compiled for the same target.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define RNNFUSED_AVX512 1
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#if __GNUC__ < 13
// GCC 12's avx512fintrin.h (_mm512_max_ps, _mm512_min_ps, ... via _mm512_undefined_ps, a
// deliberately uninitialised pass-through) warns "'__Y' may be used uninitialized" wherever ATen's
// Vectorized<float> max/min/clamp inline into this file, and "'__Y' is used uninitialized" where
// the LSTM's gates_fwd_row inlines them twice (tanh of the gate and of c): GCC bug 105593, fixed
// in GCC 13. A false positive (the pass-through is unused under a full mask); both silenced for
// this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#endif
// Headers such as sleef.h declare their entry points only under these macros, which a target
// pragma (unlike -mavx512f) does not define.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "kernels/make_tables.h"
#else
#include <c10/util/Exception.h>

#include "row_table.h"
#endif

namespace rnnfused::cpu {
#ifdef RNNFUSED_AVX512
// 32 vector registers: dot-form tiles of 4 rows × 4 columns (16 accumulators + 4 row vectors),
// broadcast form with 16 accumulators. The same blocking, built portably, is Isa::Vec16.
bool have_avx512_kernels() { return true; }
template <typename T>
IsaTables<T> tables_avx512() {
  return make_tables<Vectorized<T>, Blocking<4, 16, 32>>(Isa::Avx512);
}
#else
bool have_avx512_kernels() { return false; }
template <typename T>
IsaTables<T> tables_avx512() {
  TORCH_CHECK(false, "rnnfused: no AVX-512 kernels");
}
#endif
template IsaTables<float> tables_avx512<float>();
template IsaTables<double> tables_avx512<double>();
}  // namespace rnnfused::cpu

#if defined(RNNFUSED_AVX512) && defined(__clang__)
#pragma clang attribute pop
#endif
