// rnnfused host code: autograd of the differentiable ops (rnn*, lstm*), in C++
// (torch::autograd::Function, registered for the Autograd key, as torchvision's ops do): what they
// share, here; each op's trait in autograd.cpp (the Elman ops) and autograd_lstm.cpp (the LSTM's).
//
// One template, FusedFunction, holds what the ops share:
//  - the Autograd kernel: the plain op below autograd when no input needs a gradient (no graph
//    node, no saving), else the Function;
//  - forward: the op that also returns what backward needs, its inputs and outputs saved;
//  - backward: which differentiable inputs need a gradient; then, when a graph of the gradient
//    is requested (create_graph=True: double backward), the forward recomputed in
//    differentiable ATen ops (composite.h) and differentiated, so second derivatives are exact;
//    likewise for gradients batched by the legacy vmap (gradcheck's check_batched_grad,
//    autograd.grad's is_grads_batched), which has no rule for the backward ops (torch.func's
//    vmap has: rnnfused/_func.py); otherwise the fused backward op.
// A small trait per op says how it differs: which ops run forward and backward, what is saved,
// how the backward op's gradients map onto the inputs, which composite runs under double
// backward. The differentiable inputs are always the op's leading arguments, saved first.
#pragma once
#include <ATen/ATen.h>
#include <ATen/LegacyBatchedTensorImpl.h>
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
namespace autograd_impl {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

inline Tensor opt_tensor(const optional<Tensor>& t) { return t.has_value() ? *t : Tensor(); }
inline optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : std::nullopt; }

// Whether an op argument is a tensor that requires a gradient.
inline bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
inline bool wants_grad(const optional<Tensor>& t) { return t.has_value() && wants_grad(*t); }
inline bool wants_grad(TensorList ts) {
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
inline Tensor as_op_result<Tensor>(const variable_list& v) {
  return v[0];
}
template <>
inline std::tuple<Tensor, Tensor> as_op_result<std::tuple<Tensor, Tensor>>(const variable_list& v) {
  return {v[0], v[1]};
}
template <>
inline std::tuple<Tensor, Tensor, Tensor> as_op_result<std::tuple<Tensor, Tensor, Tensor>>(
    const variable_list& v) {
  return {v[0], v[1], v[2]};
}

// Gradients of `outputs` (with `grad_outputs`, undefined = not used) w.r.t. the inputs whose
// `wanted` flag is set, with a graph when `create_graph`: undefined where not wanted or unused.
inline variable_list grad_with_graph(const variable_list& outputs, const variable_list& grad_outputs,
                              const variable_list& inputs, const std::vector<bool>& wanted,
                              bool create_graph) {
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
  const variable_list g = torch::autograd::grad(outs, wrt, gos, /*retain_graph=*/true, create_graph,
                                                /*allow_unused=*/true);
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
    const bool graph = at::GradMode::is_enabled();  // a graph of the gradient: double backward
    const bool legacy_batched =
        std::any_of(grads.begin(), grads.end(), [](const Tensor& t) { return at::isBatchedTensor(t); });
    if (graph || legacy_batched) {
      at::AutoGradMode recording(true);
      const variable_list inputs(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(wanted.size()));
      g = grad_with_graph(Op::composite(ctx, s, wanted), grads, inputs, wanted, graph);
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
inline std::vector<bool> wanted_defined(AutogradContext* ctx, const variable_list& s, size_t n) {
  std::vector<bool> mask(n, false);
  size_t edge = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!s[i].defined()) continue;
    mask[i] = ctx->needs_input_grad(edge++);
  }
  return mask;
}

// The whole-module ops (rnn, lstm): save the differentiable inputs (input, the states, params),
// the output and the training op's saved tensors, and the arguments that are not tensors.
inline void save_module(AutogradContext* ctx, const Tensor& input, const variable_list& states, TensorList params,
                 const Tensor& out, TensorList saved, const optional<Tensor>& batch_sizes,
                 bool has_biases, int64_t num_layers, bool bidirectional, double dropout, bool train) {
  variable_list to_save{input};
  to_save.insert(to_save.end(), states.begin(), states.end());
  to_save.insert(to_save.end(), params.begin(), params.end());
  to_save.push_back(out);
  to_save.insert(to_save.end(), saved.begin(), saved.end());
  ctx->save_for_backward(to_save);
  auto& d = ctx->saved_data;
  d["n_params"] = static_cast<int64_t>(params.size());
  d["batch_sizes"] = opt_tensor(batch_sizes);
  d["has_biases"] = has_biases;
  d["num_layers"] = num_layers;
  d["bidirectional"] = bidirectional;
  d["dropout"] = dropout;
  d["train"] = train;
}

// Its gradient flags: one per input, state and parameter (nS states).
inline std::vector<bool> module_wanted(AutogradContext* ctx, size_t nS) {
  const size_t n = 1 + nS + static_cast<size_t>(ctx->saved_data["n_params"].toInt());
  std::vector<bool> mask(n);
  for (size_t i = 0; i < n; ++i) mask[i] = ctx->needs_input_grad(i);
  return mask;
}

// The backward op's gradients (input, each state, the parameter list) as the inputs', where wanted.
inline variable_list module_grads(const std::vector<bool>& w, const variable_list& leading,
                           const std::vector<Tensor>& g_params) {
  variable_list g(w.size());
  for (size_t i = 0; i < leading.size(); ++i)
    if (w[i]) g[i] = leading[i];
  for (size_t i = 0; i < g_params.size(); ++i)
    if (w[leading.size() + i]) g[leading.size() + i] = g_params[i];
  return g;
}

}  // namespace autograd_impl
}  // namespace rnnfused
