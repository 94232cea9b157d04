// rnnfused CPU kernels: one instruction set's tables (row_table.h) from the kernel templates and
// that instruction set's register blocking. The only header the per-instruction-set sources
// include (rnn_cpu_default.cpp, rnn_cpu_avx2.cpp, rnn_cpu_avx512.cpp); vec.h says how it is
// compiled there.
#pragma once
#include "broadcast_form.h"
#include "dot_form.h"
#include "epilogue.h"
#include "panel_form.h"

namespace rnnfused::cpu {
inline namespace CPU_CAPABILITY {

// The register blocking of one instruction set. RBdot: rows per dot-form tile (its 4·RBdot
// accumulators plus RBdot row vectors fit the register file); kAcc: accumulators of the
// broadcast form; kRegs: vector registers (16 for AVX2, 32 for AVX-512), for the panel form's
// blocking.
template <int RBdot_, int kAcc_, int kRegs_>
struct Blocking {
  static constexpr int RBdot = RBdot_, kAcc = kAcc_, kRegs = kRegs_;
};

template <class V, class B, class C>
CellKernels<typename V::value_type, C> make_cell_kernels(Isa isa) {
  CellKernels<typename V::value_type, C> k{isa, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  if constexpr (C::kHasC) {  // row passes only, for now (row_table.h)
    k.gates_fwd_row = &gates_fwd_row<V, C>;
    k.gates_bwd_row = &gates_bwd_row<V, C>;
  } else {
    k.dot_rows = &dot_rows<V, B::RBdot, C>;
    k.panel_rows = &panel_rows<V, B::kRegs, C>;
    k.fwd_row = &cell_fwd_row<V, C>;
    k.dz_row = &cell_bwd_row<V, C>;
  }
  return k;
}

template <class V, class B, class... Cs>
IsaTables<typename V::value_type> make_tables_of(Isa isa, CellList<Cs...>) {
  using T = typename V::value_type;
  return IsaTables<T>{RowKernels<T>{isa, &vecmat_rows<V, B::kAcc>, &panel_rows<V, B::kRegs, Plain>},
                      CellTables<T, CellList<Cs...>>{make_cell_kernels<V, B, Cs>(isa)...}};
}

// Every table (the plain one, one per cell of AllCells) of vector type V with blocking B.
template <class V, class B>
IsaTables<typename V::value_type> make_tables(Isa isa) {
  return make_tables_of<V, B>(isa, AllCells{});
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnfused::cpu
