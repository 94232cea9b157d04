// rnnfused: the Elman cell (nn.RNN, nn.RNNCell), as a definition (csrc/cells/cell.h).
//
//   z  = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh          one gate block (kGates = 1)
//   h' = act(z),  act = tanh or relu              no second state
// Backward, with dh everything that flows into h' (the output's gradient and the next step's):
//   dz = dh ⊙ act'(h'),  act' from the output: tanh' = 1 - h'², relu' = [h' > 0]
// So the backward needs nothing saved beyond the outputs h_t themselves. Both biases fold into
// the hoisted input projection (nothing stays with the recurrent product).
#pragma once
#include "cell.h"

namespace rnnfused {

struct Elman {
  static constexpr CellKind kKind = CellKind::Elman;
  static constexpr int kGates = 1;
  static constexpr bool kHasC = false;

  // h' from the summed pre-activation z.
  template <class M, class V>
  RNNF_HD static V forward(const V& z, Act act) {
    return act == Act::Relu ? M::relu(z) : M::tanh(z);
  }

  // dL/dz from dL/dh' (dh) and h'.
  template <class M, class V>
  RNNF_HD static V backward(const V& dh, const V& h, Act act) {
    return act == Act::Relu ? dh * M::relu_grad(h) : dh * (V(1) - h * h);
  }
};

}  // namespace rnnfused
