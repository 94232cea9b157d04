// rnnfused host code: PackedSequence layout (packing.h).
#include "packing.h"

#include <torch/version.h>

#include <algorithm>

namespace rnnfused {

namespace {
// From torch 2.10 (pytorch/pytorch#167507) the caching host allocator never hands out again a
// pinned block that a CUDA-graph capture used: a captured copy from it reads the same batch
// sizes at every replay. Before, the block could be recycled after the capture, and a replay
// would read whatever was written there since: those versions keep the pageable copy, which
// syncs the host and which a capture refuses (an error, never a wrong replay).
constexpr bool kPinnedSurvivesCapture =
    TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10);
}  // namespace

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
  // lengths and index in one host buffer, moved to the data's device in one copy. On a GPU the
  // buffer is pinned and the copy asynchronous on the current stream: no host sync per call, and
  // capturable into a CUDA graph (kPinnedSurvivesCapture).
  const int64_t B = pk.B, N = pk.N;
  const bool pinned = kPinnedSurvivesCapture && data.is_cuda();
  at::Tensor host = at::empty({B + N}, at::TensorOptions().dtype(at::kLong).pinned_memory(pinned));
  int64_t* len = host.data_ptr<int64_t>();
  int64_t* idx = len + B;
  std::fill(len, len + B, int64_t(0));
  int64_t n = 0;
  for (int64_t t = 0; t < pk.T; ++t) {
    for (int64_t b = 0; b < bs[t]; ++b) {
      idx[n++] = t * B + b;
      len[b] += 1;
    }
  }
  const at::Tensor dev = host.to(data.device(), /*non_blocking=*/true);
  pk.lengths = dev.narrow(0, 0, B);
  pk.index = dev.narrow(0, B, N);
  return pk;
}

}  // namespace rnnfused
