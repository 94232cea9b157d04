// rnnfused host code: the differentiable recomputation for double backward (composite.h).
#include "composite.h"

#include <ATen/ATen.h>

#include <vector>

#include "packing.h"

namespace rnnfused {
namespace {

// The cell's pointwise forward on the summed pre-activation z (csrc/cells/elman.h), in ATen ops.
at::Tensor cell_forward(const Cell& cell, const at::Tensor& z) {
  return cell.act == Act::Relu ? at::relu(z) : at::tanh(z);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> composite_layer(const at::Tensor& x, const at::Tensor& h0,
                                                   const LayerWeights& w,
                                                   const std::optional<at::Tensor>& lengths,
                                                   const Cell& cell, bool reverse) {
  const int64_t T = x.size(0);
  at::Tensor pre = at::matmul(x, w.w_ih.t());
  if (w.b_ih.has_value()) pre = pre + *w.b_ih;
  if (w.b_hh.has_value()) pre = pre + *w.b_hh;
  at::Tensor h = h0;
  std::vector<at::Tensor> outs(T);
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const at::Tensor z = pre.select(0, t) + at::mm(h, w.w_hh.t());
    const at::Tensor h_new = cell_forward(cell, z);
    if (lengths.has_value()) {
      const at::Tensor active = lengths->gt(t).unsqueeze(1);
      outs[t] = at::where(active, h_new, at::zeros_like(h_new));
      h = at::where(active, h_new, h);
    } else {
      outs[t] = h_new;
      h = h_new;
    }
  }
  return {T > 0 ? at::stack(outs) : at::empty({0, x.size(1), w.w_hh.size(1)}, x.options()), h};
}

std::tuple<at::Tensor, at::Tensor> composite_rnn(const at::Tensor& input, const at::Tensor& hx,
                                                 at::TensorList params,
                                                 const std::optional<at::Tensor>& batch_sizes,
                                                 const RNNConfig& c, at::TensorList noises) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const std::optional<at::Tensor> lengths =
      packed ? std::optional<at::Tensor>(pk.lengths) : std::nullopt;
  at::Tensor layer_in = packed ? pk.pad(input) : input;
  std::vector<at::Tensor> h_n;
  for (int64_t l = 0; l < c.L; ++l) {
    std::vector<at::Tensor> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      auto [out, hn] = composite_layer(layer_in, hx.select(0, l * c.D + d),
                                       layer_weights(params, c, l, d), lengths, c.cell, d == 1);
      outs.push_back(out);
      h_n.push_back(hn);
    }
    layer_in = c.D == 1 ? outs[0] : at::cat(outs, 2);
    if (l < c.L - 1 && c.dropout_active()) {
      layer_in = packed ? pk.pad(pk.pack(layer_in) * noises[l]) : layer_in * noises[l];
    }
  }
  return {packed ? pk.pack(layer_in) : layer_in, at::stack(h_n)};
}

at::Tensor composite_cell(const at::Tensor& x, const at::Tensor& h, const LayerWeights& w,
                          const Cell& cell) {
  at::Tensor z = at::mm(x, w.w_ih.t()) + at::mm(h, w.w_hh.t());
  if (w.b_ih.has_value()) z = z + *w.b_ih;
  if (w.b_hh.has_value()) z = z + *w.b_hh;
  return cell_forward(cell, z);
}

}  // namespace rnnfused
