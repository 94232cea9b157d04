// rnnfused CPU: the per-row building blocks of the recurrence, one set per instruction set.
// rnn_cpu.cpp and rnn_cpu_cell.cpp run the step loops and call these through a table
// (RowKernels) chosen at run time (row_kernels<T>(), rnn_cpu_isa.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../cells/cell.h"

namespace rnnfused::cpu {

using rnnfused::Act;  // csrc/cells/cell.h

// The instruction sets the kernels are compiled for. Vec16 is the AVX-512 register blocking
// (16 float / 8 double lanes, same row and column blocks) built from portable C++ on any
// processor: tests use it to run the 16-lane blocking and tail logic where AVX-512 is missing.
enum class Isa : int { Default = 0, Avx2 = 1, Avx512 = 2, Vec16 = 3 };
const char* isa_name(Isa isa);

// The dot form, over weights in nn.RNN's own layout (no per-call preparation): for each of the
// nrows rows r and each column n in [n0, n1),
//   y_r[n] = act( init_r[n] + bias0[n] + bias1[n] + Σ_k x0_r[k] w0[n·k0 + k] + Σ_k x1_r[k] w1[n·k1 + k] )
// (each of init, bias0, bias1 may be null; k0 or k1 may be 0). w0, w1 row-major (N, k): row n of
// W_hh (or W_ih) is contiguous, so each output is a dot product of two contiguous rows; the
// kernel keeps a tile of rows × columns of such dot products in registers and reduces across
// the vector lanes once at the end. init may alias y.
// Forward step: init = y = pre_t rows, x0 = h_{t-1} rows, w0 = W_hh, k0 = H.
// Fused cell: x0 = x, w0 = W_ih, k0 = I, x1 = h, w1 = W_hh, k1 = H, bias0 = b_ih, bias1 = b_hh.
template <typename T>
struct DotArgs {
  int64_t nrows = 0;
  T* const* y = nullptr;
  const T* const* init = nullptr;
  const T* bias0 = nullptr;
  const T* bias1 = nullptr;
  const T* const* x0 = nullptr;
  const T* w0 = nullptr;
  int64_t k0 = 0;
  const T* const* x1 = nullptr;
  const T* w1 = nullptr;
  int64_t k1 = 0;
  Act act = Act::None;
};

// The panel form, over weights packed once per call (pack_panels): panel j holds the kPanel
// rows n = j·kPanel + c (c < kPanel) of a row-major (N, K) weight as WP[(j·K + k)·kPanel + c]
// (zero for n >= N). For each of the nrows rows r and each column n in [n0, n1) (n0 a multiple
// of kPanel),
//   y_r[n] = act( init_r[n] + bias[n] + Σ_k x_r[k] w[n·K + k] )
// (init and bias may be null; init may alias y). The kernel keeps a block of rows × panels of
// outputs in vector registers for the whole k loop (per k: one broadcast of x_r[k] per row, one
// load per vector of the panels, rows × vectors FMAs): no lane reduction, and the activation is
// applied in registers before the only store. Forward step: y = init = pre_t rows, x = h_{t-1}
// rows, wp = packed W_hh; input projection: x = input rows, wp = packed W_ih, bias = b_ih + b_hh.
constexpr int64_t kPanel = 16;

template <typename T>
struct PanelArgs {
  int64_t nrows = 0;
  T* const* y = nullptr;
  const T* const* init = nullptr;
  const T* bias = nullptr;
  const T* const* x = nullptr;
  const T* wp = nullptr;
  int64_t K = 0;
  Act act = Act::None;
};

// Packs a row-major (N, K) weight into panels (see PanelArgs): wp holds
// ceil(N / kPanel) · K · kPanel values.
template <typename T>
inline void pack_panels(T* wp, const T* w, int64_t N, int64_t K) {
  const int64_t np = (N + kPanel - 1) / kPanel;
  for (int64_t j = 0; j < np; ++j) {
    T* dst = wp + j * K * kPanel;
    for (int64_t c = 0; c < kPanel; ++c) {
      const int64_t n = j * kPanel + c;
      if (n < N) {
        const T* src = w + n * K;
        for (int64_t k = 0; k < K; ++k) dst[k * kPanel + c] = src[k];
      } else {
        for (int64_t k = 0; k < K; ++k) dst[k * kPanel + c] = T(0);
      }
    }
  }
}

// The same panels from a row-major (K, N) matrix m whose columns are the outputs (w[n·K + k] =
// m[k·N + n]): the backward's dh = dz W_hh reads W_hh this way. Each panel row is a contiguous
// piece of a row of m.
template <typename T>
inline void pack_panels_kn(T* wp, const T* m, int64_t K, int64_t N) {
  const int64_t np = (N + kPanel - 1) / kPanel;
  for (int64_t j = 0; j < np; ++j) {
    const int64_t c1 = std::min<int64_t>(kPanel, N - j * kPanel);
    T* dst = wp + j * K * kPanel;
    for (int64_t k = 0; k < K; ++k) {
      const T* src = m + k * N + j * kPanel;
      for (int64_t c = 0; c < c1; ++c) dst[k * kPanel + c] = src[c];
      for (int64_t c = c1; c < kPanel; ++c) dst[k * kPanel + c] = T(0);
    }
  }
}

template <typename T>
struct RowKernels {
  Isa isa;
  // See DotArgs: columns [n0, n1) of every row.
  void (*dot_rows)(const DotArgs<T>& a, int64_t n0, int64_t n1);
  // The broadcast form: for each of the nrows rows r and n in [n0, n1),
  //   y_r[n] = act((accumulate ? y_r[n] : 0) + Σ_k x_r[k] · M[k·ldm + n]),  M row-major (K, ldm).
  // Backward: y = dh rows, x = dz_t rows, M = W_hh (dh = dz W_hh needs no transpose either).
  void (*vecmat_rows)(int64_t nrows, T* const* y, const T* const* x, const T* M, int64_t K,
                      int64_t ldm, int64_t n0, int64_t n1, bool accumulate, Act act);
  // See PanelArgs: columns [n0, n1) of every row (n0 a multiple of kPanel).
  void (*panel_rows)(const PanelArgs<T>& a, int64_t n0, int64_t n1);
  // y[n] = act(y[n]), n < N: the epilogue when the recurrent product came from a BLAS call.
  void (*act_row)(T* y, int64_t N, Act act);
  // dz[n] = (dh[n] + g[n]) · act'(h[n]), act' from the activation's output; g may be null.
  void (*dz_row)(T* dz, const T* dh, const T* g, const T* h, int64_t N, Act act);
};

// Defined in rnn_cpu_default.cpp (Default and Vec16: any processor), rnn_cpu_avx2.cpp
// (x86-64 with AVX2 + FMA) and rnn_cpu_avx512.cpp (x86-64 with AVX-512 F/BW/DQ/VL).
RowKernels<float> row_kernels_default_f32();
RowKernels<double> row_kernels_default_f64();
RowKernels<float> row_kernels_vec16_f32();
RowKernels<double> row_kernels_vec16_f64();
bool have_avx2_kernels();  // compiled in (x86-64 with GCC or Clang)
RowKernels<float> row_kernels_avx2_f32();
RowKernels<double> row_kernels_avx2_f64();
bool have_avx512_kernels();
RowKernels<float> row_kernels_avx512_f32();
RowKernels<double> row_kernels_avx512_f64();

// rnn_cpu_isa.cpp: the instruction set in use for this call: RNNFUSED_CPU_ISA if set
// (default|avx2|avx512|vec16|auto; raises if the processor lacks the one named), else the best
// the processor has (capped by ATen's own ATEN_CPU_CAPABILITY=default|avx2).
Isa current_isa();
bool isa_supported(Isa isa, const char** why_not = nullptr);
template <typename T>
const RowKernels<T>& row_kernels();

}  // namespace rnnfused::cpu
