// The CPU row kernels for any processor (baseline instruction set).
#define CPU_CAPABILITY DEFAULT
#include "rnn_cpu_kernel.h"

namespace rnnfused::cpu {
RowKernels<float> row_kernels_default_f32() { return make_row_kernels<float>(); }
RowKernels<double> row_kernels_default_f64() { return make_row_kernels<double>(); }
}  // namespace rnnfused::cpu
