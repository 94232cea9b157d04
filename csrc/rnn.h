// rnnfused: plain parameter structs shared by the CPU and CUDA kernels.
// No ATen here: raw pointers, sizes and flags only (the flash-attention / mamba habit).
// ops.cpp validates the tensors, allocates, fills these structs and dispatches.
#pragma once
#include <cstdint>

namespace rnnfused {

// What the forward and backward share: sizes, flags, lengths and the workspace.
struct RNNCommon {
  const int64_t* lengths = nullptr;  // see RNNFwdParams
  // Workspace (2, B, H) in the accumulation type (float for float/half/bfloat16, double for
  // double), allocated by ops.cpp: the running state (forward) or dL/dh (backward), ping-ponged
  // between steps where a kernel needs that. Contents on entry are undefined.
  void* state = nullptr;
  int64_t T = 0, B = 0, H = 0;
  bool relu = false;
  bool reverse = false;
};

// One layer, one direction, whole sequence: the sequential part of the forward pass.
//
// All tensors are contiguous, time-major.
//   out     (T, B, H)  on entry: pre_t = x_t W_ihᵀ + b_ih + b_hh (the hoisted input projection);
//                      on exit:  h_t (zero where item b is inactive at step t).
//   h0      (B, H)     initial state.
//   w_hh    (H, H)     row-major, as nn.RNN stores weight_hh_l{k}.
//   hn      (B, H)     last state of each item (h at its last active step, h0 if length 0).
//   lengths (B,)       int64 per-item lengths on the kernel's device, or nullptr (all = T).
//                      Item b is active at step t iff t < lengths[b]. The forward direction
//                      walks t = 0..T-1, the reverse direction t = T-1..0 (starting from h0 at
//                      t = lengths[b]-1). Lengths must lie in [0, T]: the CPU raises otherwise,
//                      CUDA clamps (it cannot check without a host sync); module.py always
//                      passes valid lengths.
struct RNNFwdParams : RNNCommon {
  void* out = nullptr;
  const void* h0 = nullptr;
  const void* w_hh = nullptr;
  void* hn = nullptr;
};

// Backward of the sequential part (BPTT) for one layer, one direction.
//   grad_out (T, B, H) dL/d out, or nullptr (treated as zeros).
//   grad_hn  (B, H)    dL/d h_n, or nullptr (treated as zeros).
//   out      (T, B, H) forward outputs h_t (act' is computed from them).
//   w_hh     (H, H)
//   dz       (T, B, H) written: dL/d z_t, zero where the item is inactive.
//   dz_first (B, H)    written: dz at each item's first processed step, the step whose previous
//                      state is h0 (t = 0 forward, t = lengths[b]-1 reverse; zero if length 0).
//   grad_h0  (B, H)    written: dL/d h0.
struct RNNBwdParams : RNNCommon {
  const void* grad_out = nullptr;
  const void* grad_hn = nullptr;
  const void* out = nullptr;
  const void* w_hh = nullptr;
  void* dz = nullptr;
  void* dz_first = nullptr;
  void* grad_h0 = nullptr;
};

// One time step of one layer-direction, input and recurrent products fused (FusedRNNCell, and
// FusedRNN where stepping beats the hoisted input GEMM):
//   h_new = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
// All tensors contiguous, row-major, in the storage dtype.
//   x (B, I), h (B, H), w_ih (H, I), w_hh (H, H) as nn.RNNCell stores them, b_ih / b_hh (H,) or
//   nullptr, h_new (B, H): written; never aliases x or h.
struct RNNCellParams {
  const void* x = nullptr;
  const void* h = nullptr;
  const void* w_ih = nullptr;
  const void* w_hh = nullptr;
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  void* h_new = nullptr;
  int64_t B = 0, I = 0, H = 0;
  bool relu = false;
};

// Backward of one cell step, the sequential part fused: with g = dL/dh_new,
//   dz = g ⊙ act'(h_new)   (act' from the output: tanh → 1 - h², relu → h > 0)
//   grad_x = dz W_ih,  grad_h = dz W_hh
// The weight and bias gradients (dzᵀ x, dzᵀ h, Σ dz) are GEMMs over dz, done by the caller.
//   grad_h_new (B, H), h_new (B, H), w_ih (H, I), w_hh (H, H): read.
//   dz (B, H): written. grad_x (B, I), grad_h (B, H): written, or nullptr when not wanted.
struct RNNCellBwdParams {
  const void* grad_h_new = nullptr;
  const void* h_new = nullptr;
  const void* w_ih = nullptr;
  const void* w_hh = nullptr;
  void* dz = nullptr;
  void* grad_x = nullptr;
  void* grad_h = nullptr;
  int64_t B = 0, I = 0, H = 0;
  bool relu = false;
};

}  // namespace rnnfused
