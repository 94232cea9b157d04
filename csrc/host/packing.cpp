// rnnfused host code: PackedSequence layout (packing.h).
#include "packing.h"

namespace rnnfused {

Packing make_packing(const at::Tensor& batch_sizes, const at::Tensor& data, const at::Tensor& hx) {
  TORCH_CHECK(batch_sizes.dim() == 1 && batch_sizes.scalar_type() == at::kLong &&
                  batch_sizes.device().is_cpu(),
              "rnnfused: batch_sizes must be a 1-D int64 CPU tensor (a PackedSequence's), got ",
              batch_sizes.dim(), "-D ", batch_sizes.scalar_type(), " on ", batch_sizes.device());
  const at::Tensor bs_t = batch_sizes.contiguous();
  const int64_t* bs = bs_t.data_ptr<int64_t>();
  Packing pk;
  pk.T = bs_t.numel();
  pk.B = pk.T > 0 ? bs[0] : 0;
  for (int64_t t = 0; t < pk.T; ++t) {
    TORCH_CHECK(bs[t] > 0 && bs[t] <= pk.B, "rnnfused: batch_sizes must be positive and "
                "non-increasing, got ", batch_sizes);
    if (t > 0) TORCH_CHECK(bs[t] <= bs[t - 1], "rnnfused: batch_sizes must be non-increasing, got ",
                           batch_sizes);
    pk.N += bs[t];
  }
  TORCH_CHECK(pk.N == data.size(0), "rnnfused: packed input has ", data.size(0),
              " rows but batch_sizes sum to ", pk.N);
  TORCH_CHECK(hx.size(1) == pk.B, "rnnfused: hx has batch size ", hx.size(1),
              " but the packed input's is ", pk.B);
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  at::Tensor lengths = at::zeros({pk.B}, cpu_long);
  at::Tensor index = at::empty({pk.N}, cpu_long);
  int64_t* len = lengths.data_ptr<int64_t>();
  int64_t* idx = index.data_ptr<int64_t>();
  int64_t n = 0;
  for (int64_t t = 0; t < pk.T; ++t) {
    for (int64_t b = 0; b < bs[t]; ++b) {
      idx[n++] = t * pk.B + b;
      len[b] += 1;
    }
  }
  pk.lengths = lengths.to(data.device());
  pk.index = index.to(data.device());
  return pk;
}

}  // namespace rnnfused
