// rnnfused: the CUDA recurrence instantiated for storage type double (see host.cuh). One file per
// dtype so that the kernels compile in parallel.
#include "host.cuh"

namespace rnnfused {
namespace cuda_detail {
RNNFUSED_INSTANTIATE(double)
}  // namespace cuda_detail
}  // namespace rnnfused
