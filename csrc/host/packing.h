// rnnfused host code: a PackedSequence's layout, and moving rows between the packed (N, F) form
// and the padded (T, B, F) grid the kernels run on (with per-item lengths).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace rnnfused {

// Per-item lengths, and where each packed row lives in the padded (T, B) grid (batch_sizes
// non-increasing: the items active at step t are the first batch_sizes[t]).
struct Packing {
  int64_t T = 0, B = 0, N = 0;
  at::Tensor lengths;  // (B,) int64 on the data's device
  at::Tensor index;    // (N,) int64 on the data's device: packed row n -> t·B + b
  // (Both views of one buffer, copied to the device once per call without a host sync.)

  // (N, F) -> (T, B, F), zeros where inactive. Differentiable (index_copy_ into fresh zeros).
  at::Tensor pad(const at::Tensor& packed) const {
    const int64_t F = packed.size(1);
    return at::zeros({T * B, F}, packed.options()).index_copy_(0, index, packed).view({T, B, F});
  }
  // (T, B, F) -> (N, F). Differentiable (index_select).
  at::Tensor pack(const at::Tensor& padded) const {
    return padded.reshape({T * B, padded.size(2)}).index_select(0, index);
  }
};

// The layout of packed `data` (N, I) with a PackedSequence's batch_sizes and the state hx
// (·, B, H); validates them (the messages name batch_sizes, the packed input and hx).
Packing make_packing(const at::Tensor& batch_sizes, const at::Tensor& data, const at::Tensor& hx);

}  // namespace rnnfused
