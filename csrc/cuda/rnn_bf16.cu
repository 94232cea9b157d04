// rnnfused: the CUDA recurrence instantiated for storage type __nv_bfloat16 (see host.cuh). One file per
// dtype so that the kernels compile in parallel.
#include "host.cuh"

namespace rnnfused {
namespace cuda_detail {
RNNFUSED_INSTANTIATE(__nv_bfloat16)
}  // namespace cuda_detail
}  // namespace rnnfused
