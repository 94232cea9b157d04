// rnnfused host code: one layer-direction forward and backward (layer.h), the fused cell step,
// and the ops over them: rnn_layer / rnn_layer_backward (one layer-direction) and rnn_cell /
// rnn_cell_backward (one cell step).
//
// A layer's input product is hoisted (one GEMM over all T·B rows into the output, then the
// recurrence kernel) or done inside one fused cell step per time step: policy::input_mode
// decides. The CPU kernels compute half types in float: layer_fwd / layer_bwd and the cell ops
// convert around them.
#include "layer.h"

#include <ATen/ATen.h>

#include <cstring>

#include "../cpu/rnn_cpu.h"
#include "../policy.h"
#include "checks.h"
#include "ops.h"

namespace rnnfused {
namespace {

using backend::DeviceGuard;
using backend::on_cuda_path;

// ------------------------------------------------------------------------------------------------
// The fused cell step

// A cell step's weights and sizes (the per-step pointers x, h, h_new are the caller's); the
// weights contiguous, as the kernels read them.
StepFwdParams step_params(const Cell& cell, const Tensor& w_ih, const Tensor& w_hh,
                          const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, int64_t B) {
  StepFwdParams p;
  p.cell = cell;
  p.w_ih = w_ih.data_ptr();
  p.w_hh = w_hh.data_ptr();
  p.b_ih = ptr_or_null(b_ih);
  p.b_hh = ptr_or_null(b_hh);
  p.B = B;
  p.I = w_ih.size(1);
  p.H = w_hh.size(1);
  return p;
}

// h_new = cell(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh); every tensor contiguous, h_new (B, H) written.
void cell_step(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh,
               const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, const Cell& cell,
               Tensor& h_new) {
  StepFwdParams p = step_params(cell, w_ih, w_hh, b_ih, b_hh, x.size(0));
  p.x = x.data_ptr();
  p.h = h.data_ptr();
  p.h_new = h_new.data_ptr();
  backend::step_fwd(p, backend::step_target(x, p.B, p.I, p.H, /*backward=*/false));
}

// Backward of a cell step, the sequential part: dz (B, G·H) = the cell's backward of g,
// grad_x = dz W_ih, grad_h = dz W_hh (each only where wanted: pass undefined tensors to skip).
void cell_step_bwd(const Tensor& g, const Tensor& h_new, const Tensor& w_ih, const Tensor& w_hh,
                   const Cell& cell, Tensor& dz, Tensor& grad_x, Tensor& grad_h) {
  StepBwdParams p;
  p.cell = cell;
  p.grad_h_new = g.data_ptr();
  p.h_new = h_new.data_ptr();
  p.w_ih = w_ih.data_ptr();
  p.w_hh = w_hh.data_ptr();
  p.dz = dz.data_ptr();
  p.grad_x = grad_x.defined() ? grad_x.data_ptr() : nullptr;
  p.grad_h = grad_h.defined() ? grad_h.data_ptr() : nullptr;
  p.B = g.size(0);
  p.I = w_ih.size(1);
  p.H = w_hh.size(1);
  backend::step_bwd(p, backend::step_target(g, p.B, p.I, p.H, /*backward=*/true));
}

// ------------------------------------------------------------------------------------------------
// One layer-direction, in a dtype the kernels compute in

// The tensors behind a SeqCommon's pointers (lengths, workspace), kept alive while the kernels run.
struct SeqCommonTensors {
  Tensor lengths, state;
};

// need_state: whether the kernels use SeqCommon::state (the CPU forward does only for packed
// input: its fused path reads h_{t-1} from the output, its BLAS path keeps a state only where
// items end at different steps); the allocation is skipped otherwise.
SeqCommonTensors fill_seq_common(SeqCommon& c, const Tensor& like, const optional<Tensor>& lengths,
                                 int64_t T, int64_t B, int64_t H, const Cell& cell, bool reverse,
                                 bool need_state = true) {
  SeqCommonTensors keep;
  if (lengths.has_value()) {
    keep.lengths = lengths->contiguous();
    c.lengths = keep.lengths.data_ptr<int64_t>();
  }
  if (need_state) {
    keep.state = at::empty({2, B, H}, like.options().dtype(acc_type(like.scalar_type())));
    c.state = keep.state.data_ptr();
  }
  c.T = T;
  c.B = B;
  c.H = H;
  c.cell = cell;
  c.reverse = reverse;
  return keep;
}

// The forward of a cell with a second state (the LSTM) in a dtype the kernels compute in: the
// hoisted input projection into the gates buffer (T, B, G·H), then the recurrence, which leaves
// the gate activations there (rnn.h, SeqFwdParams).
Tensor gated_fwd_kernels(const Tensor& input, const LayerState& s0, const LayerWeights& w,
                         const optional<Tensor>& lengths, const Cell& cell, bool reverse,
                         LayerState& sn, LayerSaved* saved) {
  DeviceGuard device(input);
  TORCH_INTERNAL_ASSERT(!on_cuda_path(input), "rnnfused: no CUDA kernels for this cell");
  const Tensor x = input.contiguous();
  const Tensor h0 = s0.h.contiguous(), c0 = s0.c.contiguous();
  const Tensor whh = w.w_hh.contiguous(), wih = w.w_ih.contiguous();
  const optional<Tensor> whr = contiguous(w.w_hr);
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t GH = whh.size(0), H = GH / gates(cell), P = whh.size(1);
  const auto opts = x.options();
  Tensor gates_buf = at::empty({T, B, GH}, opts);
  Tensor out = at::empty({T, B, P}, opts);
  Tensor cs = at::empty({T, B, H}, opts);
  Tensor hp = whr.has_value() ? at::empty({T, B, H}, opts) : Tensor();
  TORCH_INTERNAL_ASSERT(sn.h.is_contiguous() && sn.c.is_contiguous());
  if (T * B > 0) {
    const auto bih = contiguous(w.b_ih), bhh = contiguous(w.b_hh);
    input_proj_cpu(x.data_ptr(), wih.data_ptr(), ptr_or_null(bih), ptr_or_null(bhh),
                   gates_buf.data_ptr(), T * B, I, GH, x.scalar_type(),
                   policy::cpu_proj_own(T * B, I, GH));
  }
  SeqFwdParams p;
  const SeqCommonTensors keep = fill_seq_common(p, x, lengths, T, B, H, cell, reverse,
                                                /*need_state=*/false);
  p.out = out.data_ptr();
  p.h0 = h0.data_ptr();
  p.w_hh = whh.data_ptr();
  p.hn = sn.h.data_ptr();
  p.gates = gates_buf.data_ptr();
  p.cs = cs.data_ptr();
  p.hp = hp.defined() ? hp.data_ptr() : nullptr;
  p.c0 = c0.data_ptr();
  p.cn = sn.c.data_ptr();
  p.w_hr = ptr_or_null(whr);
  p.P = P;
  backend::seq_fwd(p, x);
  if (saved) *saved = LayerSaved{gates_buf, cs, hp};
  return out;
}

// layer_fwd in a dtype the kernels compute in.
Tensor layer_fwd_kernels(const Tensor& input, const LayerState& s0, const LayerWeights& w,
                         const optional<Tensor>& lengths, const Cell& cell, bool reverse,
                         LayerState& sn, LayerSaved* saved) {
  if (has_c(cell)) return gated_fwd_kernels(input, s0, w, lengths, cell, reverse, sn, saved);
  const Tensor& h0_ = s0.h;
  Tensor& hn = sn.h;
  DeviceGuard device(input);
  const Tensor x = input.contiguous();
  const Tensor h0 = h0_.contiguous();
  const Tensor whh = w.w_hh.contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = whh.size(1);
  Tensor out = at::empty({T, B, H}, x.options());
  TORCH_INTERNAL_ASSERT(hn.is_contiguous());

  if (policy::input_mode(on_cuda_path(x), T, B, I, H, lengths.has_value()) == policy::InputMode::Step) {
    // One fused cell step per time step (T >= 1 here), straight over the pointers: no tensor,
    // no dispatcher call a step.
    const Tensor wih = w.w_ih.contiguous();
    const auto bih = contiguous(w.b_ih), bhh = contiguous(w.b_hh);
    const backend::StepTarget on = backend::step_target(x, B, I, H, /*backward=*/false);
    StepFwdParams p = step_params(cell, wih, whh, bih, bhh, B);
    const int64_t es = static_cast<int64_t>(x.element_size());
    const char* xp = static_cast<const char*>(x.data_ptr());
    char* op = static_cast<char*>(out.data_ptr());
    const void* prev = h0.data_ptr();
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = reverse ? T - 1 - s : s;
      p.x = xp + t * B * I * es;
      p.h = prev;
      p.h_new = op + t * B * H * es;
      backend::step_fwd(p, on);
      prev = p.h_new;
    }
    // h_n is the last step's output (a host copy of B·H elements on the CPU: no dispatch).
    if (on.cuda) {
      hn.copy_(out.select(0, reverse ? 0 : T - 1));
    } else {
      std::memcpy(hn.data_ptr(), prev, static_cast<size_t>(B * H * es));
    }
    return out;
  }

  // The hoisted input projection, written straight into the output: out = x W_ihᵀ + b (the
  // Elman cell's one gate block, in place). On the CPU, our own row kernels where they beat the
  // BLAS call plus the bias add (small I and H).
  if (!on_cuda_path(x) && T * B > 0) {
    const Tensor wih = w.w_ih.contiguous();
    const auto bih = contiguous(w.b_ih), bhh = contiguous(w.b_hh);
    input_proj_cpu(x.data_ptr(), wih.data_ptr(), ptr_or_null(bih), ptr_or_null(bhh), out.data_ptr(),
                   T * B, I, H, x.scalar_type(), policy::cpu_proj_own(T * B, I, H));
  } else if (T * B > 0) {
    Tensor out2 = out.view({T * B, H});
    const Tensor x2 = x.view({T * B, I});
    if (w.b_ih.has_value() || w.b_hh.has_value()) {
      const Tensor bias = w.b_ih.has_value() && w.b_hh.has_value() ? *w.b_ih + *w.b_hh
                          : w.b_ih.has_value()                     ? *w.b_ih
                                                                   : *w.b_hh;
      at::addmm_out(out2, bias, x2, w.w_ih.t());
    } else {
      at::mm_out(out2, x2, w.w_ih.t());
    }
  }
  SeqFwdParams p;
  const SeqCommonTensors keep = fill_seq_common(p, x, lengths, T, B, H, cell, reverse,
                                                /*need_state=*/on_cuda_path(x) || lengths.has_value());
  p.out = out.data_ptr();
  p.h0 = h0.data_ptr();
  p.w_hh = whh.data_ptr();
  p.hn = hn.data_ptr();
  backend::seq_fwd(p, x);
  return out;
}

// The whole-sequence GEMMs over dz (T, B, G·H) of a layer-direction's backward: the gradients
// of input, w_ih, w_hh and the bias, where `mask` (input, w_ih, w_hh, bias) wants them. out is
// the layer's output (T, B, P), h0 (B, P) its initial h, dz_first (B, G·H) dz at each item's
// first step.
void weight_grads(const Tensor& dz, const Tensor& dz_first, const Tensor& input, const Tensor& h0c,
                  const Tensor& out, const Tensor& w_ih, bool reverse, const std::array<bool, 5>& mask,
                  LayerGrads& g) {
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t GH = dz.size(2), P = out.size(2);
  const Tensor dz2 = dz.view({T * B, GH});
  if (mask[0]) g.input = at::mm(dz2, w_ih).view({T, B, I});
  if (mask[1]) g.w_ih = at::mm(dz2.t(), input.contiguous().view({T * B, I}));
  if (mask[2]) {
    // dW_hh = Σ_t dz_tᵀ h_prev(t). Each item's first step has h_prev = h0 (dz_first); every
    // other active step's h_prev is the neighbouring output (t-1 forward, t+1 reverse). Where
    // that neighbour is inactive, dz or the neighbour's (zero) output makes the term vanish.
    g.w_hh = at::mm(dz_first.t(), h0c);
    if (T > 1) {
      const Tensor dz_rest = reverse ? dz.narrow(0, 0, T - 1) : dz.narrow(0, 1, T - 1);
      const Tensor h_rest = reverse ? out.narrow(0, 1, T - 1) : out.narrow(0, 0, T - 1);
      g.w_hh.addmm_(dz_rest.reshape({(T - 1) * B, GH}).t(), h_rest.reshape({(T - 1) * B, P}));
    }
  }
  if (mask[3]) g.bias = dz2.sum(0);
}

// The backward of a cell with a second state (the LSTM), in a dtype the kernels compute in.
LayerGrads gated_bwd_kernels(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                             const optional<Tensor>& grad_cn, const Tensor& input,
                             const LayerState& s0, const LayerWeights& w, const Tensor& output,
                             const LayerSaved& saved, const optional<Tensor>& lengths,
                             const Cell& cell, bool reverse, std::array<bool, 5> mask) {
  DeviceGuard device(input);
  TORCH_INTERNAL_ASSERT(!on_cuda_path(input), "rnnfused: no CUDA kernels for this cell");
  const Tensor whh = w.w_hh.contiguous();
  const optional<Tensor> whr = contiguous(w.w_hr);
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t GH = whh.size(0), H = GH / gates(cell), P = whh.size(1);
  const auto opts = input.options();
  const Tensor out = output.contiguous(), h0 = s0.h.contiguous(), c0 = s0.c.contiguous();
  const Tensor sg = saved.gates.contiguous(), scs = saved.cs.contiguous();
  const Tensor shp = whr.has_value() ? saved.hp.contiguous() : Tensor();
  TORCH_CHECK(sg.sizes() == at::IntArrayRef({T, B, GH}) && scs.sizes() == at::IntArrayRef({T, B, H}) &&
                  (!whr.has_value() || shp.sizes() == at::IntArrayRef({T, B, H})),
              "rnnfused: the saved gate activations and cell states do not match the input");
  Tensor go, ghn, gcn;
  if (grad_output.has_value()) go = grad_output->contiguous();
  if (grad_hn.has_value()) ghn = grad_hn->contiguous();
  if (grad_cn.has_value()) gcn = grad_cn->contiguous();
  Tensor dz = at::empty({T, B, GH}, opts);
  Tensor dz_first = at::empty({B, GH}, opts);
  Tensor dhp = whr.has_value() ? at::empty({T, B, P}, opts) : Tensor();
  LayerGrads g;
  g.h0 = at::empty({B, P}, opts);
  g.c0 = at::empty({B, H}, opts);
  SeqBwdParams p;
  const SeqCommonTensors keep = fill_seq_common(p, input, lengths, T, B, H, cell, reverse,
                                                /*need_state=*/false);
  p.grad_out = go.defined() ? go.data_ptr() : nullptr;
  p.grad_hn = ghn.defined() ? ghn.data_ptr() : nullptr;
  p.grad_cn = gcn.defined() ? gcn.data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.w_hh = whh.data_ptr();
  p.w_hr = ptr_or_null(whr);
  p.gates = sg.data_ptr();
  p.cs = scs.data_ptr();
  p.hp = shp.defined() ? shp.data_ptr() : nullptr;
  p.c0 = c0.data_ptr();
  p.dz = dz.data_ptr();
  p.dz_first = dz_first.data_ptr();
  p.dhp = dhp.defined() ? dhp.data_ptr() : nullptr;
  p.grad_h0 = g.h0.data_ptr();
  p.grad_c0 = g.c0.data_ptr();
  p.P = P;
  backend::seq_bwd(p, input);
  weight_grads(dz, dz_first, input, h0, out, w.w_ih, reverse, mask, g);
  if (mask[4] && whr.has_value())  // dW_hr = Σ_t dhp_tᵀ h̃_t
    g.w_hr = at::mm(dhp.view({T * B, P}).t(), shp.view({T * B, H}));
  return g;
}

// layer_bwd in a dtype the kernels compute in.
LayerGrads layer_bwd_kernels(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                             const optional<Tensor>& grad_cn, const Tensor& input,
                             const LayerState& s0, const LayerWeights& w, const Tensor& output,
                             const LayerSaved& saved, const optional<Tensor>& lengths,
                             const Cell& cell, bool reverse, std::array<bool, 5> mask) {
  if (has_c(cell))
    return gated_bwd_kernels(grad_output, grad_hn, grad_cn, input, s0, w, output, saved, lengths,
                             cell, reverse, mask);
  DeviceGuard device(input);
  const int64_t T = input.size(0), B = input.size(1), H = w.w_hh.size(1);
  const int64_t GH = gates(cell) * H;
  const auto opts = input.options();
  const Tensor out = output.contiguous();
  const Tensor whh = w.w_hh.contiguous();
  const Tensor h0c = s0.h.contiguous();
  Tensor go, ghn;
  if (grad_output.has_value()) go = grad_output->contiguous();
  if (grad_hn.has_value()) ghn = grad_hn->contiguous();

  Tensor dz = at::empty({T, B, GH}, opts);
  Tensor dz_first = at::empty({B, GH}, opts);
  LayerGrads g;
  g.h0 = at::empty({B, H}, opts);
  SeqBwdParams p;
  const SeqCommonTensors keep = fill_seq_common(p, input, lengths, T, B, H, cell, reverse);
  p.grad_out = go.defined() ? go.data_ptr() : nullptr;
  p.grad_hn = ghn.defined() ? ghn.data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.w_hh = whh.data_ptr();
  p.dz = dz.data_ptr();
  p.dz_first = dz_first.data_ptr();
  p.grad_h0 = g.h0.data_ptr();
  backend::seq_bwd(p, input);
  weight_grads(dz, dz_first, input, h0c, out, w.w_ih, reverse, mask, g);
  return g;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// One layer-direction in the storage dtype (half types on the CPU go through float)

Tensor layer_fwd(const Tensor& x, const LayerState& s0, const LayerWeights& w,
                 const optional<Tensor>& lengths, const Cell& cell, bool reverse, LayerState& sn,
                 LayerSaved* saved) {
  if (computes_in_float(x)) {
    auto f = [](const Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; };
    auto empty_f = [](const Tensor& t) {
      return t.defined() ? at::empty(t.sizes(), t.options().dtype(at::kFloat)) : t;
    };
    const LayerWeights wf{f(w.w_ih), f(w.w_hh), to_float(w.b_ih), to_float(w.b_hh), to_float(w.w_hr)};
    LayerState sn_f{empty_f(sn.h), empty_f(sn.c)};
    const Tensor out = layer_fwd_kernels(f(x), {f(s0.h), f(s0.c)}, wf, lengths, cell, reverse, sn_f, saved);
    sn.h.copy_(sn_f.h);
    if (sn.c.defined()) sn.c.copy_(sn_f.c);
    return out.to(x.scalar_type());
  }
  return layer_fwd_kernels(x, s0, w, lengths, cell, reverse, sn, saved);
}

LayerGrads layer_bwd(const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn,
                     const optional<Tensor>& grad_cn, const Tensor& input, const LayerState& s0,
                     const LayerWeights& w, const Tensor& output, const LayerSaved& saved,
                     const optional<Tensor>& lengths, const Cell& cell, bool reverse,
                     std::array<bool, 5> mask) {
  if (computes_in_float(input)) {
    const auto dt = input.scalar_type();
    auto f = [](const Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; };
    const LayerWeights wf{f(w.w_ih), f(w.w_hh), to_float(w.b_ih), to_float(w.b_hh), to_float(w.w_hr)};
    const LayerSaved sf{f(saved.gates), f(saved.cs), f(saved.hp)};
    LayerGrads g = layer_bwd_kernels(to_float(grad_output), to_float(grad_hn), to_float(grad_cn),
                                     f(input), {f(s0.h), f(s0.c)}, wf, f(output), sf, lengths, cell,
                                     reverse, mask);
    for (Tensor* t : {&g.input, &g.h0, &g.c0, &g.w_ih, &g.w_hh, &g.bias, &g.w_hr})
      if (t->defined()) *t = t->to(dt);
    return g;
  }
  return layer_bwd_kernels(grad_output, grad_hn, grad_cn, input, s0, w, output, saved, lengths,
                           cell, reverse, mask);
}

// ------------------------------------------------------------------------------------------------
// rnn_layer / rnn_layer_backward: one layer-direction

std::tuple<Tensor, Tensor> rnn_layer(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                   const Tensor& w_hh, const optional<Tensor>& b_ih,
                                   const optional<Tensor>& b_hh, const optional<Tensor>& lengths,
                                   bool relu, bool reverse) {
  NoAutocast no_autocast;
  const Cell cell = elman(relu);
  const auto [T, B, I, H] = check_layer_args(input, h0, w_ih, w_hh, lengths, cell);
  check_bias(b_ih, input, gates(cell) * H, "b_ih");
  check_bias(b_hh, input, gates(cell) * H, "b_hh");
  LayerState sn{at::empty({B, H}, input.options()), Tensor()};
  Tensor out = layer_fwd(input, {h0, Tensor()}, {w_ih, w_hh, b_ih, b_hh, std::nullopt}, lengths,
                         cell, reverse, sn);
  return {out, sn.h};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_layer_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_hn, const Tensor& input,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const optional<Tensor>& lengths, bool relu, bool reverse, std::array<bool, 4> output_mask) {
  NoAutocast no_autocast;
  const Cell cell = elman(relu);
  const auto [T, B, I, H] = check_layer_args(input, h0, w_ih, w_hh, lengths, cell);
  check_layer_bwd_args(input, output, grad_output, grad_hn, T, B, H);
  const LayerGrads g = layer_bwd(
      grad_output, grad_hn, std::nullopt, input, {h0, Tensor()},
      {w_ih, w_hh, std::nullopt, std::nullopt, std::nullopt}, output, LayerSaved{}, lengths, cell,
      reverse, {output_mask[0], output_mask[1], output_mask[2], output_mask[3], false});
  const auto opts = input.options();
  return {or_empty(g.input, opts), g.h0, or_empty(g.w_ih, opts), or_empty(g.w_hh, opts),
          or_empty(g.bias, opts)};
}

// ------------------------------------------------------------------------------------------------
// rnn_cell / rnn_cell_backward: one cell step

Tensor rnn_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                const optional<Tensor>& b_ih, const optional<Tensor>& b_hh, bool relu) {
  NoAutocast no_autocast;
  const Cell cell = elman(relu);
  check_cell_args(input, hx, w_ih, w_hh, cell);
  const int64_t H = hx.size(1);
  check_bias(b_ih, input, gates(cell) * H, "b_ih");
  check_bias(b_hh, input, gates(cell) * H, "b_hh");
  DeviceGuard device(input);
  if (computes_in_float(input)) {
    return rnn_cell(input.to(at::kFloat), hx.to(at::kFloat), w_ih.to(at::kFloat), w_hh.to(at::kFloat),
                    to_float(b_ih), to_float(b_hh), relu)
        .to(input.scalar_type());
  }
  Tensor h_new = at::empty({input.size(0), H}, input.options());
  cell_step(input.contiguous(), hx.contiguous(), w_ih.contiguous(), w_hh.contiguous(),
            contiguous(b_ih), contiguous(b_hh), cell, h_new);
  return h_new;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_cell_backward(
    const Tensor& grad_hy, const Tensor& input, const Tensor& hx, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& hy, bool relu, std::array<bool, 5> output_mask) {
  NoAutocast no_autocast;
  const Cell cell = elman(relu);
  check_cell_args(input, hx, w_ih, w_hh, cell);
  const int64_t B = input.size(0), I = input.size(1), H = hx.size(1);
  check_cell_bwd_args(input, hy, grad_hy, B, H);
  DeviceGuard device(input);
  const auto opts = input.options();
  if (computes_in_float(input)) {
    auto r = rnn_cell_backward(grad_hy.to(at::kFloat), input.to(at::kFloat), hx.to(at::kFloat),
                          w_ih.to(at::kFloat), w_hh.to(at::kFloat), hy.to(at::kFloat), relu, output_mask);
    const auto dt = input.scalar_type();
    return {std::get<0>(r).to(dt), std::get<1>(r).to(dt), std::get<2>(r).to(dt),
            std::get<3>(r).to(dt), std::get<4>(r).to(dt)};
  }
  const Tensor wih = w_ih.contiguous(), whh = w_hh.contiguous();
  Tensor dz = at::empty({B, gates(cell) * H}, opts);
  Tensor grad_x = output_mask[0] ? at::empty({B, I}, opts) : Tensor();
  Tensor grad_h = output_mask[1] ? at::empty({B, H}, opts) : Tensor();
  cell_step_bwd(grad_hy.contiguous(), hy.contiguous(), wih, whh, cell, dz, grad_x, grad_h);
  Tensor grad_w_ih, grad_w_hh, grad_bias;
  if (output_mask[2]) grad_w_ih = at::mm(dz.t(), input);
  if (output_mask[3]) grad_w_hh = at::mm(dz.t(), hx);
  if (output_mask[4]) grad_bias = dz.sum(0);
  return {or_empty(grad_x, opts), or_empty(grad_h, opts), or_empty(grad_w_ih, opts),
          or_empty(grad_w_hh, opts), or_empty(grad_bias, opts)};
}

}  // namespace rnnfused
