// rnnfused host code: the whole module (stack.h): rnn, rnn_train and rnn_backward run every
// layer and direction through layer.h, with the dropout between layers, on padded or packed
// input (packing.h), in one op call.
#include "stack.h"

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "checks.h"
#include "ops.h"
#include "packing.h"

namespace rnnfused {
namespace {

// F.dropout's noise on the CPU (aten/src/ATen/native/Dropout.cpp, _dropout_impl): Bernoulli(1-p)
// scaled by 1/(1-p); all zeros for p = 1.
Tensor dropout_noise(const Tensor& like, double p) {
  if (p >= 1) return at::zeros_like(like, at::MemoryFormat::Contiguous);
  Tensor noise = at::empty_like(like, at::MemoryFormat::Contiguous);
  noise.bernoulli_(1 - p);
  noise.div_(1 - p);
  return noise;
}

struct RNNResult {
  Tensor output, h_n;
  // For backward: each layer's output but the last (packed rows where the input is packed), then
  // (while dropout is active) the dropout noise applied to each of them.
  std::vector<Tensor> saved;
};

RNNResult rnn_impl(const Tensor& input, const Tensor& hx, TensorList params,
                   const optional<Tensor>& batch_sizes, const RNNConfig& c, bool want_saved) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  const Tensor x = packed ? pk.pad(input) : input;
  const int64_t B = x.size(1), H = params[1].size(1);
  RNNResult r;
  r.h_n = at::empty({c.L * c.D, B, H}, input.options());
  std::vector<Tensor> noises;
  Tensor layer_in = x;
  for (int64_t l = 0; l < c.L; ++l) {
    std::array<Tensor, 2> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      Tensor hn = r.h_n.select(0, l * c.D + d);
      outs[d] = layer_fwd(layer_in, hx.select(0, l * c.D + d), layer_weights(params, c, l, d),
                          lengths, c.cell, d == 1, hn);
    }
    const Tensor layer_out = c.D == 1 ? outs[0] : at::cat({outs[0], outs[1]}, 2);
    if (l == c.L - 1) {
      r.output = packed ? pk.pack(layer_out) : layer_out;
      break;
    }
    const Tensor out_saved = packed ? pk.pack(layer_out) : layer_out;
    if (want_saved) r.saved.push_back(out_saved);
    if (c.dropout_active()) {
      // On the same rows nn.RNN applies it to (packed data, or the padded output).
      const Tensor noise = dropout_noise(out_saved, c.dropout);
      const Tensor dropped = out_saved * noise;
      layer_in = packed ? pk.pad(dropped) : dropped;
      if (want_saved) noises.push_back(noise);
    } else {
      layer_in = layer_out;
    }
  }
  r.saved.insert(r.saved.end(), noises.begin(), noises.end());
  return r;
}

}  // namespace

std::tuple<Tensor, Tensor> rnn(const Tensor& input, const Tensor& hx, TensorList params,
                               const optional<Tensor>& batch_sizes, bool has_biases,
                               int64_t num_layers, bool bidirectional, bool relu, double dropout,
                               bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  RNNResult r = rnn_impl(input, hx, params, batch_sizes, c, /*want_saved=*/false);
  return {r.output, r.h_n};
}

std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_train(
    const Tensor& input, const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, bool relu, double dropout, bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  RNNResult r = rnn_impl(input, hx, params, batch_sizes, c, /*want_saved=*/true);
  return {r.output, r.h_n, r.saved};
}

std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes, const Tensor& output,
    TensorList saved, bool has_biases, int64_t num_layers, bool bidirectional, bool relu,
    double dropout, bool train, const c10::List<bool>& output_mask_list) {
  NoAutocast no_autocast;
  const std::vector<bool> output_mask(output_mask_list.begin(), output_mask_list.end());
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  check_rnn_backward_args(c, params, output_mask_list, saved);
  const int64_t P = c.per_layer(), nP = static_cast<int64_t>(params.size());
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  auto padded = [&](const Tensor& t) { return packed ? pk.pad(t) : t; };
  const int64_t H = params[1].size(1);
  const int64_t B = packed ? pk.B : input.size(1);
  const auto opts = input.options();

  // Whether anything at or below layer l needs a gradient (so layer l's input gradient is needed).
  std::vector<bool> below(c.L + 1, false);
  below[0] = output_mask[0];
  for (int64_t l = 0; l < c.L; ++l) {
    bool any = below[l];
    for (int64_t d = 0; d < c.D; ++d) {
      any = any || output_mask[1];  // hx's rows
      for (int64_t k = 0; k < P; ++k) any = any || output_mask[2 + (l * c.D + d) * P + k];
    }
    below[l + 1] = any;
  }

  Tensor grad_hx = output_mask[1] ? at::empty({c.L * c.D, B, H}, opts) : Tensor();
  std::vector<Tensor> grad_params(nP);
  optional<Tensor> g_layer;  // d loss / d (padded) output of the current layer
  if (grad_output.has_value()) g_layer = padded(*grad_output);
  for (int64_t l = c.L - 1; l >= 0; --l) {
    const Tensor layer_in =
        l == 0 ? padded(input)
               : (c.dropout_active() ? padded(saved[l - 1] * saved[c.L - 1 + l - 1]) : padded(saved[l - 1]));
    const Tensor layer_out = padded(l == c.L - 1 ? output : saved[l]);
    Tensor grad_in;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t k = (l * c.D + d) * P;
      const std::array<bool, 4> mask{below[l], output_mask[2 + k], output_mask[2 + k + 1],
                                     c.has_biases && (output_mask[2 + k + 2] || output_mask[2 + k + 3])};
      optional<Tensor> go;
      if (g_layer.has_value()) go = c.D == 1 ? *g_layer : g_layer->narrow(2, d * H, H);
      optional<Tensor> ghn;
      if (grad_hn.has_value()) ghn = grad_hn->select(0, l * c.D + d);
      const Tensor out_d = c.D == 1 ? layer_out : layer_out.narrow(2, d * H, H);
      const LayerWeights w = layer_weights(params, c, l, d);
      LayerGrads g = layer_bwd(go, ghn, layer_in, hx.select(0, l * c.D + d), w.w_ih, w.w_hh, out_d,
                               lengths, c.cell, d == 1, mask);
      if (grad_hx.defined()) grad_hx.select(0, l * c.D + d).copy_(g.h0);
      if (output_mask[2 + k]) grad_params[k] = g.w_ih;
      if (output_mask[2 + k + 1]) grad_params[k + 1] = g.w_hh;
      if (c.has_biases)
        bias_grads(g.bias, output_mask[2 + k + 2], output_mask[2 + k + 3], grad_params[k + 2],
                   grad_params[k + 3]);
      if (g.input.defined()) grad_in = grad_in.defined() ? grad_in.add_(g.input) : g.input;
    }
    if (l == 0) {
      Tensor grad_input;
      if (output_mask[0]) grad_input = packed ? pk.pack(grad_in) : grad_in;
      for (Tensor& g : grad_params) g = or_empty(g, opts);
      return {or_empty(grad_input, opts), or_empty(grad_hx, opts), grad_params};
    }
    if (!below[l]) {  // nothing further down needs a gradient
      for (Tensor& g : grad_params) g = or_empty(g, opts);
      return {at::empty({0}, opts), or_empty(grad_hx, opts), grad_params};
    }
    // Through the dropout between layers l-1 and l: input = output * noise.
    g_layer = c.dropout_active() ? grad_in * padded(saved[c.L - 1 + l - 1]) : grad_in;
  }
  TORCH_INTERNAL_ASSERT(false, "unreachable");
}

}  // namespace rnnfused
