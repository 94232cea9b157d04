// rnnfused CPU: the recurrence of a cell with gate blocks and a second state (C::kHasC: the
// LSTM), forward and backward on the BLAS path (rnn_cpu_lstm.cpp). rnn_cpu.cpp's entry points
// (seq_fwd_cpu, seq_bwd_cpu) send such cells here; T float or double.
#pragma once
#include "../rnn.h"

namespace rnnfused {
namespace cpu {

template <typename T, class C>
void gated_seq_fwd(const SeqFwdParams& p);
template <typename T, class C>
void gated_seq_bwd(const SeqBwdParams& p);

}  // namespace cpu
}  // namespace rnnfused
