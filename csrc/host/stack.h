// rnnfused host code: the whole module (nn.RNN's forward): layers × directions, the dropout
// between layers, padded or packed input. Its ops (rnn, rnn_train, rnn_backward) are declared in
// ops.h; this is what the checks and the double-backward composite share with them.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "../cells/cell.h"
#include "layer.h"

namespace rnnfused {

// The module's configuration, from rnn's arguments.
struct RNNConfig {
  bool has_biases = true;
  int64_t L = 1, D = 1;  // layers, directions
  Cell cell;
  double dropout = 0;
  bool train = false;
  bool proj = false;  // nn.LSTM's proj_size > 0: a w_hr per layer-direction
  // params per layer-direction
  int64_t per_layer() const { return (has_biases ? 4 : 2) + (proj ? 1 : 0); }
  bool dropout_active() const { return dropout > 0 && train && L > 1; }
  bool second_state() const { return has_c(cell); }
  // Tensors rnn_train / lstm_train save per layer-direction after the layer outputs and the
  // noise (LayerSaved: gates, cs, and hp with a projection; none for Elman).
  int64_t saved_per_layer() const { return second_state() ? (proj ? 3 : 2) : 0; }
  int64_t n_saved() const {
    return (L - 1) * (dropout_active() ? 2 : 1) + L * D * saved_per_layer();
  }
};

inline RNNConfig rnn_config(bool has_biases, int64_t num_layers, bool bidirectional, const Cell& cell,
                            double dropout, bool train, bool proj = false) {
  return RNNConfig{has_biases, num_layers, bidirectional ? 2 : 1, cell, dropout, train, proj};
}

// params in nn.RNN's / nn.LSTM's order (_flat_weights): per layer, per direction: w_ih, w_hh[,
// b_ih, b_hh][, w_hr].
inline LayerWeights layer_weights(at::TensorList params, const RNNConfig& c, int64_t l, int64_t d) {
  const int64_t k = (l * c.D + d) * c.per_layer();
  LayerWeights w{params[k], params[k + 1], std::nullopt, std::nullopt, std::nullopt};
  if (c.has_biases) {
    w.b_ih = params[k + 2];
    w.b_hh = params[k + 3];
  }
  if (c.proj) w.w_hr = params[k + c.per_layer() - 1];
  return w;
}

// The whole module's forward as differentiable ATen ops (composite.h), drawing the dropout
// noise itself as the op does: (output, h_n, c_n; c_n undefined without cx). For tensors whose
// backend has no kernels for the cell (backend::has_kernels).
std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_module(
    const at::Tensor& input, const at::Tensor& hx, const std::optional<at::Tensor>& cx,
    at::TensorList params, const std::optional<at::Tensor>& batch_sizes, const RNNConfig& c);

}  // namespace rnnfused
