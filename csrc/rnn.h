// rnnfused: the plain parameter structs of the kernels, shared by the CPU and CUDA sides.
// No ATen here: raw pointers, sizes and flags only (the flash-attention / mamba habit). The host
// code (csrc/host/) validates the tensors, allocates, fills these structs and dispatches.
//
// Names: Seq* is one layer, one direction over a whole sequence (the recurrence kernels); Step*
// is one time step with the input product fused in (the cell kernels). *Fwd / *Bwd the passes.
// G is the cell's gate count (csrc/cells/cell.h); every gate-wide tensor is (…, G·H), the gate
// blocks in PyTorch's order.
#pragma once
#include <cstdint>

#include "cells/cell.h"

namespace rnnfused {

// What the forward and backward of a sequence share: the cell, sizes, flags, lengths and the
// workspace.
struct SeqCommon {
  Cell cell;
  const int64_t* lengths = nullptr;  // see SeqFwdParams
  // Workspace (2, B, H) in the accumulation type (float for float/half/bfloat16, double for
  // double), allocated by the host code: the running state (forward) or dL/dh (backward),
  // ping-ponged between steps where a kernel needs that. Contents on entry are undefined.
  void* state = nullptr;
  int64_t T = 0, B = 0, H = 0;
  bool reverse = false;
};

// One layer, one direction, whole sequence: the sequential part of the forward pass.
//
// All tensors are contiguous, time-major.
//   out     (T, B, H)  on entry: pre_t = x_t W_ihᵀ + b_ih + b_hh (the hoisted input projection;
//                      the Elman cell has one gate block, so it is computed in place);
//                      on exit:  h_t (zero where item b is inactive at step t).
//   h0      (B, H)     initial state.
//   w_hh    (G·H, H)   row-major, as nn.RNN stores weight_hh_l{k}.
//   hn      (B, H)     last state of each item (h at its last active step, h0 if length 0).
//   lengths (B,)       int64 per-item lengths on the kernel's device, or nullptr (all = T).
//                      Item b is active at step t iff t < lengths[b]. The forward direction
//                      walks t = 0..T-1, the reverse direction t = T-1..0 (starting from h0 at
//                      t = lengths[b]-1). Lengths must lie in [0, T]: the CPU raises otherwise,
//                      CUDA clamps (it cannot check without a host sync); the module always
//                      passes valid lengths.
//
// A cell with gate blocks and a second state (the LSTM, C::kHasC; Elman leaves these null):
//   gates   (T, B, G·H)  on entry: the hoisted x_t W_ihᵀ + b_ih + b_hh (out is then only the
//                        output); on exit: the gate activations (i, f, g, o), saved for
//                        backward (zero where item b is inactive at step t).
//   out     (T, B, P)    on exit: h_t (zero where inactive); P = the projection's size, or H.
//   cs      (T, B, H)    on exit: c_t (zero where inactive).
//   hp      (T, B, H)    on exit, with a projection: h̃_t before it (zero where inactive).
//   c0, cn  (B, H)       the initial and the last cell state (cn as hn).
//   w_hh    (G·H, P)     nn.LSTM's weight_hh (P columns: it multiplies the projected h).
//   w_hr    (P, H)       nn.LSTM's weight_hr (proj_size > 0), or nullptr (P = H).
struct SeqFwdParams : SeqCommon {
  void* out = nullptr;
  const void* h0 = nullptr;
  const void* w_hh = nullptr;
  void* hn = nullptr;
  // The second state and the gates (kHasC cells only).
  void* gates = nullptr;
  void* cs = nullptr;
  void* hp = nullptr;
  const void* c0 = nullptr;
  void* cn = nullptr;
  const void* w_hr = nullptr;
  int64_t P = 0;
};

// Backward of the sequential part (BPTT) for one layer, one direction.
//   grad_out (T, B, H)   dL/d out, or nullptr (treated as zeros).
//   grad_hn  (B, H)      dL/d h_n, or nullptr (treated as zeros).
//   out      (T, B, H)   forward outputs h_t (the cell's backward reads them).
//   w_hh     (G·H, H)
//   dz       (T, B, G·H) written: dL/d z_t (the gate pre-activations), zero where the item is
//                        inactive.
//   dz_first (B, G·H)    written: dz at each item's first processed step, the step whose previous
//                        state is h0 (t = 0 forward, t = lengths[b]-1 reverse; zero if length 0).
//   grad_h0  (B, H)      written: dL/d h0.
//
// A cell with gate blocks and a second state (kHasC; the sizes as in SeqFwdParams; grad_out,
// out, grad_hn and grad_h0 are then P wide, dz and dz_first G·H wide):
//   grad_cn  (B, H)      dL/d c_n, or nullptr (zeros).
//   gates, cs, hp, c0    what the forward saved (hp only with a projection), and c0.
//   w_hr     (P, H)      or nullptr.
//   grad_c0  (B, H)      written: dL/d c0.
//   dhp      (T, B, P)   written, with a projection: dL/d h_t (the projected output, all of
//                        what flows into it), zero where inactive; dW_hr = Σ_t dhp_tᵀ hp_t.
struct SeqBwdParams : SeqCommon {
  const void* grad_out = nullptr;
  const void* grad_hn = nullptr;
  const void* out = nullptr;
  const void* w_hh = nullptr;
  void* dz = nullptr;
  void* dz_first = nullptr;
  void* grad_h0 = nullptr;
  // The second state and the gates (kHasC cells only).
  const void* grad_cn = nullptr;
  const void* gates = nullptr;
  const void* cs = nullptr;
  const void* hp = nullptr;
  const void* c0 = nullptr;
  const void* w_hr = nullptr;
  void* grad_c0 = nullptr;
  void* dhp = nullptr;
  int64_t P = 0;
};

// One time step of one layer-direction, input and recurrent products fused (FusedRNNCell, and
// FusedRNN where stepping beats the hoisted input GEMM):
//   h_new = cell(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
// All tensors contiguous, row-major, in the storage dtype.
//   x (B, I), h (B, H), w_ih (G·H, I), w_hh (G·H, H) as nn.RNNCell stores them, b_ih / b_hh
//   (G·H,) or nullptr, h_new (B, H): written; never aliases x or h.
struct StepFwdParams {
  Cell cell;
  const void* x = nullptr;
  const void* h = nullptr;
  const void* w_ih = nullptr;
  const void* w_hh = nullptr;
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  void* h_new = nullptr;
  int64_t B = 0, I = 0, H = 0;
};

// Backward of one step, the sequential part fused: with g = dL/dh_new,
//   dz = the cell's backward of g (Elman: g ⊙ act'(h_new))
//   grad_x = dz W_ih,  grad_h = dz W_hh
// The weight and bias gradients (dzᵀ x, dzᵀ h, Σ dz) are GEMMs over dz, done by the caller.
//   grad_h_new (B, H), h_new (B, H), w_ih (G·H, I), w_hh (G·H, H): read.
//   dz (B, G·H): written. grad_x (B, I), grad_h (B, H): written, or nullptr when not wanted.
struct StepBwdParams {
  Cell cell;
  const void* grad_h_new = nullptr;
  const void* h_new = nullptr;
  const void* w_ih = nullptr;
  const void* w_hh = nullptr;
  void* dz = nullptr;
  void* grad_x = nullptr;
  void* grad_h = nullptr;
  int64_t B = 0, I = 0, H = 0;
};

}  // namespace rnnfused
