// rnnfused: every cell the engine runs, as a type list (for code that builds something per cell,
// such as the CPU kernels' tables), and the one switch from a runtime CellKind (the params'
// `cell.kind`, csrc/rnn.h) to the cell's definition as a type (flash-attention's *_SWITCH habit):
//
//   RNNFUSED_CELL_SWITCH(p.cell.kind, C, [&] { run<T, C>(p); });
//
// runs the lambda with `using C = <the definition>` (Elman, LSTM) and returns what it returns.
// Host code only (it raises through c10 on a kind it does not know). A new cell adds its header,
// its type to AllCells and its case here (-Wswitch names a kind left out).
#pragma once
#include <c10/util/Exception.h>

#include "cell.h"
#include "elman.h"
#include "lstm.h"

namespace rnnfused {

template <class... Cs>
struct CellList {};

using AllCells = CellList<Elman, LSTM>;

#define RNNFUSED_CELL_SWITCH(KIND, C, ...)                                                   \
  [&] {                                                                                      \
    switch (KIND) {                                                                          \
      case ::rnnfused::CellKind::Elman: {                                                    \
        using C = ::rnnfused::Elman;                                                         \
        return __VA_ARGS__();                                                                \
      }                                                                                      \
      case ::rnnfused::CellKind::LSTM: {                                                     \
        using C = ::rnnfused::LSTM;                                                          \
        return __VA_ARGS__();                                                                \
      }                                                                                      \
    }                                                                                        \
    TORCH_CHECK(false, "rnnfused: unknown cell kind ", static_cast<int>(KIND));              \
  }()

}  // namespace rnnfused
