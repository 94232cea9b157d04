// The CPU row kernels compiled for AVX2 + FMA (ATen's Vectorized<T> then uses 256-bit
// intrinsics and Sleef): their tables (row_table.h). rnn_cpu_isa.cpp uses them only where the
// processor has both.
// The target pragma comes before any include so every function in this file, inline ones from
// headers included, is compiled for the same target.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define RNNFUSED_AVX2 1
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
// Headers such as sleef.h declare their AVX2 entry points only under these macros, which a
// target pragma (unlike -mavx2) does not define.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "kernels/make_tables.h"
#else
#include <c10/util/Exception.h>

#include "row_table.h"
#endif

namespace rnnfused::cpu {
#ifdef RNNFUSED_AVX2
// 16 vector registers: dot-form tiles of 3 rows × 4 columns (12 accumulators + 3 row vectors),
// broadcast form with 8 accumulators.
bool have_avx2_kernels() { return true; }
template <typename T>
IsaTables<T> tables_avx2() {
  return make_tables<Vectorized<T>, Blocking<3, 8, 16>>(Isa::Avx2);
}
#else
bool have_avx2_kernels() { return false; }
template <typename T>
IsaTables<T> tables_avx2() {
  TORCH_CHECK(false, "rnnfused: no AVX2 kernels");
}
#endif
template IsaTables<float> tables_avx2<float>();
template IsaTables<double> tables_avx2<double>();
}  // namespace rnnfused::cpu

#if defined(RNNFUSED_AVX2) && defined(__clang__)
#pragma clang attribute pop
#endif
