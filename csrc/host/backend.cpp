// rnnfused host code: the backend seam (backend.h). The only host source that calls the CUDA
// side, and only where this build has it.
#include "backend.h"

#include <c10/util/Exception.h>

#include "../cells/switch.h"
#include "../cpu/rnn_cpu.h"
#include "../policy.h"

#ifdef RNNFUSED_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif
#if defined(RNNFUSED_WITH_CUDA) || defined(RNNFUSED_EMULATE)
#include "../cuda/rnn_cuda.h"
#define RNNFUSED_HAS_CUDA_PATH 1
#else
#define RNNFUSED_HAS_CUDA_PATH 0
#endif

namespace rnnfused {
namespace backend {
namespace {

#if RNNFUSED_HAS_CUDA_PATH
// The CUDA stream the kernels are enqueued on (the current one); none under the emulator.
void* cuda_stream(const at::Tensor& t) {
#ifdef RNNFUSED_WITH_CUDA
  if (t.is_cuda()) return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
#endif
  (void)t;
  return nullptr;
}
#endif

// The CPU recurrence's path for this call (timed once per shape where it is not clear).
policy::CpuSeqPath cpu_seq_path(const SeqCommon& p, c10::ScalarType dtype, bool backward) {
  if (p.T == 0 || p.B == 0) return {};
  return policy::cpu_seq_path(p.cell, p.B, p.H, dtype, backward, cpu_isa_id());
}

}  // namespace

bool has_kernels(const at::Tensor& t, const Cell& cell) {
  if (!on_cuda_path(t)) return true;
  // The CUDA kernels' own rule (csrc/cuda/host.cuh, kCudaRunsCell).
  return RNNFUSED_CELL_SWITCH(cell.kind, C, [] { return C::kGates == 1 && !C::kHasC; });
}

void seq_fwd(const SeqFwdParams& p, const at::Tensor& like) {
#if RNNFUSED_HAS_CUDA_PATH
  if (on_cuda_path(like)) {
    seq_fwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  seq_fwd_cpu(p, like.scalar_type(), cpu_seq_path(p, like.scalar_type(), /*backward=*/false));
}

void seq_bwd(const SeqBwdParams& p, const at::Tensor& like) {
#if RNNFUSED_HAS_CUDA_PATH
  if (on_cuda_path(like)) {
    seq_bwd_cuda(p, like.scalar_type(), cuda_stream(like));
    return;
  }
#endif
  seq_bwd_cpu(p, like.scalar_type(), cpu_seq_path(p, like.scalar_type(), /*backward=*/true));
}

StepTarget step_target(const at::Tensor& like, int64_t B, int64_t I, int64_t H, bool backward) {
  StepTarget on;
  on.dtype = like.scalar_type();
#if RNNFUSED_HAS_CUDA_PATH
  if (on_cuda_path(like)) {
    on.cuda = true;
    on.stream = cuda_stream(like);
    return on;
  }
#endif
  on.fused = policy::cpu_step_fused(B, I, H, backward);
  return on;
}

void step_fwd(const StepFwdParams& p, const StepTarget& on) {
#if RNNFUSED_HAS_CUDA_PATH
  if (on.cuda) {
    step_fwd_cuda(p, on.dtype, on.stream);
    return;
  }
#endif
  step_fwd_cpu(p, on.dtype, on.fused);
}

void step_bwd(const StepBwdParams& p, const StepTarget& on) {
#if RNNFUSED_HAS_CUDA_PATH
  if (on.cuda) {
    step_bwd_cuda(p, on.dtype, on.stream);
    return;
  }
#endif
  step_bwd_cpu(p, on.dtype, on.fused);
}

const char* cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward) {
#if RNNFUSED_HAS_CUDA_PATH
  return rnnfused::cuda_kernel_name(B, H, dtype, backward);
#else
  (void)B, (void)H, (void)dtype, (void)backward;
  TORCH_CHECK(false, "rnnfused: this build has no CUDA kernels");
#endif
}

void cuda_built_archs(std::vector<int>* sass, std::vector<int>* ptx) {
#if RNNFUSED_HAS_CUDA_PATH
  rnnfused::cuda_built_archs(sass, ptx);
#else
  (void)sass, (void)ptx;
  TORCH_CHECK(false, "rnnfused: this build has no CUDA kernels");
#endif
}

std::vector<std::pair<std::string, int64_t>> cuda_persistent_plan(int64_t B, int64_t H, c10::ScalarType dtype,
                                                                  bool backward, std::string* why) {
#if RNNFUSED_HAS_CUDA_PATH
  const PersistPlanInfo i = rnnfused::cuda_persistent_plan(B, H, dtype, backward);
  *why = i.why;
  return {{"ok", i.ok},           {"G", i.G},
          {"NBg", i.NBg},         {"ctas", int64_t(i.G) * i.NBg},
          {"threads", i.threads}, {"regs", i.regs},
          {"smem", i.smem},       {"sm_count", i.sm_count},
          {"driver_per_sm", i.driver_per_sm}, {"rule_per_sm", i.rule_per_sm}};
#else
  (void)B, (void)H, (void)dtype, (void)backward, (void)why;
  TORCH_CHECK(false, "rnnfused: this build has no CUDA kernels");
#endif
}

}  // namespace backend
}  // namespace rnnfused
