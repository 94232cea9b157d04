// rnnfused: the CUDA side of the sequential recurrence (forward and backward).
// Implemented in csrc/cuda/*.cu; called from csrc/ops.cpp only when built with CUDA.
// The launchers choose a kernel (stepwise fused / persistent) from shape, dtype and device,
// unless RNNFUSED_KERNEL=stepwise|persistent|auto forces one, and launch on `stream` (a
// cudaStream_t; nullptr under the emulator).
#pragma once
#include <c10/core/ScalarType.h>

#include "../rnn.h"

namespace rnnfused {

// dtype: kFloat, kDouble, kHalf or kBFloat16 (the storage type of every tensor in p;
// p.state is in the accumulation type: float, or double for kDouble).
void rnn_fwd_cuda(const RNNFwdParams& p, c10::ScalarType dtype, void* stream);
void rnn_bwd_cuda(const RNNBwdParams& p, c10::ScalarType dtype, void* stream);
// One fused cell step and the sequential part of its backward (rnn.h: RNNCellParams,
// RNNCellBwdParams), on `stream`.
void rnn_cell_fwd_cuda(const RNNCellParams& p, c10::ScalarType dtype, void* stream);
void rnn_cell_bwd_cuda(const RNNCellBwdParams& p, c10::ScalarType dtype, void* stream);

// The kernel the launcher would use for these sizes now ("stepwise" or "persistent"),
// honouring RNNFUSED_KERNEL. For tests and the benchmark.
const char* rnn_cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward);

}  // namespace rnnfused
