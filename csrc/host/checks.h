// rnnfused host code: argument validation of the ops. Every check names the tensor it is about;
// where nn.RNN / nn.RNNCell raise for the same problem, the message is theirs.
#pragma once
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <cstdint>
#include <optional>

#include "../cells/cell.h"

namespace rnnfused {

using at::Tensor;
using at::TensorList;
using std::optional;

struct RNNConfig;  // stack.h

// dtype float32/float64/float16/bfloat16 on the CPU or (where built) CUDA.
void check_dtype_device(const Tensor& input);
// `t` on input's device, in input's dtype.
void check_same(const Tensor& t, const Tensor& ref, const char* name);
void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name);
// A bias, if given: like input, shape (G·H,).
void check_bias(const optional<Tensor>& b, const Tensor& input, int64_t GH, const char* name);

// rnn_layer's and rnn_layer_backward's shared arguments (biases apart); returns (T, B, I, H).
std::array<int64_t, 4> check_layer_args(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                        const Tensor& w_hh, const optional<Tensor>& lengths,
                                        const Cell& cell);
// rnn_layer_backward's own: the forward's output and the gradients of the outputs.
void check_layer_bwd_args(const Tensor& input, const Tensor& output,
                          const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                          int64_t T, int64_t B, int64_t H);

// rnn_cell's and rnn_cell_backward's shared arguments (biases apart): nn.RNNCell's checks and
// messages (aten/src/ATen/native/RNN.cpp), then ours.
void check_cell_args(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                     const Cell& cell);
// rnn_cell_backward's own: the forward's output hy and its gradient.
void check_cell_bwd_args(const Tensor& input, const Tensor& hy, const Tensor& grad_hy, int64_t B,
                         int64_t H);

// lstm_layer's and lstm_layer_backward's: hx = (h0 (B, P), c0 (B, H)), w_ih (4H, I),
// w_hh (4H, P), biases (4H,), w_hr (P, H) or none (P = H). Returns (T, B, I, H, P).
std::array<int64_t, 5> check_lstm_layer_args(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                             const Tensor& w_hh, const optional<Tensor>& b_ih,
                                             const optional<Tensor>& b_hh,
                                             const optional<Tensor>& w_hr,
                                             const optional<Tensor>& lengths);
// lstm_cell's and lstm_cell_backward's: nn.LSTMCell's checks and messages, then ours.
void check_lstm_cell_args(const Tensor& input, TensorList hx, const Tensor& w_ih, const Tensor& w_hh,
                          const optional<Tensor>& b_ih, const optional<Tensor>& b_hh);

// rnn's (and rnn_train's, rnn_backward's) arguments, and lstm's (cx given: the LSTM's c0); returns
// the module's config (an LSTM's projection counted from the number of params). The packed
// input's batch_sizes are checked where they are read (packing.cpp).
RNNConfig check_rnn_args(const Tensor& input, const Tensor& hx, TensorList params,
                         const optional<Tensor>& batch_sizes, bool has_biases, int64_t num_layers,
                         bool bidirectional, const Cell& cell, double dropout, bool train,
                         const optional<Tensor>& cx = std::nullopt);
// rnn_backward's own (lstm_backward's): one mask entry per gradient, the tensors rnn_train
// (lstm_train) saved.
void check_rnn_backward_args(const RNNConfig& c, TensorList params,
                             const c10::List<bool>& output_mask, TensorList saved);

}  // namespace rnnfused
