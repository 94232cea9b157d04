// rnnfused: the CUDA recurrence instantiated for storage type float (see host.cuh). One file per
// dtype so that the kernels compile in parallel.
#include "host.cuh"

namespace rnnfused {
namespace cuda_detail {
RNNFUSED_INSTANTIATE(float)
}  // namespace cuda_detail
}  // namespace rnnfused
