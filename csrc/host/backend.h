// rnnfused host code: the backend seam. Which kernels a tensor's recurrence runs in (the CPU
// kernels, or the CUDA kernels on a GPU or under the emulator), and running them: the CUDA stream,
// the device guard, the CPU path the policy picks. Every build-variant conditional of the host
// code (RNNFUSED_WITH_CUDA, RNNFUSED_EMULATE) is here and in backend.cpp, nowhere else.
//
// Build variants:
//  - the extension rnnfused._C: the CPU kernels, and the CUDA kernels where built with CUDA
//    (RNNFUSED_WITH_CUDA);
//  - the test-only emulation build (RNNFUSED_EMULATE, docs/emulator.md): CPU tensors take the
//    CUDA path, whose kernels run under the SIMT emulator on the host.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#ifdef RNNFUSED_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

#include "../rnn.h"

namespace rnnfused {
namespace backend {

// Whether this build has the CUDA kernels for CUDA tensors (rnnfused.built_with_cuda()).
#ifdef RNNFUSED_WITH_CUDA
inline constexpr bool kBuiltWithCuda = true;
#else
inline constexpr bool kBuiltWithCuda = false;
#endif

// Whether this build has the CUDA code path at all: built with CUDA, or the emulation build.
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
inline constexpr bool kHasCudaPath = true;
#else
inline constexpr bool kHasCudaPath = false;
#endif

// Whether a tensor's recurrence runs in the CUDA kernels: CUDA tensors, or, in the emulation
// build, every tensor (CPU tensors, whose "device" is the emulator). The one place that decides.
inline bool on_cuda_path(const at::Tensor& t) {
#ifdef RNNFUSED_EMULATE
  return t.is_cpu();
#else
  return t.is_cuda();
#endif
}

// Makes `t`'s device current for the scope (CUDA builds; nothing otherwise).
struct DeviceGuard {
#ifdef RNNFUSED_WITH_CUDA
  c10::cuda::OptionalCUDAGuard guard;
  explicit DeviceGuard(const at::Tensor& t) {
    if (t.is_cuda()) guard.set_device(t.device());
  }
#else
  explicit DeviceGuard(const at::Tensor&) {}
#endif
};

// Whether `t`'s backend has kernels for `cell`: the CPU runs every cell; the CUDA kernels (on a
// GPU or under the emulator) run the Elman cell only, so far. Where they do not, the host code
// runs the cell's forward as differentiable ATen ops instead (composite.h), and autograd
// differentiates those.
bool has_kernels(const at::Tensor& t, const Cell& cell);

// The recurrence of one layer-direction (rnn.h) on `like`'s backend, in `like`'s dtype: the CUDA
// kernels on the current stream, or the CPU kernels on the path policy::cpu_seq_path picks.
void seq_fwd(const SeqFwdParams& p, const at::Tensor& like);
void seq_bwd(const SeqBwdParams& p, const at::Tensor& like);

// Where the cell steps of one call run, chosen once per call: the CUDA kernels (on the current
// stream), or on the CPU the fused cell kernel or the BLAS (policy::cpu_step_fused).
struct StepTarget {
  c10::ScalarType dtype = at::kFloat;
  bool cuda = false;
  bool fused = true;        // CPU: the fused cell kernel (else BLAS)
  void* stream = nullptr;   // CUDA: the stream (nullptr under the emulator)
};
// For steps of B rows, input size I and hidden size H, in `like`'s dtype on `like`'s backend.
StepTarget step_target(const at::Tensor& like, int64_t B, int64_t I, int64_t H, bool backward);
// One cell step and its backward's sequential part (rnn.h: StepFwdParams, StepBwdParams).
void step_fwd(const StepFwdParams& p, const StepTarget& on);
void step_bwd(const StepBwdParams& p, const StepTarget& on);

// The CUDA kernel the launcher picks for these sizes now ("stepwise" or "persistent"). Only
// where kHasCudaPath; raises otherwise.
const char* cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward);

// The persistent kernel's plan for these sizes on the current device and the co-residency it
// rests on (rnn_cuda.h: PersistPlanInfo), as (name, value) pairs; `why` receives the reason when
// there is no plan. Only where kHasCudaPath; raises otherwise.
std::vector<std::pair<std::string, int64_t>> cuda_persistent_plan(int64_t B, int64_t H, c10::ScalarType dtype,
                                                                  bool backward, std::string* why);

// The architectures the CUDA code was compiled for: XY of each sm_XY and of each compute_XY
// (PTX). Only where kHasCudaPath; raises otherwise.
void cuda_built_archs(std::vector<int>* sass, std::vector<int>* ptx);

}  // namespace backend
}  // namespace rnnfused
