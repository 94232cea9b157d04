// rnnfused host code: the forward recomputed in differentiable ATen ops (slow and plain, like
// rnnfused/reference.py): its autograd graph gives exact second derivatives. autograd.cpp
// differentiates it when a graph of the gradient is requested (double backward), and runs it
// as the forward itself where a tensor's backend has no kernels for the cell
// (backend::has_kernels: the LSTM on CUDA, so far).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <optional>
#include <tuple>

#include "layer.h"
#include "stack.h"

namespace rnnfused {

// One layer-direction, as layer_fwd: (output (T, B, P), h_n (B, P), c_n (B, H); c_n undefined
// for a cell without a second state).
std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_layer(const at::Tensor& x,
                                                               const LayerState& s0,
                                                               const LayerWeights& w,
                                                               const std::optional<at::Tensor>& lengths,
                                                               const Cell& cell, bool reverse);

// The whole module, as rnn / lstm with the dropout noise rnn_train drew (one per layer but the
// last): (output, h_n, c_n; c_n undefined without cx).
std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_rnn(const at::Tensor& input,
                                                             const at::Tensor& hx,
                                                             const std::optional<at::Tensor>& cx,
                                                             at::TensorList params,
                                                             const std::optional<at::Tensor>& batch_sizes,
                                                             const RNNConfig& c,
                                                             at::TensorList noises);

// One cell step, as rnn_cell / lstm_cell: (h', c'; c' undefined for a cell without c).
std::tuple<at::Tensor, at::Tensor> composite_cell(const at::Tensor& x, const LayerState& s,
                                                  const LayerWeights& w, const Cell& cell);

}  // namespace rnnfused
