// rnnfused: the CUDA recurrence instantiated for storage type double (see kernels.cuh). One file per
// dtype so that the kernels compile in parallel.
#include "kernels.cuh"

namespace rnnfused {
namespace cuda_detail {
RNNFUSED_INSTANTIATE(double)
}  // namespace cuda_detail
}  // namespace rnnfused
