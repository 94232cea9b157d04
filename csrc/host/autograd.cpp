// rnnfused host code: autograd of the Elman ops (rnn, rnn_layer, rnn_cell): their traits for
// FusedFunction (autograd.h).
#include "autograd.h"

namespace rnnfused {
namespace {

using namespace autograd_impl;

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
    save_module(ctx, input, {hx}, params, out, saved, batch_sizes, has_biases, num_layers,
                bidirectional, dropout, train);
    ctx->saved_data["relu"] = relu;
    return {out, hn};
  }

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list&) {
    return module_wanted(ctx, 1);
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
    return module_grads(w, {g_in, g_hx}, g_params);
  }
};

}  // namespace

decltype(&rnn) const rnn_autograd = &FusedFunction<ModuleOp>::kernel;
decltype(&rnn_layer) const rnn_layer_autograd = &FusedFunction<LayerOp>::kernel;
decltype(&rnn_cell) const rnn_cell_autograd = &FusedFunction<CellOp>::kernel;

}  // namespace rnnfused
