// rnnfused: declarations shared by the CUDA dispatch file (rnn_cuda.cu) and the per-dtype
// instantiation files (rnn_f32.cu, rnn_f64.cu, rnn_f16.cu, rnn_bf16.cu). Host-only, light.
#pragma once
#include <cstdint>

#include "../rnn.h"
#include "rnn_cuda.h"

namespace rnnfused {
namespace cuda_detail {

// Implemented once per storage type T (float, double, __half, __nv_bfloat16) in host.cuh and
// instantiated in the rnn_<dtype>.cu files (host.cuh).
// `stream`: a cudaStream_t (nullptr under the emulator).
template <typename T>
void fwd_impl(const SeqFwdParams& p, void* stream);
template <typename T>
void bwd_impl(const SeqBwdParams& p, void* stream);
template <typename T>
void cell_fwd_impl(const StepFwdParams& p, void* stream);
template <typename T>
void cell_bwd_impl(const StepBwdParams& p, void* stream);
// "stepwise" or "persistent"; raises (c10::Error) where RNNFUSED_KERNEL=persistent is forced on
// a size the persistent kernel cannot run, with the reason.
template <typename T>
const char* kernel_name_impl(int64_t B, int64_t H, bool backward);
// rnn_cuda.h's cuda_persistent_plan for storage type T.
template <typename T>
PersistPlanInfo plan_info_impl(int64_t B, int64_t H, bool backward);

}  // namespace cuda_detail
}  // namespace rnnfused
