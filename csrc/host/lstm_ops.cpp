// rnnfused host code: the LSTM's layer and cell ops (ops.h): lstm_layer / lstm_layer_backward
// (one layer-direction) and lstm_cell / lstm_cell_backward (nn.LSTMCell's step), over layer.h's
// layer_fwd / layer_bwd. The module ops (lstm, lstm_train, lstm_backward) are in stack.cpp.
//
// The cell step runs as a layer of one time step (the hoisted input product, then one step of
// the recurrence): the fused one-kernel cell step of the LSTM is a later step. The backward ops
// take the forward's inputs and recompute its gate activations (one more forward pass) rather
// than taking them saved: the module op saves them (lstm_train).
//
// On a backend without LSTM kernels (CUDA, so far: backend::has_kernels) the forward ops run the
// ATen composite (composite.h), which autograd.cpp differentiates; the backward ops raise there.
#include <ATen/ATen.h>

#include "backend.h"
#include "checks.h"
#include "composite.h"
#include "layer.h"
#include "ops.h"

namespace rnnfused {
namespace {

void require_kernels(const Tensor& input, const char* op) {
  TORCH_CHECK(backend::has_kernels(input, lstm_cell_kind()), "rnnfused: ", op,
              ": no LSTM kernels for ", input.device(),
              " tensors yet (the LSTM runs ATen ops there, differentiated by autograd)");
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> lstm_layer(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                              const Tensor& w_hh, const optional<Tensor>& b_ih,
                                              const optional<Tensor>& b_hh,
                                              const optional<Tensor>& w_hr,
                                              const optional<Tensor>& lengths, bool reverse) {
  NoAutocast no_autocast;
  const Cell cell = lstm_cell_kind();
  const auto [T, B, I, H, P] = check_lstm_layer_args(input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths);
  const LayerWeights w{w_ih, w_hh, b_ih, b_hh, w_hr};
  if (!backend::has_kernels(input, cell)) {
    auto [out, hn, cn] = composite_layer(input, {hx[0], hx[1]}, w, lengths, cell, reverse);
    return {out, hn, cn};
  }
  LayerState sn{at::empty({B, P}, input.options()), at::empty({B, H}, input.options())};
  Tensor out = layer_fwd(input, {hx[0], hx[1]}, w, lengths, cell, reverse, sn);
  return {out, sn.h, sn.c};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
    const optional<Tensor>& grad_cn, const Tensor& input, TensorList hx, const Tensor& w_ih,
    const Tensor& w_hh, const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
    const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse,
    std::array<bool, 5> output_mask) {
  NoAutocast no_autocast;
  const Cell cell = lstm_cell_kind();
  const auto [T, B, I, H, P] = check_lstm_layer_args(input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths);
  if (grad_output.has_value()) {
    check_same(*grad_output, input, "grad_output");
    check_shape(*grad_output, {T, B, P}, "grad_output");
  }
  if (grad_hn.has_value()) {
    check_same(*grad_hn, input, "grad_hn");
    check_shape(*grad_hn, {B, P}, "grad_hn");
  }
  if (grad_cn.has_value()) {
    check_same(*grad_cn, input, "grad_cn");
    check_shape(*grad_cn, {B, H}, "grad_cn");
  }
  require_kernels(input, "lstm_layer_backward");
  const LayerWeights w{w_ih, w_hh, b_ih, b_hh, w_hr};
  const LayerState s0{hx[0], hx[1]};
  LayerState sn{at::empty({B, P}, input.options()), at::empty({B, H}, input.options())};
  LayerSaved saved;
  const Tensor out = layer_fwd(input, s0, w, lengths, cell, reverse, sn, &saved);
  const LayerGrads g = layer_bwd(grad_output, grad_hn, grad_cn, input, s0, w, out, saved, lengths,
                                 cell, reverse, output_mask);
  const auto opts = input.options();
  return {or_empty(g.input, opts), g.h0, g.c0, or_empty(g.w_ih, opts), or_empty(g.w_hh, opts),
          or_empty(g.bias, opts), or_empty(g.w_hr, opts)};
}

std::tuple<Tensor, Tensor> lstm_cell(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                     const Tensor& w_hh, const optional<Tensor>& b_ih,
                                     const optional<Tensor>& b_hh) {
  NoAutocast no_autocast;
  const Cell cell = lstm_cell_kind();
  check_lstm_cell_args(input, hx, w_ih, w_hh, b_ih, b_hh);
  const LayerWeights w{w_ih, w_hh, b_ih, b_hh, std::nullopt};
  if (!backend::has_kernels(input, cell)) return composite_cell(input, {hx[0], hx[1]}, w, cell);
  const int64_t B = input.size(0), H = hx[1].size(1);
  LayerState sn{at::empty({B, H}, input.options()), at::empty({B, H}, input.options())};
  layer_fwd(input.unsqueeze(0), {hx[0], hx[1]}, w, std::nullopt, cell, false, sn);
  return {sn.h, sn.c};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_cell_backward(
    const optional<Tensor>& grad_hy, const optional<Tensor>& grad_cy, const Tensor& input,
    TensorList hx, const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
    const optional<Tensor>& b_hh, std::array<bool, 4> output_mask) {
  NoAutocast no_autocast;
  const Cell cell = lstm_cell_kind();
  check_lstm_cell_args(input, hx, w_ih, w_hh, b_ih, b_hh);
  const int64_t B = input.size(0), H = hx[1].size(1);
  for (const auto* g : {&grad_hy, &grad_cy}) {
    if (!g->has_value()) continue;
    check_same(**g, input, g == &grad_hy ? "grad_hy" : "grad_cy");
    check_shape(**g, {B, H}, g == &grad_hy ? "grad_hy" : "grad_cy");
  }
  require_kernels(input, "lstm_cell_backward");
  const LayerWeights w{w_ih, w_hh, b_ih, b_hh, std::nullopt};
  const LayerState s0{hx[0], hx[1]};
  const Tensor x = input.unsqueeze(0);
  LayerState sn{at::empty({B, H}, input.options()), at::empty({B, H}, input.options())};
  LayerSaved saved;
  const Tensor out = layer_fwd(x, s0, w, std::nullopt, cell, false, sn, &saved);
  // One step: the output is h', so its gradient is grad_hy (and none flows into h_n).
  optional<Tensor> go;
  if (grad_hy.has_value()) go = grad_hy->unsqueeze(0);
  const LayerGrads g = layer_bwd(go, std::nullopt, grad_cy, x, s0, w, out, saved, std::nullopt, cell,
                                 false, {output_mask[0], output_mask[1], output_mask[2], output_mask[3], false});
  const auto opts = input.options();
  return {g.input.defined() ? g.input.squeeze(0) : at::empty({0}, opts),
          g.h0, g.c0, or_empty(g.w_ih, opts), or_empty(g.w_hh, opts), or_empty(g.bias, opts)};
}

}  // namespace rnnfused
