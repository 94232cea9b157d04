// rnnfused CPU: the per-row building blocks of the recurrence, one set per instruction set.
// rnn_cpu.cpp runs the step loop and calls these through a table chosen once at run time.
#pragma once
#include <cstdint>

namespace rnnfused::cpu {

enum class Act : int { None = 0, Tanh = 1, Relu = 2 };

template <typename T>
struct RowKernels {
  // For each of the nrows rows r: y_r[n] = act((accumulate ? y_r[n] : 0) + Σ_k x_r[k] · M[k·N + n]),
  // n < N; M row-major (K, N). Rows are done together (up to 4) so each load of M feeds several.
  // Forward: y = pre_t rows, x = h_{t-1} rows, M = W_hhᵀ. Backward: y = dh rows, x = dz_t rows,
  // M = W_hh.
  void (*vecmat_rows)(int nrows, T* const* y, const T* const* x, const T* M, int64_t K, int64_t N,
                      bool accumulate, Act act);
  // y[n] = act(y[n]): the epilogue when the recurrent product came from a BLAS call.
  void (*act_row)(T* y, int64_t N, Act act);
  // dz[n] = (dh[n] + g[n]) · act'(h[n]), act' from the activation's output; g may be null.
  void (*dz_row)(T* dz, const T* dh, const T* g, const T* h, int64_t N, Act act);
};

// Defined in rnn_cpu_default.cpp (any processor) and rnn_cpu_avx2.cpp (x86-64 with AVX2 + FMA).
RowKernels<float> row_kernels_default_f32();
RowKernels<double> row_kernels_default_f64();
bool have_avx2_kernels();  // compiled in (x86-64 with GCC or Clang)
RowKernels<float> row_kernels_avx2_f32();
RowKernels<double> row_kernels_avx2_f64();

}  // namespace rnnfused::cpu
