// rnnfused: CUDA entry points (declared in rnn_cuda.h). Dispatches on the storage dtype to the per-dtype instantiations (rnn_f32.cu, rnn_f64.cu, rnn_f16.cu,
// rnn_bf16.cu). The launch plans are in plan.h, the heuristic and launchers in host.cuh, the
// kernels in device/.
#include <c10/util/Exception.h>

#include "archs.h"
#include "launch.h"
#include "portable.cuh"
#include "rnn_cuda.h"

namespace rnnfused {
using namespace cuda_detail;

// The four storage types, one switch for every entry point.
#define RNNFUSED_DTYPE_SWITCH(dtype, name, IMPL, ...)                                      \
  switch (dtype) {                                                                        \
    case c10::ScalarType::Float: return IMPL<float>(__VA_ARGS__);                         \
    case c10::ScalarType::Double: return IMPL<double>(__VA_ARGS__);                       \
    case c10::ScalarType::Half: return IMPL<__half>(__VA_ARGS__);                         \
    case c10::ScalarType::BFloat16: return IMPL<__nv_bfloat16>(__VA_ARGS__);              \
    default: TORCH_CHECK(false, "rnnfused: " name ": unsupported dtype ", dtype);         \
  }

void seq_fwd_cuda(const SeqFwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "seq_fwd_cuda", fwd_impl, p, stream)
}

void seq_bwd_cuda(const SeqBwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "seq_bwd_cuda", bwd_impl, p, stream)
}

void step_fwd_cuda(const StepFwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "step_fwd_cuda", cell_fwd_impl, p, stream)
}

void step_bwd_cuda(const StepBwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "step_bwd_cuda", cell_bwd_impl, p, stream)
}

const char* cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward) {
  RNNFUSED_DTYPE_SWITCH(dtype, "cuda_kernel_name", kernel_name_impl, B, H, backward)
}

void cuda_built_archs(std::vector<int>* sass, std::vector<int>* ptx) {
  const BuiltArchs b = built_archs();
  *sass = b.sass;
  *ptx = b.ptx;
}

PersistPlanInfo cuda_persistent_plan(int64_t B, int64_t H, c10::ScalarType dtype, bool backward) {
  RNNFUSED_DTYPE_SWITCH(dtype, "cuda_persistent_plan", plan_info_impl, B, H, backward)
}

}  // namespace rnnfused
