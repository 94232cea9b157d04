// rnnfused: the CPU side of the sequential recurrence (forward and backward).
#pragma once
#include <c10/core/ScalarType.h>

#include "../rnn.h"

namespace rnnfused {

// dtype: kFloat or kDouble (ops.cpp runs half types through float on the CPU).
void rnn_fwd_cpu(const RNNFwdParams& p, c10::ScalarType dtype);
void rnn_bwd_cpu(const RNNBwdParams& p, c10::ScalarType dtype);
// One fused cell step and its backward (rnn.h: RNNCellParams, RNNCellBwdParams).
void rnn_cell_fwd_cpu(const RNNCellParams& p, c10::ScalarType dtype);
void rnn_cell_bwd_cpu(const RNNCellBwdParams& p, c10::ScalarType dtype);

}  // namespace rnnfused
