// rnnfused host code: autograd of the LSTM's ops (lstm, lstm_layer, lstm_cell): their traits for
// FusedFunction (autograd.h).
#include "autograd.h"

namespace rnnfused {
namespace {

using namespace autograd_impl;

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
    save_module(ctx, input, {hx[0], hx[1]}, params, out, saved, batch_sizes, has_biases,
                num_layers, bidirectional, dropout, train);
    return {out, hn, cn};
  }

  static std::vector<bool> wanted(AutogradContext* ctx, const variable_list&) {  // input, h0, c0, params
    return module_wanted(ctx, 2);
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
    return module_grads(w, {g_in, g_h, g_c}, g_params);
  }
};

}  // namespace

decltype(&lstm) const lstm_autograd = &FusedFunction<LSTMModuleOp>::kernel;
decltype(&lstm_layer) const lstm_layer_autograd = &FusedFunction<LSTMLayerOp>::kernel;
decltype(&lstm_cell) const lstm_cell_autograd = &FusedFunction<LSTMCellOp>::kernel;

}  // namespace rnnfused
