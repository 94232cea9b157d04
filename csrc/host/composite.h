// rnnfused host code: the forward recomputed in differentiable ATen ops, for double backward
// only (slow and plain, like rnnfused/reference.py): its autograd graph gives exact second
// derivatives. autograd.cpp differentiates it when a graph of the gradient is requested.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <optional>
#include <tuple>

#include "layer.h"
#include "stack.h"

namespace rnnfused {

// One layer-direction, as layer_fwd: (output (T, B, H), h_n (B, H)).
std::tuple<at::Tensor, at::Tensor> composite_layer(const at::Tensor& x, const at::Tensor& h0,
                                                   const LayerWeights& w,
                                                   const std::optional<at::Tensor>& lengths,
                                                   const Cell& cell, bool reverse);

// The whole module, as rnn with the dropout noise rnn_train drew (one per layer but the last).
std::tuple<at::Tensor, at::Tensor> composite_rnn(const at::Tensor& input, const at::Tensor& hx,
                                                 at::TensorList params,
                                                 const std::optional<at::Tensor>& batch_sizes,
                                                 const RNNConfig& c, at::TensorList noises);

// One cell step, as rnn_cell: h'.
at::Tensor composite_cell(const at::Tensor& x, const at::Tensor& h, const LayerWeights& w,
                          const Cell& cell);

}  // namespace rnnfused
