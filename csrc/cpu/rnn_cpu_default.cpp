// The CPU row kernels for any processor (baseline instruction set), and Vec16: the AVX-512
// register blocking (16 float / 8 double lanes, 4-row dot tiles, 16 broadcast accumulators) in
// portable C++, selected only by RNNFUSED_CPU_ISA=vec16 so tests run that blocking and its tail
// logic on processors without AVX-512.
#define CPU_CAPABILITY DEFAULT
#include "rnn_cpu_kernel.h"

namespace rnnfused::cpu {
RowKernels<float> row_kernels_default_f32() {
  return make_row_kernels<Vectorized<float>, 2, 8, 16>(Isa::Default);
}
RowKernels<double> row_kernels_default_f64() {
  return make_row_kernels<Vectorized<double>, 2, 8, 16>(Isa::Default);
}
RowKernels<float> row_kernels_vec16_f32() {
  return make_row_kernels<GenVec<float, 16>, 4, 16, 32>(Isa::Vec16);
}
RowKernels<double> row_kernels_vec16_f64() {
  return make_row_kernels<GenVec<double, 8>, 4, 16, 32>(Isa::Vec16);
}
}  // namespace rnnfused::cpu
