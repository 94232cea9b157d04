// rnnfused host code: the ops' C++ functions, declared once. Their types are the ops' C++
// signatures: registration.cpp registers them, and every call through the dispatcher takes its
// typed handle from them (RNNFUSED_OP), so a signature is written here and in the definition only.
// The schemas (registration.cpp) say the same in the dispatcher's language.
//
//   rnnfused::rnn                 nn.RNN's whole forward (all layers, directions, inter-layer
//                                 dropout; padded or packed input)  -> (output, h_n)  stack.cpp
//   rnnfused::rnn_train           the same, plus what its backward needs -> (output, h_n, saved)
//   rnnfused::rnn_backward        backward of rnn_train             -> (d input, d hx, d params)
//   rnnfused::rnn_layer           one layer, one direction, whole sequence -> (output, h_n)
//   rnnfused::rnn_layer_backward  its backward (BPTT) -> (d input, d h0, d w_ih, d w_hh, d bias)
//   rnnfused::rnn_cell            one fused step, nn.RNNCell's forward -> h'
//   rnnfused::rnn_cell_backward   its backward        -> (d input, d hx, d w_ih, d w_hh, d bias)
// (the layer and cell ops: layer.cpp). A name's suffix says what it is: none (forward),
// _train (forward saving for backward), _backward; the stem the cell (`rnn` Elman, `lstm`) and
// the part: the module, _layer, _cell.
//
// The Elman ops take the cell as `bool relu` (tanh or relu: csrc/cells/elman.h). The LSTM ops
// (csrc/cells/lstm.h) take the state as Tensor[] hx = (h, c), as nn's _VF.lstm does, and return
// (output, h_n, c_n) (module, layer) or (h', c') (cell); an LSTM's projection (nn.LSTM's
// proj_size) is a w_hr per layer-direction, last in its params (counted from their number):
//   rnnfused::lstm / lstm_train / lstm_backward     nn.LSTM's forward             stack.cpp
//   rnnfused::lstm_layer / lstm_layer_backward      one layer-direction           lstm_ops.cpp
//   rnnfused::lstm_cell / lstm_cell_backward        nn.LSTMCell's forward         lstm_ops.cpp
// (the layer and cell backward ops recompute their forward's gates; the module saves them).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

// The dispatcher namespace of the ops: `rnnfused` in the extension, `rnnfused_emu` in the
// emulation build (tests/emu_support.py), which registers the same ops a second time.
#ifndef RNNFUSED_OPS_NAMESPACE
#define RNNFUSED_OPS_NAMESPACE rnnfused
#endif
#define RNNFUSED_STR2(x) #x
#define RNNFUSED_STR(x) RNNFUSED_STR2(x)

namespace rnnfused {

using at::Tensor;
using at::TensorList;
using std::optional;

// ------------------------------------------------------------------------------------------------
// The ops' implementations (the CPU and CUDA dispatch keys; backend.h routes each tensor).

// Whole module (stack.cpp). params in nn.RNN's _flat_weights order; batch_sizes: a
// PackedSequence's, or none for padded input.
std::tuple<Tensor, Tensor> rnn(const Tensor& input, const Tensor& hx, TensorList params,
                               const optional<Tensor>& batch_sizes, bool has_biases,
                               int64_t num_layers, bool bidirectional, bool relu, double dropout,
                               bool train);
std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_train(
    const Tensor& input, const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, bool relu, double dropout, bool train);
// output_mask: which of (input, hx, params...) need a gradient (2 + len(params) entries); the
// others come back as empty tensors of shape (0,).
std::tuple<Tensor, Tensor, std::vector<Tensor>> rnn_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& hx, TensorList params, const optional<Tensor>& batch_sizes, const Tensor& output,
    TensorList saved, bool has_biases, int64_t num_layers, bool bidirectional, bool relu,
    double dropout, bool train, const c10::List<bool>& output_mask);

// One layer-direction (layer.cpp). output_mask: which of (input, w_ih, w_hh, bias) need a
// gradient; grad_h0 always comes (it is free). One not needed comes back as an empty (0,) tensor.
std::tuple<Tensor, Tensor> rnn_layer(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                   const Tensor& w_hh, const optional<Tensor>& b_ih,
                                   const optional<Tensor>& b_hh, const optional<Tensor>& lengths,
                                   bool relu, bool reverse);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_layer_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const optional<Tensor>& lengths, bool relu, bool reverse, std::array<bool, 4> output_mask);

// One cell step (layer.cpp). output_mask: which of (input, hx, w_ih, w_hh, bias) need a
// gradient; the others come back as empty tensors of shape (0,).
Tensor rnn_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, bool relu);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_cell_backward(
    const Tensor& grad_hy, const Tensor& input, const Tensor& hx, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& hy, bool relu, std::array<bool, 5> output_mask);

// The LSTM (stack.cpp). output_mask: which of (input, h0, c0, params...) need a gradient.
std::tuple<Tensor, Tensor, Tensor> lstm(const Tensor& input, TensorList hx, TensorList params,
                                        const optional<Tensor>& batch_sizes, bool has_biases,
                                        int64_t num_layers, bool bidirectional, double dropout,
                                        bool train);
std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> lstm_train(
    const Tensor& input, TensorList hx, TensorList params, const optional<Tensor>& batch_sizes,
    bool has_biases, int64_t num_layers, bool bidirectional, double dropout, bool train);
std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> lstm_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
    const optional<Tensor>& grad_cn, const Tensor& input, TensorList hx, TensorList params,
    const optional<Tensor>& batch_sizes, const Tensor& output, TensorList saved, bool has_biases,
    int64_t num_layers, bool bidirectional, double dropout, bool train,
    const c10::List<bool>& output_mask);

// One LSTM layer-direction (lstm_ops.cpp). output_mask: which of (input, w_ih, w_hh, bias, w_hr)
// need a gradient; d h0 and d c0 always come.
std::tuple<Tensor, Tensor, Tensor> lstm_layer(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                              const Tensor& w_hh, const optional<Tensor>& b_ih,
                                              const optional<Tensor>& b_hh,
                                              const optional<Tensor>& w_hr,
                                              const optional<Tensor>& lengths, bool reverse);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
    const optional<Tensor>& grad_cn, const Tensor& input, TensorList hx, const Tensor& w_ih,
    const Tensor& w_hh, const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
    const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse,
    std::array<bool, 5> output_mask);

// One LSTM cell step (lstm_ops.cpp). output_mask: which of (input, w_ih, w_hh, bias) need a
// gradient; d hx and d cx always come.
std::tuple<Tensor, Tensor> lstm_cell(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                     const Tensor& w_hh, const optional<Tensor>& b_ih,
                                     const optional<Tensor>& b_hh);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_cell_backward(
    const optional<Tensor>& grad_hy, const optional<Tensor>& grad_cy, const Tensor& input,
    TensorList hx, const Tensor& w_ih, const Tensor& w_hh, const optional<Tensor>& b_ih,
    const optional<Tensor>& b_hh, std::array<bool, 4> output_mask);

// ------------------------------------------------------------------------------------------------
// The Autograd-key kernels of the differentiable ops (autograd.cpp), of the same types.

extern decltype(&rnn) const rnn_autograd;
extern decltype(&rnn_layer) const rnn_layer_autograd;
extern decltype(&rnn_cell) const rnn_cell_autograd;
extern decltype(&lstm) const lstm_autograd;
extern decltype(&lstm_layer) const lstm_layer_autograd;
extern decltype(&lstm_cell) const lstm_cell_autograd;

// ------------------------------------------------------------------------------------------------
// Calling an op through the dispatcher.

// The dispatcher's handle of op `name` of this build's namespace, typed by the C++ function
// `fn` that implements it; looked up once.
template <auto& fn>
const c10::TypedOperatorHandle<std::remove_reference_t<decltype(fn)>>& op_handle(const char* name) {
  static const auto handle =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow((std::string(RNNFUSED_STR(RNNFUSED_OPS_NAMESPACE)) + "::" + name).c_str(), "")
          .typed<std::remove_reference_t<decltype(fn)>>();
  return handle;
}
// RNNFUSED_OP(rnn_cell): the typed handle of rnnfused::rnn_cell (name and type from one place).
#define RNNFUSED_OP(fn) (::rnnfused::op_handle<::rnnfused::fn>(#fn))

// What every op's implementation does first: the ops run in the dtypes they are given
// (module.py applies autocast's casting rule), so the ATen calls inside must not be autocast
// again, e.g. when backward runs inside an autocast region.
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

}  // namespace rnnfused
