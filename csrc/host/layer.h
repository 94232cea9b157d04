// rnnfused host code: one layer-direction, forward and backward, on tensors. The cell it runs is
// a Cell (csrc/cells/cell.h); the ops that take `bool relu` make it with elman(relu). Sizes are
// gate-aware: the weights are (G·H, ·), the biases and dz (…, G·H), G = gates(cell).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <optional>

#include "../cells/cell.h"
#include "../cells/switch.h"
#include "backend.h"

namespace rnnfused {

using at::Tensor;
using std::optional;

// ------------------------------------------------------------------------------------------------
// The cell

// The Elman cell with the nonlinearity the ops' `relu` flag names.
inline Cell elman(bool relu) { return Cell{CellKind::Elman, relu ? Act::Relu : Act::Tanh}; }

// The LSTM cell (csrc/cells/lstm.h).
inline Cell lstm_cell_kind() { return Cell{CellKind::LSTM, Act::None}; }

// The cell's gate count G: its weights stack G blocks of H rows.
inline int64_t gates(const Cell& cell) {
  return RNNFUSED_CELL_SWITCH(cell.kind, C, [] { return int64_t{C::kGates}; });
}
// Whether the cell carries a second state c (the LSTM).
inline bool has_c(const Cell& cell) {
  return RNNFUSED_CELL_SWITCH(cell.kind, C, [] { return C::kHasC; });
}

// ------------------------------------------------------------------------------------------------
// Small tensor helpers shared by the host code

// The CPU kernels compute half types in float; they are stored, not computed, in low precision.
inline bool computes_in_float(const Tensor& t) {
  const auto dt = t.scalar_type();
  return !backend::on_cuda_path(t) && (dt == at::kHalf || dt == at::kBFloat16);
}

// The accumulation type of the kernels' workspace: double for double, float otherwise.
inline c10::ScalarType acc_type(c10::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline optional<Tensor> to_float(const optional<Tensor>& t) {
  return t.has_value() ? optional<Tensor>(t->to(at::kFloat)) : std::nullopt;
}
inline optional<Tensor> contiguous(const optional<Tensor>& t) {
  return t.has_value() ? optional<Tensor>(t->contiguous()) : std::nullopt;
}
inline const void* ptr_or_null(const optional<Tensor>& t) {
  return t.has_value() ? t->data_ptr() : nullptr;
}

// A fresh empty (0,) tensor for each gradient not wanted: op outputs must not alias each other.
inline Tensor or_empty(const Tensor& t, const at::TensorOptions& opts) {
  return t.defined() ? t : at::empty({0}, opts);
}

// The gradients of b_ih and b_hh from their one gradient d_b (both biases are summed into the
// same pre-activation): set where wanted. b_ih and b_hh get the same gradient; two tensors, so
// their .grad never alias.
inline void bias_grads(const Tensor& d_b, bool want_ih, bool want_hh, Tensor& g_ih, Tensor& g_hh) {
  if (want_ih) g_ih = d_b;
  if (want_hh) g_hh = want_ih ? d_b.clone() : d_b;
}

// ------------------------------------------------------------------------------------------------
// One layer-direction

// The weights of one layer-direction: w_ih (G·H, I), w_hh (G·H, P), biases (G·H,) or none;
// w_hr (P, H), nn.LSTM's projection (proj_size > 0), or none (then P = H).
struct LayerWeights {
  Tensor w_ih, w_hh;
  optional<Tensor> b_ih, b_hh, w_hr;
};

// A layer-direction's state: h (B, P), and c (B, H) for a cell with a second state (undefined
// otherwise).
struct LayerState {
  Tensor h, c;
};

// What the backward of a cell with a second state (the LSTM) reads beyond the output: the gate
// activations (T, B, G·H), c_t (T, B, H) and, with a projection, h̃_t (T, B, H), in the
// kernels' dtype (float for the half types on the CPU). Empty for Elman.
struct LayerSaved {
  Tensor gates, cs, hp;
};

// Forward of one layer-direction in the storage dtype (half types on the CPU go through float):
// input (T, B, I) and s0 with any strides; returns the output (T, B, P) and writes the final
// state into `sn` (h (B, P) and c (B, H), contiguous). lengths: per-item lengths (packed input),
// or none. saved: filled for a cell with a second state where not null.
Tensor layer_fwd(const Tensor& x, const LayerState& s0, const LayerWeights& w,
                 const optional<Tensor>& lengths, const Cell& cell, bool reverse, LayerState& sn,
                 LayerSaved* saved = nullptr);

// Gradients of one layer-direction; undefined where not wanted (h0, and c0 where the cell has
// it, are always computed).
struct LayerGrads {
  Tensor input, h0, c0, w_ih, w_hh, bias, w_hr;
};

// Backward of layer_fwd. mask: which of (input, w_ih, w_hh, bias, w_hr) need a gradient.
// grad_cn and saved: for a cell with a second state only.
LayerGrads layer_bwd(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                     const optional<Tensor>& grad_cn, const Tensor& input, const LayerState& s0,
                     const LayerWeights& w, const Tensor& output, const LayerSaved& saved,
                     const optional<Tensor>& lengths, const Cell& cell, bool reverse,
                     std::array<bool, 5> mask);

}  // namespace rnnfused
