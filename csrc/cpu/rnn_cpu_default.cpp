// The CPU row kernels for any processor (baseline instruction set), and Vec16: the AVX-512
// register blocking (16 float / 8 double lanes, 4-row dot tiles, 16 broadcast accumulators) in
// portable C++, selected only by RNNFUSED_CPU_ISA=vec16 so tests run that blocking and its tail
// logic on processors without AVX-512. Their tables: row_table.h.
#define CPU_CAPABILITY DEFAULT
#include "kernels/make_tables.h"

namespace rnnfused::cpu {

template <typename T>
IsaTables<T> tables_default() {
  return make_tables<Vectorized<T>, Blocking<2, 8, 16>>(Isa::Default);
}
template IsaTables<float> tables_default<float>();
template IsaTables<double> tables_default<double>();

// 64 bytes of lanes: 16 float, 8 double.
template <typename T>
IsaTables<T> tables_vec16() {
  return make_tables<GenVec<T, 64 / sizeof(T)>, Blocking<4, 16, 32>>(Isa::Vec16);
}
template IsaTables<float> tables_vec16<float>();
template IsaTables<double> tables_vec16<double>();

}  // namespace rnnfused::cpu
