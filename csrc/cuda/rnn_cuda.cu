// rnnfused: CUDA entry points (declared in rnn_cuda.h). Reads RNNFUSED_KERNEL and dispatches on
// the storage dtype to the per-dtype instantiations (rnn_f32.cu, rnn_f64.cu, rnn_f16.cu,
// rnn_bf16.cu). The kernels, the launch plans and the heuristic live in kernels.cuh.
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "launch.h"
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

void rnn_fwd_cuda(const RNNFwdParams& p, c10::ScalarType dtype, void* stream_) {
  const auto stream = static_cast<cudaStream_t>(stream_);
  switch (dtype) {
    case c10::ScalarType::Float: return fwd_impl<float>(p, stream);
    case c10::ScalarType::Double: return fwd_impl<double>(p, stream);
    case c10::ScalarType::Half: return fwd_impl<__half>(p, stream);
    case c10::ScalarType::BFloat16: return fwd_impl<__nv_bfloat16>(p, stream);
    default: TORCH_CHECK(false, "rnnfused: rnn_fwd_cuda: unsupported dtype ", dtype);
  }
}

void rnn_bwd_cuda(const RNNBwdParams& p, c10::ScalarType dtype, void* stream_) {
  const auto stream = static_cast<cudaStream_t>(stream_);
  switch (dtype) {
    case c10::ScalarType::Float: return bwd_impl<float>(p, stream);
    case c10::ScalarType::Double: return bwd_impl<double>(p, stream);
    case c10::ScalarType::Half: return bwd_impl<__half>(p, stream);
    case c10::ScalarType::BFloat16: return bwd_impl<__nv_bfloat16>(p, stream);
    default: TORCH_CHECK(false, "rnnfused: rnn_bwd_cuda: unsupported dtype ", dtype);
  }
}

const char* rnn_cuda_kernel_name(int64_t B, int64_t H, c10::ScalarType dtype, bool backward) {
  switch (dtype) {
    case c10::ScalarType::Float: return kernel_name_impl<float>(B, H, backward);
    case c10::ScalarType::Double: return kernel_name_impl<double>(B, H, backward);
    case c10::ScalarType::Half: return kernel_name_impl<__half>(B, H, backward);
    case c10::ScalarType::BFloat16: return kernel_name_impl<__nv_bfloat16>(B, H, backward);
    default: TORCH_CHECK(false, "rnnfused: rnn_cuda_kernel_name: unsupported dtype ", dtype);
  }
}

}  // namespace rnnfused
