// rnnfused host code: the whole module (stack.h): rnn, rnn_train and rnn_backward (nn.RNN), and
// lstm, lstm_train and lstm_backward (nn.LSTM), run every layer and direction through layer.h,
// with the dropout between layers, on padded or packed input (packing.h), in one op call. One
// implementation for both cells (rnn_impl, rnn_backward_impl): the LSTM adds its second state c
// and, per layer-direction, what its backward reads (LayerSaved).
#include "stack.h"

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "backend.h"
#include "checks.h"
#include "composite.h"
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
  Tensor output, h_n, c_n;  // c_n: a cell with a second state only
  // For backward: each layer's output but the last (packed rows where the input is packed), then
  // (while dropout is active) the dropout noise applied to each of them, then, for a cell with
  // a second state, each layer-direction's LayerSaved (gates, cs[, hp]; packed rows where the
  // input is packed).
  std::vector<Tensor> saved;
};

// The whole module's forward. cx: the LSTM's c0 (none for Elman).
RNNResult rnn_impl(const Tensor& input, const Tensor& hx, const optional<Tensor>& cx,
                   TensorList params, const optional<Tensor>& batch_sizes, const RNNConfig& c,
                   bool want_saved) {
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  const Tensor x = packed ? pk.pad(input) : input;
  const int64_t B = x.size(1), H = params[1].size(0) / gates(c.cell), P = params[1].size(1);
  RNNResult r;
  r.h_n = at::empty({c.L * c.D, B, P}, input.options());
  if (cx.has_value()) r.c_n = at::empty({c.L * c.D, B, H}, input.options());
  std::vector<Tensor> noises, layer_saved;
  Tensor layer_in = x;
  for (int64_t l = 0; l < c.L; ++l) {
    std::array<Tensor, 2> outs;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t k = l * c.D + d;
      LayerState sn{r.h_n.select(0, k), cx.has_value() ? r.c_n.select(0, k) : Tensor()};
      const LayerState s0{hx.select(0, k), cx.has_value() ? cx->select(0, k) : Tensor()};
      LayerSaved sv;
      outs[d] = layer_fwd(layer_in, s0, layer_weights(params, c, l, d), lengths, c.cell, d == 1, sn,
                          want_saved ? &sv : nullptr);
      if (want_saved && c.second_state()) {
        for (const Tensor& t : {sv.gates, sv.cs, sv.hp})
          if (t.defined()) layer_saved.push_back(packed ? pk.pack(t) : t);
      }
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
  r.saved.insert(r.saved.end(), layer_saved.begin(), layer_saved.end());
  return r;
}

struct RNNGrads {
  Tensor input, hx, cx;
  std::vector<Tensor> params;
};

// The whole module's backward. output_mask: (input, hx[, cx], params...).
RNNGrads rnn_backward_impl(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                           const optional<Tensor>& grad_cn, const Tensor& input, const Tensor& hx,
                           const optional<Tensor>& cx, TensorList params,
                           const optional<Tensor>& batch_sizes, const Tensor& output,
                           TensorList saved, const RNNConfig& c,
                           const std::vector<bool>& output_mask) {
  const int64_t P_ = c.per_layer(), nP = static_cast<int64_t>(params.size());
  const int64_t S = c.second_state() ? 2 : 1;  // state tensors in the mask: hx[, cx]
  const int64_t W0 = 1 + S;                    // the first parameter's mask entry
  const bool packed = batch_sizes.has_value();
  Packing pk;
  if (packed) pk = make_packing(*batch_sizes, input, hx);
  const optional<Tensor> lengths = packed ? optional<Tensor>(pk.lengths) : std::nullopt;
  auto padded = [&](const Tensor& t) { return packed ? pk.pad(t) : t; };
  const int64_t H = params[1].size(0) / gates(c.cell), P = params[1].size(1);
  const int64_t B = packed ? pk.B : input.size(1);
  const auto opts = input.options();
  const bool want_state = output_mask[1] || (S == 2 && output_mask[2]);
  const int64_t noise0 = c.L - 1;                                       // the first noise
  const int64_t gated0 = (c.L - 1) * (c.dropout_active() ? 2 : 1);      // the first LayerSaved

  // Whether anything at or below layer l needs a gradient (so layer l's input gradient is needed).
  std::vector<bool> below(c.L + 1, false);
  below[0] = output_mask[0];
  for (int64_t l = 0; l < c.L; ++l) {
    bool any = below[l] || want_state;
    for (int64_t d = 0; d < c.D; ++d)
      for (int64_t k = 0; k < P_; ++k) any = any || output_mask[W0 + (l * c.D + d) * P_ + k];
    below[l + 1] = any;
  }

  RNNGrads r;
  if (output_mask[1]) r.hx = at::empty({c.L * c.D, B, P}, opts);
  if (S == 2 && output_mask[2]) r.cx = at::empty({c.L * c.D, B, H}, opts);
  r.params.resize(nP);
  auto finish = [&](const Tensor& grad_input) {
    r.input = or_empty(grad_input, opts);
    r.hx = or_empty(r.hx, opts);
    if (S == 2) r.cx = or_empty(r.cx, opts);
    for (Tensor& g : r.params) g = or_empty(g, opts);
    return r;
  };
  optional<Tensor> g_layer;  // d loss / d (padded) output of the current layer
  if (grad_output.has_value()) g_layer = padded(*grad_output);
  for (int64_t l = c.L - 1; l >= 0; --l) {
    const Tensor layer_in =
        l == 0 ? padded(input)
               : (c.dropout_active() ? padded(saved[l - 1] * saved[noise0 + l - 1]) : padded(saved[l - 1]));
    const Tensor layer_out = padded(l == c.L - 1 ? output : saved[l]);
    Tensor grad_in;
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t ld = l * c.D + d, k = ld * P_;
      const LayerWeights w = layer_weights(params, c, l, d);
      const std::array<bool, 5> mask{
          below[l], output_mask[W0 + k], output_mask[W0 + k + 1],
          c.has_biases && (output_mask[W0 + k + 2] || output_mask[W0 + k + 3]),
          c.proj && output_mask[W0 + k + P_ - 1]};
      optional<Tensor> go;
      if (g_layer.has_value()) go = c.D == 1 ? *g_layer : g_layer->narrow(2, d * P, P);
      optional<Tensor> ghn, gcn;
      if (grad_hn.has_value()) ghn = grad_hn->select(0, ld);
      if (grad_cn.has_value()) gcn = grad_cn->select(0, ld);
      const Tensor out_d = c.D == 1 ? layer_out : layer_out.narrow(2, d * P, P);
      LayerSaved sv;
      if (c.second_state()) {
        const int64_t j = gated0 + ld * c.saved_per_layer();
        sv.gates = padded(saved[j]);
        sv.cs = padded(saved[j + 1]);
        if (c.proj) sv.hp = padded(saved[j + 2]);
      }
      const LayerState s0{hx.select(0, ld), cx.has_value() ? cx->select(0, ld) : Tensor()};
      LayerGrads g = layer_bwd(go, ghn, gcn, layer_in, s0, w, out_d, sv, lengths, c.cell, d == 1, mask);
      if (r.hx.defined()) r.hx.select(0, ld).copy_(g.h0);
      if (r.cx.defined()) r.cx.select(0, ld).copy_(g.c0);
      if (output_mask[W0 + k]) r.params[k] = g.w_ih;
      if (output_mask[W0 + k + 1]) r.params[k + 1] = g.w_hh;
      if (c.has_biases)
        bias_grads(g.bias, output_mask[W0 + k + 2], output_mask[W0 + k + 3], r.params[k + 2],
                   r.params[k + 3]);
      if (c.proj && output_mask[W0 + k + P_ - 1]) r.params[k + P_ - 1] = g.w_hr;
      if (g.input.defined()) grad_in = grad_in.defined() ? grad_in.add_(g.input) : g.input;
    }
    if (l == 0) {
      Tensor grad_input;
      if (output_mask[0]) grad_input = packed ? pk.pack(grad_in) : grad_in;
      return finish(grad_input);
    }
    if (!below[l]) return finish(Tensor());  // nothing further down needs a gradient
    // Through the dropout between layers l-1 and l: input = output * noise.
    g_layer = c.dropout_active() ? grad_in * padded(saved[noise0 + l - 1]) : grad_in;
  }
  TORCH_INTERNAL_ASSERT(false, "unreachable");
}

std::vector<bool> to_vector(const c10::List<bool>& l) { return std::vector<bool>(l.begin(), l.end()); }

// The LSTM's state, h and c, from the ops' Tensor[] hx.
void check_two_states(TensorList hx) {
  TORCH_CHECK(hx.size() == 2, "rnnfused: hx must hold two tensors (h0, c0) for the LSTM, got ",
              hx.size());
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> composite_module(const Tensor& input, const Tensor& hx,
                                                    const optional<Tensor>& cx, TensorList params,
                                                    const optional<Tensor>& batch_sizes,
                                                    const RNNConfig& c) {
  std::vector<Tensor> noises;
  if (c.dropout_active()) {
    // F.dropout's noise on each layer's output rows but the last's (packed rows, or (T, B)).
    const int64_t DP = c.D * params[1].size(1);
    const Tensor like = batch_sizes.has_value()
                            ? at::empty({input.size(0), DP}, input.options())
                            : at::empty({input.size(0), input.size(1), DP}, input.options());
    for (int64_t l = 0; l + 1 < c.L; ++l) noises.push_back(dropout_noise(like, c.dropout));
  }
  auto [out, hn, cn] = composite_rnn(input, hx, cx, params, batch_sizes, c, noises);
  return {out, hn, cn};
}

// ------------------------------------------------------------------------------------------------
// rnn, rnn_train, rnn_backward: nn.RNN

std::tuple<Tensor, Tensor> rnn(const Tensor& input, const Tensor& hx, TensorList params,
                               const optional<Tensor>& batch_sizes, bool has_biases,
                               int64_t num_layers, bool bidirectional, bool relu, double dropout,
                               bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  RNNResult r = rnn_impl(input, hx, std::nullopt, params, batch_sizes, c, /*want_saved=*/false);
  return {r.output, r.h_n};
}

std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_train(
    const Tensor& input, const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, bool relu, double dropout, bool train) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  RNNResult r = rnn_impl(input, hx, std::nullopt, params, batch_sizes, c, /*want_saved=*/true);
  return {r.output, r.h_n, r.saved};
}

std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes, const Tensor& output,
    TensorList saved, bool has_biases, int64_t num_layers, bool bidirectional, bool relu,
    double dropout, bool train, const c10::List<bool>& output_mask) {
  NoAutocast no_autocast;
  const RNNConfig c = check_rnn_args(input, hx, params, batch_sizes, has_biases, num_layers,
                                     bidirectional, elman(relu), dropout, train);
  check_rnn_backward_args(c, params, output_mask, saved);
  RNNGrads g = rnn_backward_impl(grad_output, grad_hn, std::nullopt, input, hx, std::nullopt,
                                 params, batch_sizes, output, saved, c, to_vector(output_mask));
  return {g.input, g.hx, g.params};
}

// ------------------------------------------------------------------------------------------------
// lstm, lstm_train, lstm_backward: nn.LSTM. On a backend without LSTM kernels (CUDA, so far:
// backend::has_kernels) the forward runs the ATen composite (composite.h); autograd.cpp
// differentiates it there, so lstm_train and lstm_backward are never called for such tensors.

std::tuple<Tensor, Tensor, Tensor> lstm(const Tensor& input, TensorList hx, TensorList params,
                                        const optional<Tensor>& batch_sizes, bool has_biases,
                                        int64_t num_layers, bool bidirectional, double dropout,
                                        bool train) {
  NoAutocast no_autocast;
  check_two_states(hx);
  const RNNConfig c = check_rnn_args(input, hx[0], params, batch_sizes, has_biases, num_layers,
                                     bidirectional, lstm_cell_kind(), dropout, train, hx[1]);
  if (!backend::has_kernels(input, c.cell)) return composite_module(input, hx[0], hx[1], params, batch_sizes, c);
  RNNResult r = rnn_impl(input, hx[0], hx[1], params, batch_sizes, c, /*want_saved=*/false);
  return {r.output, r.h_n, r.c_n};
}

std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> lstm_train(
    const Tensor& input, TensorList hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, double dropout, bool train) {
  NoAutocast no_autocast;
  check_two_states(hx);
  const RNNConfig c = check_rnn_args(input, hx[0], params, batch_sizes, has_biases, num_layers,
                                     bidirectional, lstm_cell_kind(), dropout, train, hx[1]);
  TORCH_CHECK(backend::has_kernels(input, c.cell), "rnnfused: lstm_train: no LSTM kernels for ",
              input.device(), " tensors yet (FusedLSTM runs ATen ops there)");
  RNNResult r = rnn_impl(input, hx[0], hx[1], params, batch_sizes, c, /*want_saved=*/true);
  return {r.output, r.h_n, r.c_n, r.saved};
}

std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> lstm_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
    const optional<Tensor>& grad_cn, const Tensor& input, TensorList hx, TensorList params,
    const optional<Tensor>& batch_sizes, const Tensor& output, TensorList saved, bool has_biases,
    int64_t num_layers, bool bidirectional, double dropout, bool train,
    const c10::List<bool>& output_mask) {
  NoAutocast no_autocast;
  check_two_states(hx);
  const RNNConfig c = check_rnn_args(input, hx[0], params, batch_sizes, has_biases, num_layers,
                                     bidirectional, lstm_cell_kind(), dropout, train, hx[1]);
  TORCH_CHECK(backend::has_kernels(input, c.cell), "rnnfused: lstm_backward: no LSTM kernels for ",
              input.device(), " tensors yet (FusedLSTM runs ATen ops there)");
  check_rnn_backward_args(c, params, output_mask, saved);
  RNNGrads g = rnn_backward_impl(grad_output, grad_hn, grad_cn, input, hx[0], hx[1], params,
                                 batch_sizes, output, saved, c, to_vector(output_mask));
  return {g.input, g.hx, g.cx, g.params};
}

}  // namespace rnnfused
