// rnnfused: CUDA entry points (declared in rnn_cuda.h). Reads RNNFUSED_KERNEL and dispatches on
// the storage dtype to the per-dtype instantiations (rnn_f32.cu, rnn_f64.cu, rnn_f16.cu,
// rnn_bf16.cu). The launch plans are in plan.h, the heuristic and launchers in host.cuh, the
// kernels in device/.
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

#include "launch.h"
#include "portable.cuh"
#include "rnn_cuda.h"

namespace rnnfused {
namespace cuda_detail {

KernelMode kernel_mode() {
  const char* v = std::getenv("RNNFUSED_KERNEL");
  if (v == nullptr || v[0] == '\0' || std::strcmp(v, "auto") == 0) return KernelMode::kAuto;
  if (std::strcmp(v, "stepwise") == 0) return KernelMode::kStepwise;
  if (std::strcmp(v, "persistent") == 0) return KernelMode::kPersistent;
  TORCH_CHECK(false, "rnnfused: RNNFUSED_KERNEL must be one of auto, stepwise, persistent; got '",
              v, "'");
}

}  // namespace cuda_detail

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

void rnn_fwd_cuda(const RNNFwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "rnn_fwd_cuda", fwd_impl, p, stream)
}

void rnn_bwd_cuda(const RNNBwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "rnn_bwd_cuda", bwd_impl, p, stream)
}

void rnn_cell_fwd_cuda(const RNNCellParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "rnn_cell_fwd_cuda", cell_fwd_impl, p, stream)
}

void rnn_cell_bwd_cuda(const RNNCellBwdParams& p, c10::ScalarType dtype, void* stream) {
  RNNFUSED_DTYPE_SWITCH(dtype, "rnn_cell_bwd_cuda", cell_bwd_impl, p, stream)
}

const char* rnn_cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward) {
  RNNFUSED_DTYPE_SWITCH(dtype, "rnn_cuda_kernel_name", kernel_name_impl, B, H, backward)
}

}  // namespace rnnfused
