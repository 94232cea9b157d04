// rnnfused: the CUDA side of the sequential recurrence (forward and backward).
// Implemented in csrc/cuda/*.cu; called from the host code's backend seam only when built with
// CUDA (or under the emulator). The launchers choose a kernel (stepwise fused / persistent) through
// policy::cuda_use_persistent (csrc/policy.h; RNNFUSED_KERNEL forces one) and launch on `stream`
// (a cudaStream_t; nullptr under the emulator).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

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

// The persistent kernel's plan for these sizes on the current device, and the co-residency it
// rests on: CTAs per SM as the driver's occupancy calculator gives them (what the plan used) and
// as CUDA's rule written out gives them for the same kernel attributes (plan.h's blocks_per_sm,
// the emulator's), for the first GPU run to compare (bench/gpu_check.sh).
struct PersistPlanInfo {
  bool ok = false;
  std::string why;          // when !ok
  int G = 0, NBg = 0, threads = 0, regs = 0, sm_count = 0;
  int64_t smem = 0;         // dynamic shared memory per CTA
  int driver_per_sm = 0;    // co-resident CTAs per SM: the occupancy calculator
  int rule_per_sm = 0;      //                          CUDA's rule, written out
};
PersistPlanInfo cuda_persistent_plan(int64_t B, int64_t H, c10::ScalarType dtype, bool backward);

// The architectures this build has code for (archs.h, from the build's TORCH_CUDA_ARCH_LIST):
// XY of each sm_XY (machine code) and of each compute_XY (PTX).
void cuda_built_archs(std::vector<int>* sass, std::vector<int>* ptx);

}  // namespace rnnfused
