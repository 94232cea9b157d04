// rnnfused CPU kernels: the panel form (row_table.h, PanelArgs; RowKernels::panel_rows plain,
// CellKernels::panel_rows with the cell's forward). Per ISA (vec.h says how these headers are
// compiled).
//
// Over weights packed once per call into panels of kPanel units (panel_pack.h): a block of RB
// rows × PB panels keeps RB·PB·G·NP accumulators in registers for the whole k loop (NP vectors
// per kPanel units, G gate blocks; AVX2, float, G = 1: 6 rows × 1 panel = 12 accumulators, an
// SGEMM micro-kernel's 6×16), then the epilogue E (epilogue.h) turns each vector of units'
// accumulators into what is stored, before the only store.
//
// Units and gates. Accumulator (p, i, g) of a row, the sums of gate g for the L units of vector
// i of panel p, is acc[row][(p·NP + i)·G + g]: the G gates of the same units are adjacent, and
// unit_forward receives them as z[0..G) with no G·H-wide intermediate written and read back. Per
// k, panel p's G·kPanel packed values (gate-major, panel_pack.h) are loaded as G·NP vectors. Plain
// products and Elman have G = 1: this is the SGEMM-like kernel with the cell's forward applied
// in registers. G > 1 (the LSTM):
//  - init and bias: gate g's values start g·H columns further (PanelArgs::H) in the G·H-wide
//    pre-activation row and bias; the forward passes its pre rows as init and the h̃ rows as y.
//  - the epilogue: unit_forward's G > 1 form (epilogue.h) with c_{t-1} of the same units
//    (PanelArgs::c_prev), storing c_t (c_out), the G gate activations (act, at g·H + col: what
//    the backward reads) and h̃ (y). No G·H-wide sums are written and read back.
//  - the register budget: panel_group and panel_rows' RBmax count G·NP vectors per panel
//    (AVX2 float: 1 row × 1 panel, 8 accumulators; AVX-512 float: up to 6 rows × 1 panel).
#pragma once
#include "epilogue.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

template <class V>
constexpr int panel_vectors() {
  static_assert(kPanel % V::size() == 0, "a panel is a whole number of vectors");
  return static_cast<int>(kPanel / V::size());
}

// Panels per block for RB rows on a register file of kRegs vectors, with G gate blocks: per k,
// the block holds its RB·PB·G·NP accumulators, its PB·G·NP panel vectors and one broadcast in
// registers, so RB·PB·G·NP + PB·G·NP + 1 <= kRegs (one row: the panel vectors are FMA memory
// operands instead). At most 6 panels.
template <class V, int kRegs, int RB, int G>
constexpr int panel_group() {
  const int np = G * panel_vectors<V>();
  const int pb = RB == 1 ? (kRegs - 2) / np : (kRegs - 1) / ((RB + 1) * np);
  return pb < 1 ? 1 : (pb > 6 ? 6 : pb);
}

// Rows r0..r0+RB-1, panels j0..j0+PB-1; columns at or past n1 are neither loaded nor stored.
template <class V, int RB, int PB, class E>
RNNFUSED_INLINE void panel_block(const PanelArgs<typename V::value_type>& a, int64_t r0,
                                 int64_t j0, int64_t n1) {
  using T = typename V::value_type;
  constexpr int64_t L = V::size();
  constexpr int G = E::kGates;
  constexpr int NP = panel_vectors<V>();
  constexpr int NU = PB * NP;  // vectors of units
  constexpr int NV = NU * G;   // accumulators per row
  const int64_t col0 = j0 * kPanel;
  V acc[RB][NV];
  for (int r = 0; r < RB; ++r) {
    const T* in = a.init ? a.init[r0 + r] : nullptr;
    for (int u = 0; u < NU; ++u) {
      const int64_t col = col0 + u * L;
      const int64_t cnt = std::min<int64_t>(L, n1 - col);
      for (int g = 0; g < G; ++g) {
        const int64_t c = g * a.H + col;  // gate g's column (G = 1: col)
        V s(T(0));
        if (cnt >= L) {
          if (in) s = V::loadu(in + c);
          if (a.bias) s = s + V::loadu(a.bias + c);
        } else if (cnt > 0) {
          if (in) s = V::loadu(in + c, cnt);
          if (a.bias) s = s + V::loadu(a.bias + c, cnt);
        }
        acc[r][u * G + g] = s;
      }
    }
  }
  const int64_t K = a.K;
  constexpr int64_t kStep = G * kPanel;  // packed values per k of one panel
  const T* w = a.wp + j0 * K * kStep;
  const T* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = a.x[r0 + r];
  // Vector v = (p·NP + i)·G + g of the block sits at p·K·kStep + g·kPanel + i·L past the k row.
  auto wofs = [&](int p, int i, int g) { return p * K * kStep + g * kPanel + i * L; };
  // In this order (panel vectors, then per row: its broadcast and its FMAs) so that only one
  // broadcast is live at a time: GCC keeps the source order on x86, and hoisting every row's
  // broadcast first spills accumulators (15 of 16 registers for 6 rows × 2 vectors).
  for (int64_t k = 0; k < K; ++k) {
    const T* wk = w + k * kStep;
    if constexpr (RB == 1) {
      const V xb(xr[0][k]);
      for (int p = 0; p < PB; ++p)
        for (int i = 0; i < NP; ++i)
          for (int g = 0; g < G; ++g) {
            V& s = acc[0][(p * NP + i) * G + g];
            s = vfmadd(xb, V::loadu(wk + wofs(p, i, g)), s);
          }
    } else {
      V wv[NV];
      for (int p = 0; p < PB; ++p)
        for (int i = 0; i < NP; ++i)
          for (int g = 0; g < G; ++g) wv[(p * NP + i) * G + g] = V::loadu(wk + wofs(p, i, g));
      for (int r = 0; r < RB; ++r) {
        const V xb(xr[r][k]);
        for (int v = 0; v < NV; ++v) acc[r][v] = vfmadd(xb, wv[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    T* y = a.y[r0 + r];
    if constexpr (G == 1) {
      for (int u = 0; u < NU; ++u) {
        const int64_t col = col0 + u * L;
        const int64_t cnt = std::min<int64_t>(L, n1 - col);
        if (cnt >= L) unit_forward<E>(&acc[r][u * G], a.cell).store(y + col);
        else if (cnt > 0) unit_forward<E>(&acc[r][u * G], a.cell).store(y + col, cnt);
      }
    } else {
      const T* cp = a.c_prev[r0 + r];
      T* co = a.c_out[r0 + r];
      T* act = a.act[r0 + r];
      for (int u = 0; u < NU; ++u) {
        const int64_t col = col0 + u * L;
        const int64_t cnt = std::min<int64_t>(L, n1 - col);
        if (cnt <= 0) continue;
        V av[G], cn;
        const V h = unit_forward<E>(&acc[r][u * G], V::loadu(cp + col, cnt), av, cn);
        for (int g = 0; g < G; ++g) av[g].store(act + g * a.H + col, cnt);
        cn.store(co + col, cnt);
        h.store(y + col, cnt);
      }
    }
  }
}

// The panels left after the full groups of PB: one group of P < PB panels, P = the remainder.
template <class V, int RB, int P, class E>
RNNFUSED_INLINE void panel_left(const PanelArgs<typename V::value_type>& a, int64_t r0, int64_t j,
                                int64_t jb, int64_t n1) {
  if constexpr (P >= 1) {
    if (jb - j >= P) panel_block<V, RB, P, E>(a, r0, j, n1);
    else panel_left<V, RB, P - 1, E>(a, r0, j, jb, n1);
  }
}

// Rows r0..r0+RB-1 over panels [ja, jb).
template <class V, int kRegs, int RB, class E>
void panel_rowblock(const PanelArgs<typename V::value_type>& a, int64_t r0, int64_t ja,
                    int64_t jb, int64_t n1) {
  constexpr int PB = panel_group<V, kRegs, RB, E::kGates>();
  int64_t j = ja;
  for (; j + PB <= jb; j += PB) panel_block<V, RB, PB, E>(a, r0, j, n1);
  if (j < jb) panel_left<V, RB, PB - 1, E>(a, r0, j, jb, n1);
}

// The rows left after the full blocks of RBmax: one block of `left` (< RBmax) rows.
template <class V, int kRegs, int RB, class E>
void panel_rows_left(const PanelArgs<typename V::value_type>& a, int64_t left, int64_t r0,
                     int64_t ja, int64_t jb, int64_t n1) {
  if constexpr (RB >= 1) {
    if (left == RB) panel_rowblock<V, kRegs, RB, E>(a, r0, ja, jb, n1);
    else panel_rows_left<V, kRegs, RB - 1, E>(a, left, r0, ja, jb, n1);
  }
}

// Rows in blocks of RBmax (the most rows whose block of one panel fits the registers, at most
// 8); panels in tiles of about 16 KiB that stay in L1 while every row block passes (one tile
// when all rows make one block).
template <class V, int kRegs, class E>
void panel_rows(const PanelArgs<typename V::value_type>& a, int64_t n0, int64_t n1) {
  using T = typename V::value_type;
  constexpr int G = E::kGates;
  constexpr int NPG = G * panel_vectors<V>();
  constexpr int RBq = (kRegs - 1 - NPG) / NPG;
  constexpr int RBmax = RBq < 1 ? 1 : (RBq > 8 ? 8 : RBq);
  if (a.nrows <= 0 || n1 <= n0) return;
  const int64_t ja = n0 / kPanel, jb = (n1 + kPanel - 1) / kPanel;
  int64_t tile = jb - ja;
  if (a.nrows > RBmax) {
    constexpr int PB = panel_group<V, kRegs, RBmax, G>();
    const int64_t fit =
        (int64_t(16) << 10) / std::max<int64_t>(1, a.K * G * kPanel * int64_t(sizeof(T)));
    tile = std::max<int64_t>(PB, fit / PB * PB);
  }
  for (int64_t jt = ja; jt < jb; jt += tile) {
    const int64_t je = std::min(jb, jt + tile);
    int64_t r = 0;
    for (; r + RBmax <= a.nrows; r += RBmax) panel_rowblock<V, kRegs, RBmax, E>(a, r, jt, je, n1);
    if (r < a.nrows) panel_rows_left<V, kRegs, RBmax - 1, E>(a, a.nrows - r, r, jt, je, n1);
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
