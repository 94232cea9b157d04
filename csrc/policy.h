// rnnfused: every kernel and path decision, in one place. The kernels (csrc/cpu/, csrc/cuda/)
// run what they are told; the host code (csrc/host/) asks here which. Each decision honours its
// environment switch (switches.h) first, then the rule measured for it (the measurements are
// named beside each rule in policy.cpp).
#pragma once
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

#include "cells/cell.h"
#include "switches.h"

namespace rnnfused {
namespace policy {

// How a layer-direction's input product is done:
//  - Hoist: one GEMM for all T·B rows (x W_ihᵀ + b, into the output buffer), then the recurrence
//    kernel: for long sequences, where the GEMM's efficiency pays for its fixed cost.
//  - Step: one fused cell kernel per step (input product, recurrent product, biases, cell
//    update): for short sequences, where the GEMM call, the bias add and the recurrence kernel's
//    own set-up cost more than the input product itself.
// Step needs unpacked input (no lengths). RNNFUSED_INPUT_MODE forces one.
enum class InputMode { Step, Hoist };
InputMode input_mode(bool cuda, int64_t T, int64_t B, int64_t I, int64_t H, bool masked);

// The CPU cell step (and its backward): the fused cell kernel, or BLAS GEMMs.
bool cpu_step_fused(int64_t B, int64_t I, int64_t H, bool backward);
// Threads the fused CPU cell kernel splits a product of `work` multiply-adds over N columns across.
int64_t cpu_step_threads(int64_t work, int64_t N);

// The CPU hoisted input projection: rnnfused's panel kernel (true) or BLAS plus the bias add.
bool cpu_proj_own(int64_t rows, int64_t I, int64_t H);

// The CPU recurrence of one layer-direction.
struct CpuSeqPath {
  bool fused = true;   // the fused kernels (else a BLAS call per step)
  int64_t shares = 1;  // threads the fused path splits each step's columns across
  bool panel = false;  // fused path: the panel form (else the dot form forward, the broadcast
                       // form over W_hh as stored backward)
};
// isa: the CPU kernels' instruction set now (cpu::Isa as an int; the timing cache keys on it).
// cell: the LSTM has its own rule (panel form only, backward on one thread).
CpuSeqPath cpu_seq_path(const Cell& cell, int64_t B, int64_t H, c10::ScalarType dtype,
                        bool backward, int isa);

// The CUDA recurrence: the persistent kernel wherever it has a plan, the stepwise kernel
// otherwise; RNNFUSED_KERNEL forces one. `plan()` returns (ok, why not) and is called only when
// the answer depends on it; persistent forced where it cannot run raises with the reason.
template <class PlanFn>
bool cuda_use_persistent(bool backward, int64_t B, int64_t H, const PlanFn& plan) {
  const switches::CudaKernel mode = switches::cuda_kernel();
  if (mode == switches::CudaKernel::Stepwise) return false;
  const auto [ok, why] = plan();
  if (mode == switches::CudaKernel::Persistent) {
    TORCH_CHECK(ok, "rnnfused: RNNFUSED_KERNEL=persistent, but the persistent ",
                backward ? "backward" : "forward", " kernel cannot run batch ", B, ", hidden_size ", H,
                " on this device: ", why, ". Unset RNNFUSED_KERNEL (or set it to auto or "
                "stepwise) to use the stepwise kernel.");
  }
  return ok;
}

}  // namespace policy
}  // namespace rnnfused
