// rnnfused CPU: packing a weight into the panels the panel form reads (row_table.h, PanelArgs),
// once per call, by the host-side step loops (rnn_cpu.cpp). Not compiled per instruction set:
// include it only from the baseline sources (an inline function instantiated under a target
// pragma could be the copy the linker keeps).
#pragma once
#include <algorithm>
#include <cstdint>

#include "row_table.h"

namespace rnnfused::cpu {

// Packs a row-major (G·N, K) weight whose rows are G gate blocks of N units each (PyTorch's
// gate order; a plain product has G = 1) into panels of kPanel units:
//   wp[((j·K + k)·G + g)·kPanel + c] = w[(g·N + u)·K + k],  u = j·kPanel + c   (0 for u >= N).
// Per k, a panel holds the G gate rows of the same kPanel units side by side, so the panel
// form's accumulators of one unit's G gates sit in registers together for the cell's epilogue
// (panel_form.h). wp holds ceil(N / kPanel) · K · G · kPanel values.
template <typename T>
inline void pack_panels(T* wp, const T* w, int64_t N, int64_t K, int64_t G = 1) {
  const int64_t np = (N + kPanel - 1) / kPanel;
  for (int64_t j = 0; j < np; ++j) {
    T* dst = wp + j * K * G * kPanel;
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t c = 0; c < kPanel; ++c) {
        const int64_t n = j * kPanel + c;
        T* d = dst + g * kPanel + c;
        if (n < N) {
          const T* src = w + (g * N + n) * K;
          for (int64_t k = 0; k < K; ++k) d[k * G * kPanel] = src[k];
        } else {
          for (int64_t k = 0; k < K; ++k) d[k * G * kPanel] = T(0);
        }
      }
    }
  }
}

// The same panels (G = 1) from a row-major (K, N) matrix m whose columns are the outputs
// (w[n·K + k] = m[k·N + n]): the backward's dh = dz W_hh reads W_hh this way (K = G·H: dh's
// columns are units, the sum runs over every gate's rows). Each panel row is a contiguous piece
// of a row of m.
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

}  // namespace rnnfused::cpu
