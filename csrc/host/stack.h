// rnnfused host code: the whole module (nn.RNN's forward): layers × directions, the dropout
// between layers, padded or packed input. Its ops (rnn, rnn_train, rnn_backward) are declared in
// ops.h; this is what the checks and the double-backward composite share with them.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

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
  int64_t per_layer() const { return has_biases ? 4 : 2; }  // params per layer-direction
  bool dropout_active() const { return dropout > 0 && train && L > 1; }
};

inline RNNConfig rnn_config(bool has_biases, int64_t num_layers, bool bidirectional, const Cell& cell,
                            double dropout, bool train) {
  return RNNConfig{has_biases, num_layers, bidirectional ? 2 : 1, cell, dropout, train};
}

// params in nn.RNN's order (_flat_weights): per layer, per direction: w_ih, w_hh[, b_ih, b_hh].
inline LayerWeights layer_weights(at::TensorList params, const RNNConfig& c, int64_t l, int64_t d) {
  const int64_t k = (l * c.D + d) * c.per_layer();
  LayerWeights w{params[k], params[k + 1], std::nullopt, std::nullopt};
  if (c.has_biases) {
    w.b_ih = params[k + 2];
    w.b_hh = params[k + 3];
  }
  return w;
}

}  // namespace rnnfused
