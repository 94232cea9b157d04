// rnnfused: the CUDA side of the sequential recurrence (forward and backward).
// Implemented in csrc/cuda/*.cu; called from the host code's backend seam only when built with
// CUDA (or under the emulator). The launchers choose a kernel (stepwise fused / persistent) through
// policy::cuda_use_persistent (csrc/policy.h; RNNFUSED_KERNEL forces one) and launch on `stream`
// (a cudaStream_t; nullptr under the emulator).
#pragma once
#include <c10/core/ScalarType.h>

#include "../rnn.h"

namespace rnnfused {

// dtype: kFloat, kDouble, kHalf or kBFloat16 (the storage type of every tensor in p;
// p.state is in the accumulation type: float, or double for kDouble).
void seq_fwd_cuda(const SeqFwdParams& p, c10::ScalarType dtype, void* stream);
void seq_bwd_cuda(const SeqBwdParams& p, c10::ScalarType dtype, void* stream);
// One fused cell step and the sequential part of its backward (rnn.h: StepFwdParams,
// StepBwdParams), on `stream`.
void step_fwd_cuda(const StepFwdParams& p, c10::ScalarType dtype, void* stream);
void step_bwd_cuda(const StepBwdParams& p, c10::ScalarType dtype, void* stream);

// The kernel the launcher would use for these sizes now ("stepwise" or "persistent"),
// honouring RNNFUSED_KERNEL. For tests and the benchmark.
const char* cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward);

}  // namespace rnnfused
