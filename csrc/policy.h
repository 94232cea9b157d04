// rnnfused: every kernel and path decision, in one place. The kernels (csrc/cpu/, csrc/cuda/)
// run what they are told; the host code (csrc/host/) asks here which. Each decision honours its
// environment switch (switches.h) first, then the rule measured for it (the measurements are
// named beside each rule in policy.cpp).
#pragma once
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>

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

// The driver refused the persistent kernel's cooperative launch of `ctas` CTAs (`why`: its
// error), a launch the plan had found co-resident: fewer SMs than the device reports may be
// available (MPS, a green context, another kernel resident), or a CUDA-graph capture did not
// allow it. Nothing ran. With RNNFUSED_KERNEL=persistent this raises (c10::Error); where the
// refusal invalidated a graph capture (`fatal`) too. Otherwise it warns, once per device and
// reason, and returns: the caller runs the stepwise kernel, now and (the plan forgotten) later.
// `device`: tells devices apart (DeviceProps::id).
// (Inline, as cuda_use_persistent: the emulator's standalone checker links no policy.cpp.)
inline void cuda_persistent_refused(bool backward, int64_t B, int64_t H, int64_t ctas, const std::string& why,
                                    bool fatal, int device) {
  const char* pass = backward ? "backward" : "forward";
  TORCH_CHECK(!fatal, "rnnfused: the cooperative launch of the persistent ", pass, " kernel (", ctas,
              " CTAs; batch ", B, ", hidden_size ", H, ") was refused during CUDA-graph capture (", why,
              ") and the refusal invalidated the capture. Capture again: this size now runs the stepwise "
              "kernel (or set RNNFUSED_KERNEL=stepwise).");
  TORCH_CHECK(switches::cuda_kernel() != switches::CudaKernel::Persistent,
              "rnnfused: RNNFUSED_KERNEL=persistent, but the driver refused the cooperative launch of the "
              "persistent ", pass, " kernel (", ctas, " CTAs; batch ", B, ", hidden_size ", H, "): ", why,
              ". Fewer SMs may be available than the device reports (MPS, a green context, another kernel "
              "resident). Unset RNNFUSED_KERNEL (or set it to auto or stepwise) to use the stepwise kernel.");
  static std::mutex mu;
  static std::set<std::pair<int, std::string>> warned;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!warned.emplace(device, why).second) return;
  }
  TORCH_WARN("rnnfused: the driver refused the cooperative launch of the persistent ", pass, " kernel (",
             ctas, " CTAs; batch ", B, ", hidden_size ", H, "): ", why, ". Running the stepwise kernel "
             "instead, for this size from now on (this warning is shown once per device and reason; "
             "RNNFUSED_KERNEL=stepwise chooses that kernel outright).");
}

}  // namespace policy
}  // namespace rnnfused
