// rnnfused host code: the ops' schemas and their implementations per dispatch key. The only
// place an op's signature is written besides its C++ function (ops.h): the schema says it in the
// dispatcher's language, and the functions registered here must match it.
//
//   CPU       the implementations (ops.h), which route each tensor to its kernels (backend.h)
//   CUDA      the same functions, where this build has the CUDA kernels
//   Autograd  rnn, rnn_layer, rnn_cell and their lstm twins: C++ autograd (autograd.cpp). The backward ops have no
//             autograd of their own: double backward differentiates a composite instead.
// The fake (shape-only) kernels that torch.compile and torch.export use are registered in Python
// (rnnfused/ops.py).
#include <torch/library.h>

#include "backend.h"
#include "ops.h"

namespace rnnfused {
namespace {

// One implementation for every device.
void impl_kernels(torch::Library& m) {
  m.impl("rnn", &rnn);
  m.impl("rnn_train", &rnn_train);
  m.impl("rnn_backward", &rnn_backward);
  m.impl("rnn_layer", &rnn_layer);
  m.impl("rnn_layer_backward", &rnn_layer_backward);
  m.impl("rnn_cell", &rnn_cell);
  m.impl("rnn_cell_backward", &rnn_cell_backward);
  m.impl("lstm", &lstm);
  m.impl("lstm_train", &lstm_train);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("lstm_layer", &lstm_layer);
  m.impl("lstm_layer_backward", &lstm_layer_backward);
  m.impl("lstm_cell", &lstm_cell);
  m.impl("lstm_cell_backward", &lstm_cell_backward);
}

}  // namespace

// TORCH_LIBRARY pastes its namespace argument: one more expansion step so the macro is expanded.
#define RNNFUSED_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define RNNFUSED_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)

RNNFUSED_LIBRARY(RNNFUSED_OPS_NAMESPACE, m) {
  // rnn and rnn_train draw the inter-layer dropout noise from the default generator.
  m.def(
      "rnn(Tensor input, Tensor hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, bool relu, float dropout, bool train) -> (Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "rnn_train(Tensor input, Tensor hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, bool relu, float dropout, bool train) "
      "-> (Tensor, Tensor, Tensor[])",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "rnn_backward(Tensor? grad_output, Tensor? grad_hn, Tensor input, Tensor hx, Tensor[] params, "
      "Tensor? batch_sizes, Tensor output, Tensor[] saved, bool has_biases, int num_layers, "
      "bool bidirectional, bool relu, float dropout, bool train, bool[] output_mask) "
      "-> (Tensor, Tensor, Tensor[])");
  m.def(
      "rnn_layer(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? lengths, bool relu, bool reverse) -> (Tensor, Tensor)");
  m.def(
      "rnn_layer_backward(Tensor? grad_output, Tensor? grad_hn, Tensor input, Tensor h0, "
      "Tensor w_ih, Tensor w_hh, Tensor output, Tensor? lengths, bool relu, bool reverse, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rnn_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "bool relu) -> Tensor");
  m.def(
      "rnn_cell_backward(Tensor grad_hy, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, "
      "Tensor hy, bool relu, bool[5] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The LSTM: the state as Tensor[] hx = (h, c), as nn's _VF.lstm.
  m.def(
      "lstm(Tensor input, Tensor[] hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, float dropout, bool train) -> (Tensor, Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "lstm_train(Tensor input, Tensor[] hx, Tensor[] params, Tensor? batch_sizes, bool has_biases, "
      "int num_layers, bool bidirectional, float dropout, bool train) "
      "-> (Tensor, Tensor, Tensor, Tensor[])",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "lstm_backward(Tensor? grad_output, Tensor? grad_hn, Tensor? grad_cn, Tensor input, "
      "Tensor[] hx, Tensor[] params, Tensor? batch_sizes, Tensor output, Tensor[] saved, "
      "bool has_biases, int num_layers, bool bidirectional, float dropout, bool train, "
      "bool[] output_mask) -> (Tensor, Tensor, Tensor, Tensor[])");
  m.def(
      "lstm_layer(Tensor input, Tensor[] hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse) -> (Tensor, Tensor, Tensor)");
  m.def(
      "lstm_layer_backward(Tensor? grad_output, Tensor? grad_hn, Tensor? grad_cn, Tensor input, "
      "Tensor[] hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, "
      "Tensor? lengths, bool reverse, bool[5] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "lstm_cell(Tensor input, Tensor[] hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) "
      "-> (Tensor, Tensor)");
  m.def(
      "lstm_cell_backward(Tensor? grad_hy, Tensor? grad_cy, Tensor input, Tensor[] hx, "
      "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CPU, m) { impl_kernels(m); }

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, CUDA, m) {
  if (backend::kBuiltWithCuda) impl_kernels(m);
}

RNNFUSED_LIBRARY_IMPL(RNNFUSED_OPS_NAMESPACE, Autograd, m) {
  m.impl("rnn", rnn_autograd);
  m.impl("rnn_layer", rnn_layer_autograd);
  m.impl("rnn_cell", rnn_cell_autograd);
  m.impl("lstm", lstm_autograd);
  m.impl("lstm_layer", lstm_layer_autograd);
  m.impl("lstm_cell", lstm_cell_autograd);
}

}  // namespace rnnfused
