// rnnfused: the CPU kernels' entry points. They run the path they are given; csrc/policy.cpp
// decides which (and calls cpu_fused_beats_gemm to time the recurrence's two paths once per
// shape). dtype: kFloat or kDouble (the host runs half types through float).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

#include "../rnn.h"

namespace rnnfused {
namespace policy {
struct CpuSeqPath;
}

// The recurrence of one layer-direction (rnn.h: SeqFwdParams, SeqBwdParams), on `path`.
void seq_fwd_cpu(const SeqFwdParams& p, c10::ScalarType dtype, const policy::CpuSeqPath& path);
void seq_bwd_cpu(const SeqBwdParams& p, c10::ScalarType dtype, const policy::CpuSeqPath& path);
// Whether the fused recurrence beats a BLAS call per step for this shape, timed here on scratch
// data of that shape (a few ms).
bool cpu_fused_beats_gemm(int64_t B, int64_t H, c10::ScalarType dtype, bool backward, int64_t shares,
                          bool panel);

// One fused cell step and its backward (rnn.h: StepFwdParams, StepBwdParams): the fused cell
// kernel, or (fused = false) the same arithmetic through ATen's BLAS.
void step_fwd_cpu(const StepFwdParams& p, c10::ScalarType dtype, bool fused);
void step_bwd_cpu(const StepBwdParams& p, c10::ScalarType dtype, bool fused);

// The hoisted input projection of a layer-direction, out = x W_ihᵀ + b_ih + b_hh: x (rows, I) and
// out (rows, G·H) row-major and contiguous, w_ih (G·H, I) as nn.RNN stores it, either bias may be
// null. own: rnnfused's panel kernel (W_ih packed once, both biases fused); else one BLAS addmm.
void input_proj_cpu(const void* x, const void* w_ih, const void* b_ih, const void* b_hh, void* out,
                    int64_t rows, int64_t I, int64_t H, c10::ScalarType dtype, bool own);

// The instruction set the CPU kernels use for this call ("avx2", "avx512", "default", "vec16"):
// RNNFUSED_CPU_ISA if set (raises if the processor lacks it), else the best the processor has;
// and the same as a number (cpu::Isa), for caches keyed on it.
const char* cpu_isa_name();
int cpu_isa_id();

}  // namespace rnnfused
