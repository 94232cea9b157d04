// rnnfused CPU kernels: the epilogue, what a product kernel does with its sums before the only
// store, and the cell's pointwise passes over rows.
//
// A product kernel (dot_form.h, panel_form.h) is instantiated for an epilogue E:
//  - Plain: none. The plain products: the input projection, the backward's dh = dz W_hh (and
//    the broadcast form, which only ever runs plain products, takes no epilogue at all).
//  - a cell definition C from csrc/cells/ (Elman, ...): the forward's products, whose sums are a
//    cell's pre-activations; the epilogue is C's pointwise forward, run through the math policy
//    VecMath (vec.h) on the vectors still in registers.
// The cell's arithmetic lives in its own file (csrc/cells/elman.h); the kernels reach it only
// through unit_forward / unit_backward below.
//
// Units and gates. A cell has G = C::kGates gate blocks (W_hh is (G·H, H), PyTorch's gate order).
// The epilogue works on one vector of units at a time and is handed the G gate sums of those
// units, z[g] for g < G, each a vector whose lanes are the same units (Plain and Elman: G = 1, so
// z[0] is the whole pre-activation and nothing is gathered). How G > 1 plugs in:
//  - unit_forward takes z[0..G) plus the cell's second state where it has one (kHasC: c_{t-1}
//    loaded from, and c_t stored to, the unit's columns), calls C::forward on them, and returns
//    h (the only value stored into y). The static_assert below marks the place.
//  - unit_backward likewise takes what the cell's backward needs (the saved gate activations,
//    c) and writes dz for the G gates of its units (dz rows are G·H wide).
//  - The row passes (cell_fwd_row, cell_bwd_row) then read and write G gate blocks per row at
//    column offsets g·H (the summed pre-activations of a G·H-wide BLAS product); at G = 1 they
//    are the passes below.
#pragma once
#include <type_traits>

#include "../row_table.h"
#include "vec.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

// The plain products' epilogue: none.
struct Plain {
  static constexpr int kGates = 1;
};

template <class E>
constexpr bool kIsPlain = std::is_same_v<E, Plain>;

// What E stores for one vector of units, given the G gate sums z[0..G) of those units.
template <class E, class V>
RNNFUSED_INLINE V unit_forward(const V* z, Cell cell) {
  if constexpr (kIsPlain<E>) {
    return z[0];
  } else {
    static_assert(E::kGates == 1 && !E::kHasC,
                  "a cell with G > 1 gates or a second state: see epilogue.h, Units and gates");
    return E::template forward<VecMath>(z[0], cell.act);
  }
}

// dL/dz for one vector of units, from dL/dh (dh) and the cell's output h.
template <class C, class V>
RNNFUSED_INLINE V unit_backward(const V& dh, const V& h, Cell cell) {
  static_assert(C::kGates == 1 && !C::kHasC,
                "a cell with G > 1 gates or a second state: see epilogue.h, Units and gates");
  return C::template backward<VecMath>(dh, h, cell.act);
}

// y[n] = C's forward of y[n], n < N (CellKernels::fwd_row: the gemm path's epilogue; the dot
// form's pass over the columns it summed).
template <class V, class C>
void cell_fwd_row(typename V::value_type* y, int64_t N, Cell cell) {
  constexpr int64_t L = V::size();
  int64_t n = 0;
  for (; n + L <= N; n += L) {
    const V z = V::loadu(y + n);
    unit_forward<C>(&z, cell).store(y + n);
  }
  if (n < N) {
    const V z = V::loadu(y + n, N - n);
    unit_forward<C>(&z, cell).store(y + n, N - n);
  }
}

// dz[n] = C's backward given dL/dh = dh[n] + g[n] and the output h[n] (CellKernels::dz_row).
// g may be null (no gradient flows into the outputs).
template <class V, class C>
void cell_bwd_row(typename V::value_type* dz, const typename V::value_type* dh,
                  const typename V::value_type* g, const typename V::value_type* h, int64_t N,
                  Cell cell) {
  constexpr int64_t L = V::size();
  auto body = [&](int64_t n, int64_t count) {
    V d = V::loadu(dh + n, count);
    if (g) d = d + V::loadu(g + n, count);
    const V hv = V::loadu(h + n, count);
    unit_backward<C>(d, hv, cell).store(dz + n, count);
  };
  int64_t n = 0;
  for (; n + L <= N; n += L) body(n, L);
  if (n < N) body(n, N - n);
}

// ---------------------------------------------------------------------------------------------
// Cells with gate blocks and a second state (C::kHasC: the LSTM). The row passes of the BLAS
// path (rnn_cpu_lstm.cpp): a vector of units at a time, its G gate values gathered from the
// columns g·H + n of the row and handed to C's pointwise functions together.

// z[g·H + n] (in: pre-activations, out: activations), c, h for n < H (CellKernels::gates_fwd_row).
template <class V, class C>
void gates_fwd_row(typename V::value_type* z, const typename V::value_type* c_prev,
                   typename V::value_type* c, typename V::value_type* h, int64_t H) {
  constexpr int G = C::kGates;
  constexpr int64_t L = V::size();
  auto body = [&](int64_t n, int64_t count) {
    V zg[G], a[G];
    for (int g = 0; g < G; ++g) zg[g] = V::loadu(z + g * H + n, count);
    V cn, hn;
    C::template forward<VecMath>(zg, V::loadu(c_prev + n, count), a, cn, hn);
    for (int g = 0; g < G; ++g) a[g].store(z + g * H + n, count);
    cn.store(c + n, count);
    hn.store(h + n, count);
  };
  int64_t n = 0;
  for (; n + L <= H; n += L) body(n, L);
  if (n < H) body(n, H - n);
}

// dz (G·H) from dL/dh̃ = dh (+ g) and the carried dc (updated in place to dL/dc_prev)
// (CellKernels::gates_bwd_row).
template <class V, class C>
void gates_bwd_row(typename V::value_type* dz, const typename V::value_type* dh,
                   const typename V::value_type* g, typename V::value_type* dc,
                   const typename V::value_type* a, const typename V::value_type* c_prev,
                   const typename V::value_type* c, int64_t H) {
  constexpr int G = C::kGates;
  constexpr int64_t L = V::size();
  auto body = [&](int64_t n, int64_t count) {
    V d = V::loadu(dh + n, count);
    if (g) d = d + V::loadu(g + n, count);
    V av[G], dzv[G];
    for (int k = 0; k < G; ++k) av[k] = V::loadu(a + k * H + n, count);
    V dcv = V::loadu(dc + n, count);
    C::template backward<VecMath>(d, dcv, av, V::loadu(c_prev + n, count), V::loadu(c + n, count), dzv);
    for (int k = 0; k < G; ++k) dzv[k].store(dz + k * H + n, count);
    dcv.store(dc + n, count);
  };
  int64_t n = 0;
  for (; n + L <= H; n += L) body(n, L);
  if (n < H) body(n, H - n);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
