// rnnfused host code: the differentiable recomputation (composite.h).
#include "composite.h"

#include <ATen/ATen.h>

#include <vector>

#include "packing.h"

namespace rnnfused {
namespace {

// The cell's pointwise forward on the summed pre-activations z (B, G·H) from the state s, in
// ATen ops (csrc/cells/elman.h, lstm.h), then the projection w_hr where given: the new state.
LayerState cell_forward(const Cell& cell, const at::Tensor& z, const LayerState& s,
                        const std::optional<at::Tensor>& w_hr) {
  if (!has_c(cell)) return {cell.act == Act::Relu ? at::relu(z) : at::tanh(z), at::Tensor()};
  const std::vector<at::Tensor> g = z.chunk(4, 1);  // i, f, g, o
  const at::Tensor c = at::sigmoid(g[1]) * s.c + at::sigmoid(g[0]) * at::tanh(g[2]);
  at::Tensor h = at::sigmoid(g[3]) * at::tanh(c);
  if (w_hr.has_value()) h = at::mm(h, w_hr->t());
  return {h, c};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_layer(const at::Tensor& x,
                                                               const LayerState& s0,
                                                               const LayerWeights& w,
                                                               const std::optional<at::Tensor>& lengths,
                                                               const Cell& cell, bool reverse) {
  const int64_t T = x.size(0);
  at::Tensor pre = at::matmul(x, w.w_ih.t());
  if (w.b_ih.has_value()) pre = pre + *w.b_ih;
  if (w.b_hh.has_value()) pre = pre + *w.b_hh;
  LayerState s = s0;
  std::vector<at::Tensor> outs(T);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t t = reverse ? T - 1 - i : i;
    const at::Tensor z = pre.select(0, t) + at::mm(s.h, w.w_hh.t());
    const LayerState n = cell_forward(cell, z, s, w.w_hr);
    if (lengths.has_value()) {
      const at::Tensor active = lengths->gt(t).unsqueeze(1);
      outs[t] = at::where(active, n.h, at::zeros_like(n.h));
      s.h = at::where(active, n.h, s.h);
      if (s.c.defined()) s.c = at::where(active, n.c, s.c);
    } else {
      outs[t] = n.h;
      s = n;
    }
  }
  const at::Tensor out =
      T > 0 ? at::stack(outs) : at::empty({0, x.size(1), w.w_hh.size(1)}, x.options());
  return {out, s.h, s.c};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_rnn(const at::Tensor& input,
                                                             const at::Tensor& hx,
                                                             const std::optional<at::Tensor>& cx,
                                                             at::TensorList params,
                                                             const std::optional<at::Tensor>& batch_sizes,
                                                             const RNNConfig& c,
                                                             at::TensorList noises) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const std::optional<at::Tensor> lengths =
      packed ? std::optional<at::Tensor>(pk.lengths) : std::nullopt;
  at::Tensor layer_in = packed ? pk.pad(input) : input;
  std::vector<at::Tensor> h_n, c_n;
  for (int64_t l = 0; l < c.L; ++l) {
    std::vector<at::Tensor> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t k = l * c.D + d;
      const LayerState s0{hx.select(0, k), cx.has_value() ? cx->select(0, k) : at::Tensor()};
      auto [out, hn, cn] = composite_layer(layer_in, s0, layer_weights(params, c, l, d), lengths,
                                           c.cell, d == 1);
      outs.push_back(out);
      h_n.push_back(hn);
      if (cn.defined()) c_n.push_back(cn);
    }
    layer_in = c.D == 1 ? outs[0] : at::cat(outs, 2);
    if (l < c.L - 1 && c.dropout_active()) {
      layer_in = packed ? pk.pad(pk.pack(layer_in) * noises[l]) : layer_in * noises[l];
    }
  }
  return {packed ? pk.pack(layer_in) : layer_in, at::stack(h_n),
          c_n.empty() ? at::Tensor() : at::stack(c_n)};
}

std::tuple<at::Tensor, at::Tensor> composite_cell(const at::Tensor& x, const LayerState& s,
                                                  const LayerWeights& w, const Cell& cell) {
  at::Tensor z = at::mm(x, w.w_ih.t()) + at::mm(s.h, w.w_hh.t());
  if (w.b_ih.has_value()) z = z + *w.b_ih;
  if (w.b_hh.has_value()) z = z + *w.b_hh;
  const LayerState n = cell_forward(cell, z, s, std::nullopt);
  return {n.h, n.c};
}

}  // namespace rnnfused
