// rnnfused: the CPU side of the sequential recurrence (forward and backward).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

#include "../rnn.h"

namespace rnnfused {

// dtype: kFloat or kDouble (ops.cpp runs half types through float on the CPU).
void rnn_fwd_cpu(const RNNFwdParams& p, c10::ScalarType dtype);
void rnn_bwd_cpu(const RNNBwdParams& p, c10::ScalarType dtype);
// The hoisted input projection of a layer-direction, out = x W_ihᵀ + b_ih + b_hh, through our own
// row kernels (the panel form: W_ih packed once, both biases fused, no BLAS call):
// x (rows, I) and out (rows, H) row-major and contiguous, w_ih (H, I) as nn.RNN stores it, either
// bias may be null. input_proj_cpu_wins says whether it beats the BLAS GEMM (plus the bias add)
// for this shape; RNNFUSED_CPU_PROJ=own|blas forces the answer (tests run both).
bool input_proj_cpu_wins(int64_t rows, int64_t I, int64_t H);
void input_proj_cpu(const void* x, const void* w_ih, const void* b_ih, const void* b_hh, void* out,
                    int64_t rows, int64_t I, int64_t H, c10::ScalarType dtype);
// The instruction set the CPU kernels use for this call ("avx2", "avx512", "default", "vec16"):
// RNNFUSED_CPU_ISA if set (raises if the processor lacks it), else the best the processor has.
const char* cpu_isa_name();
// One fused cell step and its backward (rnn.h: RNNCellParams, RNNCellBwdParams).
void rnn_cell_fwd_cpu(const RNNCellParams& p, c10::ScalarType dtype);
void rnn_cell_bwd_cpu(const RNNCellBwdParams& p, c10::ScalarType dtype);

}  // namespace rnnfused
