// rnnfused host code: autograd of the differentiable ops (rnn, rnn_layer, rnn_cell), in C++
// (torch::autograd::Function, registered for the Autograd key, as torchvision's ops do).
//
// One template, FusedFunction, holds what the three share:
//  - the Autograd kernel: the plain op below autograd when no input needs a gradient (no graph
//    node, no saving), else the Function;
//  - forward: the op that also returns what backward needs, its inputs and outputs saved;
//  - backward: which differentiable inputs need a gradient; then, when a graph of the gradient
//    is requested (create_graph=True: double backward), the forward recomputed in
//    differentiable ATen ops (composite.h) and differentiated, so second derivatives are exact;
//    otherwise the fused backward op.
// A small trait per op says how it differs: which ops run forward and backward, what is saved,
// how the backward op's gradients map onto the inputs, which composite runs under double
// backward. The differentiable inputs are always the op's leading arguments, saved first.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "backend.h"
#include "checks.h"
#include "composite.h"
#include "layer.h"
#include "ops.h"
#include "stack.h"

namespace rnnfused {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor opt_tensor(const optional<Tensor>& t) { return t.has_value() ? *t : Tensor(); }
optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : std::nullopt; }

// Whether an op argument is a tensor that requires a gradient.
bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
bool wants_grad(const optional<Tensor>& t) { return t.has_value() && wants_grad(*t); }
bool wants_grad(TensorList ts) {
  for (const Tensor& t : ts)
    if (t.requires_grad()) return true;
  return false;
}
template <class T>
bool wants_grad(const T&) {  // not a tensor
  return false;
}

template <class... A>
bool any_requires_grad(const A&... a) {
  return at::GradMode::is_enabled() && (wants_grad(a) || ...);
}

// An op called with a tuple of its arguments.
template <class Handle, class Args>
auto call_with(const Handle& op, const Args& args) {
  return std::apply([&op](const auto&... a) { return op.call(a...); }, args);
}

// The Function's outputs as the op returns them.
template <class R>
R as_op_result(const variable_list& v);
template <>
Tensor as_op_result<Tensor>(const variable_list& v) {
  return v[0];
}
template <>
std::tuple<Tensor, Tensor> as_op_result<std::tuple<Tensor, Tensor>>(const variable_list& v) {
  return {v[0], v[1]};
}
template <>
std::tuple<Tensor, Tensor, Tensor> as_op_result<std::tuple<Tensor, Tensor, Tensor>>(
    const variable_list& v) {
  return {v[0], v[1], v[2]};
}

// Gradients of `outputs` (with `grad_outputs`, undefined = not used) w.r.t. the inputs whose
// `wanted` flag is set, with a graph (create_graph): undefined where not wanted or unused.
variable_list grad_with_graph(const variable_list& outputs, const variable_list& grad_outputs,
                              const variable_list& inputs, const std::vector<bool>& wanted) {
  variable_list outs, gos, wrt;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
      outs.push_back(outputs[i]);
      gos.push_back(grad_outputs[i]);
    }
  }
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (wanted[i] && inputs[i].defined() && inputs[i].requires_grad()) {
      wrt.push_back(inputs[i]);
      where.push_back(i);
    }
  }
  variable_list result(inputs.size());
  if (outs.empty() || wrt.empty()) return result;
  const variable_list g = torch::autograd::grad(outs, wrt, gos, /*retain_graph=*/true,
                                                /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t j = 0; j < where.size(); ++j) result[where[j]] = g[j];
  return result;
}

// ------------------------------------------------------------------------------------------------
// The template

// Op: the trait.
//   Fn                      the op's function type (ops.h): the Autograd kernel's and forward's
//   kOtherArgs              the op's arguments after the differentiable ones (no gradient)
//   kComposite              whether some backend lacks kernels for the op's cell; then
//   composite_only(a...)    says whether these arguments' backend does, and
//   composite_call(a...)    runs the forward as differentiable ATen ops (no Function)
//   op()                    the op, run when no input needs a gradient
//   forward(ctx, args)      runs the forward for autograd (args: a tuple of the op's arguments),
//                           saves the differentiable inputs first, returns the outputs
//   wanted(ctx, s)          which differentiable inputs need a gradient (s: the saved tensors)
//   composite(ctx, s, w)    the outputs recomputed in differentiable ATen ops
//   backward(ctx, s, g, w)  the fused backward: one gradient per differentiable input,
//                           undefined where not wanted
// Self: the Function type itself, FusedFunction<Op> (below). The graph node's type is
// CppNode<Self>, whose name autograd demangles once per backward call: a Self named after the
// op's whole signature cost ~13k instructions per call there (callgrind, FusedRNNCell B8 H64),
// hence the short Self and the signature unpacked here.
template <class Self, class Op, class Fn = typename Op::Fn>
struct FusedFunctionImpl;

template <class Self, class Op, class R, class... A>
struct FusedFunctionImpl<Self, Op, R(A...)> : torch::autograd::Function<Self> {
  // The Autograd-key kernel.
  static R kernel(A... a) {
    if (!any_requires_grad(a...)) {
      at::AutoDispatchBelowADInplaceOrView below;
      return Op::op().call(a...);
    }
    // A backend without kernels for the cell (backend::has_kernels): the composite's ATen ops,
    // recorded by autograd as they run.
    if constexpr (Op::kComposite) {
      if (Op::composite_only(a...)) return Op::composite_call(a...);
    }
    return as_op_result<R>(Self::apply(a...));
  }

  static variable_list forward(AutogradContext* ctx, A... a) {
    at::AutoDispatchBelowADInplaceOrView below;
    variable_list outputs = Op::forward(ctx, std::forward_as_tuple(a...));
    ctx->set_materialize_grads(false);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const std::vector<bool> wanted = Op::wanted(ctx, s);
    // One gradient per forward argument (a tensor list counts its tensors).
    variable_list result(wanted.size() + Op::kOtherArgs);
    const bool any = std::find(wanted.begin(), wanted.end(), true) != wanted.end();
    const bool any_grad =
        std::any_of(grads.begin(), grads.end(), [](const Tensor& g) { return g.defined(); });
    if (!any || !any_grad) return result;

    variable_list g;
    if (at::GradMode::is_enabled()) {  // a graph of the gradient is wanted: double backward
      const variable_list inputs(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(wanted.size()));
      g = grad_with_graph(Op::composite(ctx, s, wanted), grads, inputs, wanted);
    } else {
      g = Op::backward(ctx, s, grads, wanted);
    }
    std::copy(g.begin(), g.end(), result.begin());
    return result;
  }
};

template <class Op>
struct FusedFunction : FusedFunctionImpl<FusedFunction<Op>, Op> {};

// ------------------------------------------------------------------------------------------------
// The traits

// Which of the first n saved inputs need a gradient, where the absent optional ones (undefined)
// are not inputs of the autograd node: its input edges are counted among the defined ones only.
std::vector<bool> wanted_defined(AutogradContext* ctx, const variable_list& s, size_t n) {
  std::vector<bool> mask(n, false);
  size_t edge = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!s[i].defined()) continue;
    mask[i] = ctx->needs_input_grad(edge++);
  }
  return mask;
}

// What the one-layer and the cell op share: the differentiable inputs (input, h, w_ih, w_hh,
// b_ih, b_hh), saved as s[0..5] (absent biases as undefined tensors), the output after them; the
// backward op returns (d input, d h, d w_ih, d w_hh, d bias).
struct WeightsAndState {
  // Absent biases (undefined s[4], s[5]) are not inputs of the autograd node, so the node's
  // input edges are counted among the defined ones only.
  static constexpr bool kComposite = false;  // every backend runs the Elman cell

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list& s) {
    return wanted_defined(ctx, s, 6);
  }

  // The backward op's five gradients as the six inputs', where wanted.
  static variable_list spread(const std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>& d,
                              const std::vector<bool>& wanted) {
    variable_list g(6);
    if (wanted[0]) g[0] = std::get<0>(d);
    if (wanted[1]) g[1] = std::get<1>(d);
    if (wanted[2]) g[2] = std::get<2>(d);
    if (wanted[3]) g[3] = std::get<3>(d);
    bias_grads(std::get<4>(d), wanted[4], wanted[5], g[4], g[5]);
    return g;
  }
};

// rnn_layer: one layer-direction.
struct LayerOp : WeightsAndState {
  using Fn = decltype(rnn_layer);
  static constexpr size_t kOtherArgs = 3;  // lengths, relu, reverse
  static const auto& op() { return RNNFUSED_OP(rnn_layer); }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, reverse] = args;
    auto [out, hn] = call_with(op(), args);
    ctx->save_for_backward({input, h0, w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh), out});
    ctx->saved_data["lengths"] = opt_tensor(lengths);
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["reverse"] = reverse;
    return {out, hn};
  }

  static variable_list composite(AutogradContext* ctx, const variable_list& s,
                                 const std::vector<bool>&) {
    auto [out, hn, cn] = composite_layer(s[0], {s[1], Tensor()},
                                         {s[2], s[3], opt(s[4]), opt(s[5]), std::nullopt},
                                         opt(ctx->saved_data["lengths"].toTensor()),
                                         elman(ctx->saved_data["relu"].toBool()),
                                         ctx->saved_data["reverse"].toBool());
    return {out, hn};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    auto& d = ctx->saved_data;
    return spread(RNNFUSED_OP(rnn_layer_backward)
                      .call(opt(grads[0]), opt(grads[1]), s[0], s[1], s[2], s[3], s[6],
                            opt(d["lengths"].toTensor()), d["relu"].toBool(),
                            d["reverse"].toBool(), {w[0], w[2], w[3], w[4] || w[5]}),
                  w);
  }
};

// rnn_cell: one cell step.
struct CellOp : WeightsAndState {
  using Fn = decltype(rnn_cell);
  static constexpr size_t kOtherArgs = 1;  // relu
  static const auto& op() { return RNNFUSED_OP(rnn_cell); }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, hx, w_ih, w_hh, b_ih, b_hh, relu] = args;
    Tensor hy = call_with(op(), args);
    ctx->save_for_backward({input, hx, w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh), hy});
    ctx->saved_data["relu"] = relu;
    return {hy};
  }

  static variable_list composite(AutogradContext* ctx, const variable_list& s,
                                 const std::vector<bool>&) {
    return {std::get<0>(composite_cell(s[0], {s[1], Tensor()},
                                       {s[2], s[3], opt(s[4]), opt(s[5]), std::nullopt},
                                       elman(ctx->saved_data["relu"].toBool())))};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    return spread(RNNFUSED_OP(rnn_cell_backward).call(grads[0], s[0], s[1], s[2], s[3], s[6],
                                                 ctx->saved_data["relu"].toBool(),
                                                 {w[0], w[1], w[2], w[3], w[4] || w[5]}),
                  w);
  }
};

// rnn: the whole module. Saved: input, hx, params..., output, then rnn_train's saved tensors
// (each layer's output but the last, then the dropout noise); the other arguments in saved_data.
struct ModuleOp {
  static constexpr bool kComposite = false;
  using Fn = decltype(rnn);
  // batch_sizes, has_biases, num_layers, bidirectional, relu, dropout, train
  static constexpr size_t kOtherArgs = 7;
  static const auto& op() { return RNNFUSED_OP(rnn); }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, relu, dropout,
                 train] = args;
    auto [out, hn, saved] = call_with(RNNFUSED_OP(rnn_train), args);
    variable_list to_save{input, hx};
    to_save.insert(to_save.end(), params.begin(), params.end());
    to_save.push_back(out);
    to_save.insert(to_save.end(), saved.begin(), saved.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    ctx->saved_data["batch_sizes"] = opt_tensor(batch_sizes);
    ctx->saved_data["has_biases"] = has_biases;
    ctx->saved_data["num_layers"] = num_layers;
    ctx->saved_data["bidirectional"] = bidirectional;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["train"] = train;
    return {out, hn};
  }

  // One flag per input, hx and parameter.
  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list&) {
    const int64_t nP = ctx->saved_data["n_params"].toInt();
    std::vector<bool> mask(2 + nP);
    for (int64_t i = 0; i < 2 + nP; ++i) mask[i] = ctx->needs_input_grad(i);
    return mask;
  }

  // The arguments that are not tensors saved for backward.
  struct Config {
    optional<Tensor> batch_sizes;
    bool has_biases;
    int64_t num_layers;
    bool bidirectional, relu;
    double dropout;
    bool train;
  };
  static Config config(AutogradContext* ctx) {
    auto& d = ctx->saved_data;
    return {opt(d["batch_sizes"].toTensor()), d["has_biases"].toBool(), d["num_layers"].toInt(),
            d["bidirectional"].toBool(), d["relu"].toBool(), d["dropout"].toDouble(),
            d["train"].toBool()};
  }

  static variable_list composite(AutogradContext* ctx, const variable_list& s,
                                 const std::vector<bool>& w) {
    const Config a = config(ctx);
    const size_t nP = w.size() - 2;
    const RNNConfig c =
        rnn_config(a.has_biases, a.num_layers, a.bidirectional, elman(a.relu), a.dropout, a.train);
    const std::vector<Tensor> params(s.begin() + 2, s.begin() + 2 + nP);
    // After the output: each layer's output but the last, then the noise.
    const std::vector<Tensor> noises(s.begin() + 3 + nP + (c.L - 1), s.end());
    auto [out, hn, cn] = composite_rnn(s[0], s[1], std::nullopt, params, a.batch_sizes, c, noises);
    return {out, hn};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    const Config a = config(ctx);
    const size_t nP = w.size() - 2;
    const std::vector<Tensor> params(s.begin() + 2, s.begin() + 2 + nP);
    const std::vector<Tensor> saved(s.begin() + 3 + nP, s.end());
    c10::List<bool> mask;
    for (bool b : w) mask.push_back(b);
    auto [g_in, g_hx, g_params] =
        RNNFUSED_OP(rnn_backward)
            .call(opt(grads[0]), opt(grads[1]), s[0], s[1], params, a.batch_sizes, s[2 + nP], saved,
                  a.has_biases, a.num_layers, a.bidirectional, a.relu, a.dropout, a.train, mask);
    variable_list g(w.size());
    if (w[0]) g[0] = g_in;
    if (w[1]) g[1] = g_hx;
    for (size_t i = 0; i < nP; ++i)
      if (w[2 + i]) g[2 + i] = g_params[i];
    return g;
  }
};

// ------------------------------------------------------------------------------------------------
// The LSTM's ops. The state is Tensor[] hx = (h, c): autograd counts its two tensors as two
// inputs, saved as s[1], s[2]. Where the inputs' backend has no LSTM kernels (CUDA, so far), the
// forward is the composite itself (kComposite).
bool lstm_composite_only(const Tensor& input) { return !backend::has_kernels(input, lstm_cell_kind()); }
std::vector<Tensor> pair(const Tensor& a, const Tensor& b) { return {a, b}; }

// lstm_layer: one layer-direction. Saved: input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr (absent
// optional ones undefined).
struct LSTMLayerOp {
  using Fn = decltype(lstm_layer);
  static constexpr size_t kOtherArgs = 2;  // lengths, reverse
  static constexpr bool kComposite = true;
  static const auto& op() { return RNNFUSED_OP(lstm_layer); }
  static bool composite_only(const Tensor& input, TensorList, const Tensor&, const Tensor&,
                             const optional<Tensor>&, const optional<Tensor>&,
                             const optional<Tensor>&, const optional<Tensor>&, bool) {
    return lstm_composite_only(input);
  }
  static std::tuple<Tensor, Tensor, Tensor> composite_call(
      const Tensor& input, TensorList hx, const Tensor& w_ih, const Tensor& w_hh,
      const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
      const optional<Tensor>& lengths, bool reverse) {
    return composite_layer(input, {hx[0], hx[1]}, {w_ih, w_hh, b_ih, b_hh, w_hr}, lengths,
                           lstm_cell_kind(), reverse);
  }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, hx, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse] = args;
    auto [out, hn, cn] = call_with(op(), args);
    ctx->save_for_backward({input, hx[0], hx[1], w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh),
                            opt_tensor(w_hr)});
    ctx->saved_data["lengths"] = opt_tensor(lengths);
    ctx->saved_data["reverse"] = reverse;
    return {out, hn, cn};
  }

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list& s) {
    return wanted_defined(ctx, s, 8);
  }

  static variable_list composite(AutogradContext* ctx, const variable_list& s,
                                 const std::vector<bool>&) {
    auto [out, hn, cn] = composite_layer(s[0], {s[1], s[2]}, {s[3], s[4], opt(s[5]), opt(s[6]), opt(s[7])},
                                         opt(ctx->saved_data["lengths"].toTensor()),
                                         lstm_cell_kind(), ctx->saved_data["reverse"].toBool());
    return {out, hn, cn};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    auto& d = ctx->saved_data;
    const auto r = RNNFUSED_OP(lstm_layer_backward)
                       .call(opt(grads[0]), opt(grads[1]), opt(grads[2]), s[0], pair(s[1], s[2]),
                             s[3], s[4], opt(s[5]), opt(s[6]), opt(s[7]),
                             opt(d["lengths"].toTensor()), d["reverse"].toBool(),
                             {w[0], w[3], w[4], w[5] || w[6], w[7]});
    variable_list g(8);
    if (w[0]) g[0] = std::get<0>(r);
    if (w[1]) g[1] = std::get<1>(r);
    if (w[2]) g[2] = std::get<2>(r);
    if (w[3]) g[3] = std::get<3>(r);
    if (w[4]) g[4] = std::get<4>(r);
    bias_grads(std::get<5>(r), w[5], w[6], g[5], g[6]);
    if (w[7]) g[7] = std::get<6>(r);
    return g;
  }
};

// lstm_cell: one cell step. Saved: input, hx, cx, w_ih, w_hh, b_ih, b_hh.
struct LSTMCellOp {
  using Fn = decltype(lstm_cell);
  static constexpr size_t kOtherArgs = 0;
  static constexpr bool kComposite = true;
  static const auto& op() { return RNNFUSED_OP(lstm_cell); }
  static bool composite_only(const Tensor& input, TensorList, const Tensor&, const Tensor&,
                             const optional<Tensor>&, const optional<Tensor>&) {
    return lstm_composite_only(input);
  }
  static std::tuple<Tensor, Tensor> composite_call(const Tensor& input, TensorList hx,
                                                   const Tensor& w_ih, const Tensor& w_hh,
                                                   const optional<Tensor>& b_ih,
                                                   const optional<Tensor>& b_hh) {
    return composite_cell(input, {hx[0], hx[1]}, {w_ih, w_hh, b_ih, b_hh, std::nullopt},
                          lstm_cell_kind());
  }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, hx, w_ih, w_hh, b_ih, b_hh] = args;
    auto [h, c] = call_with(op(), args);
    ctx->save_for_backward({input, hx[0], hx[1], w_ih, w_hh, opt_tensor(b_ih), opt_tensor(b_hh)});
    return {h, c};
  }

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list& s) {
    return wanted_defined(ctx, s, 7);
  }

  static variable_list composite(AutogradContext*, const variable_list& s, const std::vector<bool>&) {
    auto [h, c] = composite_cell(s[0], {s[1], s[2]}, {s[3], s[4], opt(s[5]), opt(s[6]), std::nullopt},
                                 lstm_cell_kind());
    return {h, c};
  }

  static variable_list backward(AutogradContext*, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    const auto r = RNNFUSED_OP(lstm_cell_backward)
                       .call(opt(grads[0]), opt(grads[1]), s[0], pair(s[1], s[2]), s[3], s[4],
                             opt(s[5]), opt(s[6]), {w[0], w[3], w[4], w[5] || w[6]});
    variable_list g(7);
    if (w[0]) g[0] = std::get<0>(r);
    if (w[1]) g[1] = std::get<1>(r);
    if (w[2]) g[2] = std::get<2>(r);
    if (w[3]) g[3] = std::get<3>(r);
    if (w[4]) g[4] = std::get<4>(r);
    bias_grads(std::get<5>(r), w[5], w[6], g[5], g[6]);
    return g;
  }
};

// lstm: the whole module. Saved: input, h0, c0, params..., output, then lstm_train's saved
// tensors (each layer's output but the last, the dropout noise, each layer-direction's gates,
// cs[, hp]); the other arguments in saved_data.
struct LSTMModuleOp {
  using Fn = decltype(lstm);
  // batch_sizes, has_biases, num_layers, bidirectional, dropout, train
  static constexpr size_t kOtherArgs = 6;
  static constexpr bool kComposite = true;
  static const auto& op() { return RNNFUSED_OP(lstm); }
  static RNNConfig config_of(size_t n_params, bool has_biases, int64_t num_layers,
                             bool bidirectional, double dropout, bool train) {
    RNNConfig c = rnn_config(has_biases, num_layers, bidirectional, lstm_cell_kind(), dropout, train);
    c.proj = static_cast<int64_t>(n_params) == c.L * c.D * (c.per_layer() + 1);
    return c;
  }

  static bool composite_only(const Tensor& input, TensorList, TensorList, const optional<Tensor>&,
                             bool, int64_t, bool, double, bool) {
    return lstm_composite_only(input);
  }
  static std::tuple<Tensor, Tensor, Tensor> composite_call(
      const Tensor& input, TensorList hx, TensorList params, const optional<Tensor>& batch_sizes,
      bool has_biases, int64_t num_layers, bool bidirectional, double dropout, bool train) {
    // The op's own checks first (they raise what the fused path raises).
    TORCH_CHECK(hx.size() == 2, "rnnfused: hx must hold two tensors (h0, c0) for the LSTM, got ",
                hx.size());
    const RNNConfig c = check_rnn_args(input, hx[0], params, batch_sizes, has_biases, num_layers,
                                       bidirectional, lstm_cell_kind(), dropout, train, hx[1]);
    return composite_module(input, hx[0], hx[1], params, batch_sizes, c);
  }

  template <class Args>
  static variable_list forward(AutogradContext* ctx, const Args& args) {
    const auto& [input, hx, params, batch_sizes, has_biases, num_layers, bidirectional, dropout,
                 train] = args;
    auto [out, hn, cn, saved] = call_with(RNNFUSED_OP(lstm_train), args);
    variable_list to_save{input, hx[0], hx[1]};
    to_save.insert(to_save.end(), params.begin(), params.end());
    to_save.push_back(out);
    to_save.insert(to_save.end(), saved.begin(), saved.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    ctx->saved_data["batch_sizes"] = opt_tensor(batch_sizes);
    ctx->saved_data["has_biases"] = has_biases;
    ctx->saved_data["num_layers"] = num_layers;
    ctx->saved_data["bidirectional"] = bidirectional;
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["train"] = train;
    return {out, hn, cn};
  }

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list&) {  // input, h0, c0, params
    const int64_t nP = ctx->saved_data["n_params"].toInt();
    std::vector<bool> mask(3 + nP);
    for (int64_t i = 0; i < 3 + nP; ++i) mask[i] = ctx->needs_input_grad(i);
    return mask;
  }

  static RNNConfig config(AutogradContext* ctx) {
    auto& d = ctx->saved_data;
    return config_of(static_cast<size_t>(d["n_params"].toInt()), d["has_biases"].toBool(),
                     d["num_layers"].toInt(), d["bidirectional"].toBool(), d["dropout"].toDouble(),
                     d["train"].toBool());
  }

  static variable_list composite(AutogradContext* ctx, const variable_list& s,
                                 const std::vector<bool>& w) {
    const RNNConfig c = config(ctx);
    const size_t nP = w.size() - 3;
    const std::vector<Tensor> params(s.begin() + 3, s.begin() + 3 + nP);
    // After the output: each layer's output but the last, then the noise.
    const auto noise0 = s.begin() + 4 + nP + (c.L - 1);
    const std::vector<Tensor> noises(noise0, noise0 + (c.dropout_active() ? c.L - 1 : 0));
    auto [out, hn, cn] = composite_rnn(s[0], s[1], s[2], params,
                                       opt(ctx->saved_data["batch_sizes"].toTensor()), c, noises);
    return {out, hn, cn};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& s,
                                const variable_list& grads, const std::vector<bool>& w) {
    auto& d = ctx->saved_data;
    const size_t nP = w.size() - 3;
    const std::vector<Tensor> params(s.begin() + 3, s.begin() + 3 + nP);
    const std::vector<Tensor> saved(s.begin() + 4 + nP, s.end());
    c10::List<bool> mask;
    for (bool b : w) mask.push_back(b);
    auto [g_in, g_h, g_c, g_params] =
        RNNFUSED_OP(lstm_backward)
            .call(opt(grads[0]), opt(grads[1]), opt(grads[2]), s[0], pair(s[1], s[2]), params,
                  opt(d["batch_sizes"].toTensor()), s[3 + nP], saved, d["has_biases"].toBool(),
                  d["num_layers"].toInt(), d["bidirectional"].toBool(), d["dropout"].toDouble(),
                  d["train"].toBool(), mask);
    variable_list g(w.size());
    if (w[0]) g[0] = g_in;
    if (w[1]) g[1] = g_h;
    if (w[2]) g[2] = g_c;
    for (size_t i = 0; i < nP; ++i)
      if (w[3 + i]) g[3 + i] = g_params[i];
    return g;
  }
};

}  // namespace

decltype(&rnn) const rnn_autograd = &FusedFunction<ModuleOp>::kernel;
decltype(&lstm) const lstm_autograd = &FusedFunction<LSTMModuleOp>::kernel;
decltype(&lstm_layer) const lstm_layer_autograd = &FusedFunction<LSTMLayerOp>::kernel;
decltype(&lstm_cell) const lstm_cell_autograd = &FusedFunction<LSTMCellOp>::kernel;
decltype(&rnn_layer) const rnn_layer_autograd = &FusedFunction<LayerOp>::kernel;
decltype(&rnn_cell) const rnn_cell_autograd = &FusedFunction<CellOp>::kernel;

}  // namespace rnnfused
