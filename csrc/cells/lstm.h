// rnnfused: the LSTM cell (nn.LSTM, nn.LSTMCell), as a definition (csrc/cells/cell.h).
//
//   z  = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh           four gate blocks (kGates = 4), PyTorch's order:
//   i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)
//   c' = f ⊙ c + i ⊙ g                             the second state (kHasC)
//   h̃' = o ⊙ tanh(c')
//   h' = h̃' W_hrᵀ with a projection (nn.LSTM's proj_size > 0: W_hr (P, H), so h is P wide and
//        W_hh is (4H, P)); h' = h̃' without one. The projection is a product, not pointwise: the
//        kernels run it, the cell does not see it.
// Backward of one unit, with dh̃ = dL/dh̃' (everything that flows into h̃': the output's gradient
// and the next step's, through W_hr where projected) and dc = the carried dL/dc':
//   dc' = dc + dh̃ ⊙ o ⊙ (1 - tanh²(c'))
//   dz_i = dc' ⊙ g ⊙ i(1 - i),  dz_f = dc' ⊙ c ⊙ f(1 - f),  dz_g = dc' ⊙ i ⊙ (1 - g²),
//   dz_o = dh̃ ⊙ tanh(c') ⊙ o(1 - o)
//   dL/dc = dc' ⊙ f                                 carried to the previous step
// So the backward needs the gate activations (i, f, g, o), c and the previous c: the forward
// saves the activations (T, B, 4H) in place of the pre-activations, and c_t (T, B, H).
#pragma once
#include "cell.h"

namespace rnnfused {

struct LSTM {
  static constexpr CellKind kKind = CellKind::LSTM;
  static constexpr int kGates = 4;
  static constexpr bool kHasC = true;

  // One vector of units: z[0..4) the gate pre-activations (i, f, g, o), c the previous cell
  // state. Writes the activations a[0..4), the new cell state c_new and h̃ (before any projection).
  template <class M, class V>
  RNNF_HD static void forward(const V* z, const V& c, V* a, V& c_new, V& h) {
    a[0] = M::sigmoid(z[0]);
    a[1] = M::sigmoid(z[1]);
    a[2] = M::tanh(z[2]);
    a[3] = M::sigmoid(z[3]);
    c_new = a[1] * c + a[0] * a[2];
    h = a[3] * M::tanh(c_new);
  }

  // One vector of units: dh = dL/dh̃, dc (in) the carried dL/dc of this step's c (out: dL/dc of
  // the previous state), a the saved activations, c_prev and c this step's states. Writes
  // dz[0..4) = dL/dz for the four gates.
  template <class M, class V>
  RNNF_HD static void backward(const V& dh, V& dc, const V* a, const V& c_prev, const V& c, V* dz) {
    const V one(1);
    const V tc = M::tanh(c);
    const V dcc = dc + dh * a[3] * (one - tc * tc);
    dz[0] = dcc * a[2] * a[0] * (one - a[0]);
    dz[1] = dcc * c_prev * a[1] * (one - a[1]);
    dz[2] = dcc * a[0] * (one - a[2] * a[2]);
    dz[3] = dh * tc * a[3] * (one - a[3]);
    dc = dcc * a[1];
  }
};

}  // namespace rnnfused
