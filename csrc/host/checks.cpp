// rnnfused host code: argument validation (checks.h).
#include "checks.h"

#include <ATen/ATen.h>

#include "backend.h"
#include "layer.h"
#include "stack.h"

namespace rnnfused {

void check_dtype_device(const Tensor& input) {
  const auto dt = input.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
              "rnnfused: input dtype must be float32, float64, float16 or bfloat16, got ", dt);
  TORCH_CHECK(input.device().is_cpu() || input.device().is_cuda(),
              "rnnfused: unsupported device ", input.device());
  TORCH_CHECK(backend::kBuiltWithCuda || !input.device().is_cuda(),
              "rnnfused: this build has no CUDA kernels (it was built CPU-only); reinstall with a "
              "CUDA toolkit and a CUDA build of torch, or set FORCE_CUDA=1");
}

void check_same(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "rnnfused: ", name, " is on ", t.device(),
              " but input is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "rnnfused: ", name, " has dtype ",
              t.scalar_type(), " but input has dtype ", ref.scalar_type());
}

void check_shape(const Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "rnnfused: ", name, " must have shape ", expected, ", got ",
              t.sizes());
}

void check_bias(const optional<Tensor>& b, const Tensor& input, int64_t GH, const char* name) {
  if (!b.has_value()) return;
  check_same(*b, input, name);
  check_shape(*b, {GH}, name);
}

namespace {

void check_lengths(const optional<Tensor>& lengths, const Tensor& input, int64_t B) {
  if (!lengths.has_value()) return;
  const Tensor& l = *lengths;
  TORCH_CHECK(l.scalar_type() == at::kLong, "rnnfused: lengths must be int64, got ", l.scalar_type());
  TORCH_CHECK(l.device() == input.device(), "rnnfused: lengths is on ", l.device(),
              " but input is on ", input.device());
  check_shape(l, {B}, "lengths");
}

}  // namespace

std::array<int64_t, 4> check_layer_args(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                        const Tensor& w_hh, const optional<Tensor>& lengths,
                                        const Cell& cell) {
  TORCH_CHECK(input.dim() == 3, "rnnfused: input must be 3-D (T, B, input_size), got ",
              input.dim(), "-D");
  check_dtype_device(input);
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  TORCH_CHECK(w_hh.dim() == 2, "rnnfused: w_hh must be 2-D, got ", w_hh.dim(), "-D");
  const int64_t G = gates(cell), H = w_hh.size(0) / G;
  check_same(h0, input, "h0");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {G * H, H}, "w_hh");
  check_shape(w_ih, {G * H, I}, "w_ih");
  check_shape(h0, {B, H}, "h0");
  check_lengths(lengths, input, B);
  return {T, B, I, H};
}

void check_layer_bwd_args(const Tensor& input, const Tensor& output,
                          const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                          int64_t T, int64_t B, int64_t H) {
  check_same(output, input, "output");
  check_shape(output, {T, B, H}, "output");
  if (grad_output.has_value()) {
    check_same(*grad_output, input, "grad_output");
    check_shape(*grad_output, {T, B, H}, "grad_output");
  }
  if (grad_hn.has_value()) {
    check_same(*grad_hn, input, "grad_hn");
    check_shape(*grad_hn, {B, H}, "grad_hn");
  }
}

void check_cell_args(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                     const Cell& cell) {
  TORCH_CHECK(input.dim() == 2, "rnnfused: input must be 2-D (batch, input_size), got ",
              input.dim(), "-D");
  TORCH_CHECK(hx.dim() == 2, "rnnfused: hx must be 2-D (batch, hidden_size), got ", hx.dim(), "-D");
  TORCH_CHECK(w_ih.dim() == 2 && w_hh.dim() == 2, "rnnfused: w_ih and w_hh must be 2-D");
  check_dtype_device(input);
  const int64_t G = gates(cell), H = w_hh.size(0) / G;
  TORCH_CHECK(input.size(1) == w_ih.size(1), "input has inconsistent input_size: got ",
              input.size(1), " expected ", w_ih.size(1));
  TORCH_CHECK(input.size(0) == hx.size(0), "Input batch size ", input.size(0),
              " doesn't match hidden0 batch size ", hx.size(0));
  TORCH_CHECK(hx.size(1) == H, "hidden0 has inconsistent hidden_size: got ", hx.size(1),
              ", expected ", H);
  check_same(hx, input, "hx");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {G * H, H}, "w_hh");
  check_shape(w_ih, {G * H, input.size(1)}, "w_ih");
}

void check_cell_bwd_args(const Tensor& input, const Tensor& hy, const Tensor& grad_hy, int64_t B,
                         int64_t H) {
  check_same(hy, input, "hy");
  check_shape(hy, {B, H}, "hy");
  check_same(grad_hy, input, "grad_hy");
  check_shape(grad_hy, {B, H}, "grad_hy");
}

std::array<int64_t, 5> check_lstm_layer_args(const Tensor& input, TensorList hx, const Tensor& w_ih,
                                             const Tensor& w_hh, const optional<Tensor>& b_ih,
                                             const optional<Tensor>& b_hh,
                                             const optional<Tensor>& w_hr,
                                             const optional<Tensor>& lengths) {
  TORCH_CHECK(input.dim() == 3, "rnnfused: input must be 3-D (T, B, input_size), got ",
              input.dim(), "-D");
  check_dtype_device(input);
  TORCH_CHECK(hx.size() == 2, "rnnfused: hx must hold two tensors (h0, c0), got ", hx.size());
  TORCH_CHECK(w_hh.dim() == 2, "rnnfused: w_hh must be 2-D, got ", w_hh.dim(), "-D");
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t G = 4, H = w_hh.size(0) / G, P = w_hh.size(1);
  check_same(hx[0], input, "h0");
  check_same(hx[1], input, "c0");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {G * H, P}, "w_hh");
  check_shape(w_ih, {G * H, I}, "w_ih");
  if (w_hr.has_value()) {
    check_same(*w_hr, input, "w_hr");
    check_shape(*w_hr, {P, H}, "w_hr");
  } else {
    TORCH_CHECK(P == H, "rnnfused: w_hh must have shape ", at::IntArrayRef({G * H, H}),
                " without a projection w_hr, got ", w_hh.sizes());
  }
  check_bias(b_ih, input, G * H, "b_ih");
  check_bias(b_hh, input, G * H, "b_hh");
  check_shape(hx[0], {B, P}, "h0");
  check_shape(hx[1], {B, H}, "c0");
  check_lengths(lengths, input, B);
  return {T, B, I, H, P};
}

void check_lstm_cell_args(const Tensor& input, TensorList hx, const Tensor& w_ih, const Tensor& w_hh,
                          const optional<Tensor>& b_ih, const optional<Tensor>& b_hh) {
  TORCH_CHECK(hx.size() == 2, "lstm_cell: Expected two hidden states, got ", hx.size());
  TORCH_CHECK(input.dim() == 2, "rnnfused: input must be 2-D (batch, input_size), got ",
              input.dim(), "-D");
  TORCH_CHECK(hx[0].dim() == 2 && hx[1].dim() == 2,
              "rnnfused: hx and cx must be 2-D (batch, hidden_size)");
  TORCH_CHECK(w_ih.dim() == 2 && w_hh.dim() == 2, "rnnfused: w_ih and w_hh must be 2-D");
  check_dtype_device(input);
  const int64_t G = 4, H = w_hh.size(1);
  // nn.LSTMCell's own checks (aten/src/ATen/native/RNN.cpp) and messages.
  TORCH_CHECK(input.size(1) == w_ih.size(1), "input has inconsistent input_size: got ",
              input.size(1), " expected ", w_ih.size(1));
  for (int64_t k = 0; k < 2; ++k) {
    TORCH_CHECK(input.size(0) == hx[k].size(0), "Input batch size ", input.size(0),
                " doesn't match hidden", k, " batch size ", hx[k].size(0));
    TORCH_CHECK(hx[k].size(1) == H, "hidden", k, " has inconsistent hidden_size: got ",
                hx[k].size(1), ", expected ", H);
  }
  check_same(hx[0], input, "hx");
  check_same(hx[1], input, "cx");
  check_same(w_ih, input, "w_ih");
  check_same(w_hh, input, "w_hh");
  check_shape(w_hh, {G * H, H}, "w_hh");
  check_shape(w_ih, {G * H, input.size(1)}, "w_ih");
  check_bias(b_ih, input, G * H, "b_ih");
  check_bias(b_hh, input, G * H, "b_hh");
}

RNNConfig check_rnn_args(const Tensor& input, const Tensor& hx, TensorList params,
                         const optional<Tensor>& batch_sizes, bool has_biases, int64_t num_layers,
                         bool bidirectional, const Cell& cell, double dropout, bool train,
                         const optional<Tensor>& cx) {
  TORCH_CHECK(cx.has_value() == has_c(cell), "rnnfused: the cell's state is ",
              has_c(cell) ? "(h, c)" : "h alone");
  RNNConfig c = rnn_config(has_biases, num_layers, bidirectional, cell, dropout, train);
  // An LSTM's projection: one more tensor (w_hr) per layer-direction.
  c.proj = has_c(cell) && num_layers >= 1 &&
           static_cast<int64_t>(params.size()) == c.L * c.D * (c.per_layer() + 1);
  const bool packed = batch_sizes.has_value();
  TORCH_CHECK(input.dim() == (packed ? 2 : 3), "rnnfused: input must be ",
              packed ? "2-D (packed rows, input_size) with batch_sizes" : "3-D (T, B, input_size)",
              ", got ", input.dim(), "-D");
  check_dtype_device(input);
  TORCH_CHECK(num_layers >= 1, "rnnfused: num_layers must be at least 1, got ", num_layers);
  TORCH_CHECK(dropout >= 0 && dropout <= 1, "rnnfused: dropout must be in [0, 1], got ", dropout);
  TORCH_CHECK(static_cast<int64_t>(params.size()) == c.L * c.D * c.per_layer(),
              "rnnfused: expected ", c.L * c.D * c.per_layer(), " parameter tensors for ", c.L,
              " layer(s), ", c.D, " direction(s), bias=", has_biases, "; got ", params.size());
  TORCH_CHECK(params[1].dim() == 2, "rnnfused: w_hh must be 2-D, got ", params[1].dim(), "-D");
  const int64_t G = gates(cell), H = params[1].size(0) / G, P = params[1].size(1);
  TORCH_CHECK(hx.dim() == 3, "rnnfused: hx must be 3-D (num_layers * num_directions, B, H), got ",
              hx.dim(), "-D");
  const int64_t B = packed ? hx.size(1) : input.size(1);
  check_same(hx, input, "hx");
  check_shape(hx, {c.L * c.D, B, P}, "hx");
  if (cx.has_value()) {
    check_same(*cx, input, "cx");
    check_shape(*cx, {c.L * c.D, B, H}, "cx");
  }
  for (int64_t l = 0; l < c.L; ++l) {
    const int64_t I = l == 0 ? input.size(input.dim() - 1) : c.D * P;
    for (int64_t d = 0; d < c.D; ++d) {
      const LayerWeights w = layer_weights(params, c, l, d);
      check_same(w.w_ih, input, "w_ih");
      check_same(w.w_hh, input, "w_hh");
      check_shape(w.w_ih, {G * H, I}, "w_ih");
      check_shape(w.w_hh, {G * H, P}, "w_hh");
      check_bias(w.b_ih, input, G * H, "b_ih");
      check_bias(w.b_hh, input, G * H, "b_hh");
      if (w.w_hr.has_value()) {
        check_same(*w.w_hr, input, "w_hr");
        check_shape(*w.w_hr, {P, H}, "w_hr");
      }
    }
  }
  TORCH_CHECK(c.proj || P == H, "rnnfused: w_hh must have shape ", at::IntArrayRef({G * H, H}),
              ", got ", params[1].sizes());
  return c;
}

void check_rnn_backward_args(const RNNConfig& c, TensorList params,
                             const c10::List<bool>& output_mask, TensorList saved) {
  const int64_t nP = static_cast<int64_t>(params.size());
  const int64_t n_state = c.second_state() ? 2 : 1;
  TORCH_CHECK(static_cast<int64_t>(output_mask.size()) == 1 + n_state + nP,
              "rnnfused: output_mask needs ", 1 + n_state + nP, " entries, got ", output_mask.size());
  const int64_t n_saved = c.n_saved();
  TORCH_CHECK(static_cast<int64_t>(saved.size()) == n_saved, "rnnfused: expected ", n_saved,
              " saved tensors, got ", saved.size());
}

}  // namespace rnnfused
