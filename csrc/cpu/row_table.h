// rnnfused CPU: what the row kernels take (DotArgs, PanelArgs) and the tables that hold them,
// one set of tables per instruction set (isa.h) and dtype, chosen at run time (isa_tables<T>(),
// rnn_cpu_isa.cpp). rnn_cpu.cpp and rnn_cpu_cell.cpp run the step loops and call the kernels
// through these tables; the kernels themselves are in kernels/, compiled once per instruction set.
//
// Two kinds of table:
//  - RowKernels<T>: the plain products, cell-free: the input projection (panel form), the
//    backward's dh = dz W_hh (panel or broadcast form), the cell step's grad_x and grad_h
//    (broadcast form).
//  - CellKernels<T, C>, one per cell definition C (csrc/cells/): the forward products whose
//    epilogue is C's pointwise forward (dot and panel forms), and C's pointwise passes over rows
//    (the gemm path's forward epilogue, every path's dz step).
// A step loop is a template over C, instantiated through RNNFUSED_CELL_SWITCH (csrc/cells/
// switch.h) once per call, and looks its tables up once per call: per step it makes one call
// through a function pointer per kernel, as it did before the cell was a parameter.
#pragma once
#include <cstdint>

#include "../cells/switch.h"
#include "isa.h"

namespace rnnfused::cpu {

using rnnfused::Act;   // csrc/cells/cell.h
using rnnfused::Cell;  // the runtime cell: its kind and variant (Elman: the activation)

// The dot form, over weights in nn.RNN's own layout (no per-call preparation): for each of the
// nrows rows r and each column n in [n0, n1),
//   z_r[n] = init_r[n] + bias0[n] + bias1[n] + Σ_k x0_r[k] w0[n·k0 + k] + Σ_k x1_r[k] w1[n·k1 + k]
//   y_r[n] = the cell's forward of z_r[n]
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
  Cell cell;  // the variant the cell's epilogue reads (Elman: tanh or relu)
};

// The panel form, over weights packed once per call (panel_pack.h): panel j holds the kPanel
// output columns (units) n = j·kPanel + c (c < kPanel) of every gate block. For each of the
// nrows rows r and each column n in [n0, n1) (n0 a multiple of kPanel),
//   z_r[n] = init_r[n] + bias[n] + Σ_k x_r[k] w[n·K + k]
//   y_r[n] = z_r[n] (plain products) or the cell's forward of z_r[n] (CellKernels)
// (init and bias may be null; init may alias y). The kernel keeps a block of rows × panels of
// outputs in vector registers for the whole k loop (per k: one broadcast of x_r[k] per row, one
// load per vector of the panels, rows × vectors FMAs): no lane reduction, and the cell's forward
// is applied in registers before the only store. Forward step: y = init = pre_t rows,
// x = h_{t-1} rows, wp = packed W_hh; input projection: x = input rows, wp = packed W_ih,
// bias = b_ih + b_hh; backward: y = dh rows, x = dz_t rows, wp = W_hh packed by columns.
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
  Cell cell;  // read by the cell's epilogue only
};

// The plain products of one instruction set and dtype.
template <typename T>
struct RowKernels {
  Isa isa;
  // The broadcast form: for each of the nrows rows r and n in [n0, n1),
  //   y_r[n] = (accumulate ? y_r[n] : 0) + Σ_k x_r[k] · M[k·ldm + n],  M row-major (K, ldm).
  // Backward: y = dh rows, x = dz_t rows, M = W_hh (dh = dz W_hh needs no transpose either).
  void (*vecmat_rows)(int64_t nrows, T* const* y, const T* const* x, const T* M, int64_t K,
                      int64_t ldm, int64_t n0, int64_t n1, bool accumulate);
  // See PanelArgs: columns [n0, n1) of every row (n0 a multiple of kPanel), no epilogue.
  void (*panel_rows)(const PanelArgs<T>& a, int64_t n0, int64_t n1);
};

// The kernels of one instruction set and dtype that run cell C's pointwise definition. A cell
// with one gate block and no second state (Elman) fills the first four; a cell with gate blocks
// and a second state (the LSTM, C::kHasC) the last two (the others are null until its fused
// product kernels exist: epilogue.h, "Units and gates").
template <typename T, class C>
struct CellKernels {
  Isa isa;
  // See DotArgs: columns [n0, n1) of every row, then C's forward over them.
  void (*dot_rows)(const DotArgs<T>& a, int64_t n0, int64_t n1);
  // See PanelArgs: columns [n0, n1) of every row, C's forward applied in registers.
  void (*panel_rows)(const PanelArgs<T>& a, int64_t n0, int64_t n1);
  // y[n] = C's forward of y[n], n < N: the epilogue when the recurrent product came from a
  // BLAS call (y holds the summed pre-activation).
  void (*fwd_row)(T* y, int64_t N, Cell cell);
  // dz[n] = C's backward, given dL/dh = dh[n] + g[n] and the output h[n]; g may be null.
  void (*dz_row)(T* dz, const T* dh, const T* g, const T* h, int64_t N, Cell cell);
  // One row of H units of a kHasC cell: z (G·H: in the gate pre-activations, out their
  // activations), c_prev (H), c and h (H, written: the new cell state and h̃, before any
  // projection).
  void (*gates_fwd_row)(T* z, const T* c_prev, T* c, T* h, int64_t H);
  // Its backward: dh (H) = dL/dh̃, plus g (H) where not null; dc (H) the carried dL/dc (in),
  // dL/dc_prev (out); a (G·H) the saved activations; c_prev, c (H). Writes dz (G·H).
  void (*gates_bwd_row)(T* dz, const T* dh, const T* g, T* dc, const T* a, const T* c_prev,
                        const T* c, int64_t H);
};

// One CellKernels<T, C> for each cell C of a CellList, as base classes: a plain aggregate (no
// constructor or accessor code that a per-instruction-set source could instantiate under its
// target and the linker then share with the others).
template <typename T, class List>
struct CellTables;
template <typename T, class... Cs>
struct CellTables<T, CellList<Cs...>> : CellKernels<T, Cs>... {};

// Every table of one instruction set and dtype: the plain one and one per cell (AllCells).
template <typename T>
struct IsaTables {
  RowKernels<T> rows;
  CellTables<T, AllCells> cells;

  template <class C>
  const CellKernels<T, C>& cell() const {
    return cells;  // the base of that cell
  }
};

// The tables of each instruction set, defined (and instantiated for float and double) in
// rnn_cpu_default.cpp (Default and Vec16: any processor), rnn_cpu_avx2.cpp (x86-64 with AVX2 +
// FMA) and rnn_cpu_avx512.cpp (x86-64 with AVX-512 F/BW/DQ/VL). The AVX ones raise where
// have_avx2_kernels() / have_avx512_kernels() is false.
template <typename T>
IsaTables<T> tables_default();
template <typename T>
IsaTables<T> tables_vec16();
template <typename T>
IsaTables<T> tables_avx2();
template <typename T>
IsaTables<T> tables_avx512();

// rnn_cpu_isa.cpp: the tables of current_isa(), for float and double.
template <typename T>
const IsaTables<T>& isa_tables();

}  // namespace rnnfused::cpu
