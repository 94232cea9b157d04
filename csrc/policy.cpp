// rnnfused: the kernel and path decisions (policy.h), with the measurements behind each rule.
#include "policy.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "cpu/rnn_cpu.h"

namespace rnnfused {
namespace policy {

// ------------------------------------------------------------------------------------------------
// Input mode.

// Largest T for which auto steps on the CPU. T = 1: always (one cell step, fused kernel or BLAS,
// costs less than the GEMM, the bias add and the recurrence kernel's set-up of the hoisted path);
// at T = 8 step and hoist were within the noise. Measured on a 2-core AMD EPYC (AVX2),
// bench/bench_stepping.py. On the CUDA path auto hoists: stepping there has not been measured on
// a GPU yet (bench/results/PENDING.md).
constexpr int64_t kCpuStepMaxT = 1;

InputMode input_mode(bool cuda, int64_t T, int64_t B, int64_t I, int64_t H, bool masked) {
  (void)B, (void)I, (void)H;
  if (masked || T == 0) return InputMode::Hoist;
  switch (switches::input_mode()) {
    case switches::InputMode::Step: return InputMode::Step;
    case switches::InputMode::Hoist: return InputMode::Hoist;
    case switches::InputMode::Auto: break;
  }
  if (cuda) return InputMode::Hoist;
  return T <= kCpuStepMaxT ? InputMode::Step : InputMode::Hoist;
}

// ------------------------------------------------------------------------------------------------
// The CPU cell step.

// Multiply-adds of one step, B·(I+H)·H, up to which the fused cell kernels (csrc/cpu/
// rnn_cpu_cell.cpp) beat ATen's BLAS on the CPU: forward (two GEMM calls, the bias add and the
// activation) and backward (dz, then two GEMM calls). Measured with one thread on a 2-core AMD
// EPYC (Zen 3, AVX2), bench/bench_stepping.py with RNNFUSED_CPU_KERNEL=fused and =gemm: the
// vectorised forward wins up to B=64, H=256 (2^23) and ties at B=64, H=512..1024; its backward
// (the broadcast form) wins up to about 2^21 and loses from B=64, H=256 on.
constexpr int64_t kStepFusedMaxWork = int64_t(1) << 24;
constexpr int64_t kStepBwdFusedMaxWork = int64_t(1) << 21;

bool cpu_step_fused(int64_t B, int64_t I, int64_t H, bool backward) {
  switch (switches::cpu_kernel()) {
    case switches::CpuKernel::Fused: return true;
    case switches::CpuKernel::Gemm: return false;
    case switches::CpuKernel::Auto: break;
  }
  return B * (I + H) * H <= (backward ? kStepBwdFusedMaxWork : kStepFusedMaxWork);
}

// One thread below about 2^20 multiply-adds (a fork costs a few µs), and inside a parallel region.
int64_t cpu_step_threads(int64_t work, int64_t N) {
  if (work < (int64_t(1) << 20) || at::in_parallel_region()) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N / 32));
}

// ------------------------------------------------------------------------------------------------
// The CPU input projection.

// Ours for I <= 128 and H <= 256, where the BLAS call plus the separate bias add cost more than
// the panel kernel with both biases fused (2-core AMD EPYC, AVX2, bench/bench_rnn.py).
bool cpu_proj_own(int64_t rows, int64_t I, int64_t H) {
  (void)rows;
  switch (switches::cpu_proj()) {
    case switches::CpuProj::Own: return true;
    case switches::CpuProj::Blas: return false;
    case switches::CpuProj::Auto: break;
  }
  return I <= 128 && H <= 256;
}

// ------------------------------------------------------------------------------------------------
// The CPU recurrence.
//
// Shares: the fused path splits a step's columns across the intra-op threads where a step has
// at least 2^16 multiply-adds (B·H²) and every thread gets at least 32 columns; below that the
// meeting per step (a few hundred ns) would eat the gain. One thread stays one thread, and so
// does a call from inside a parallel region. RNNFUSED_CPU_SPLIT=N forces N shares (tests).
//
// Form: the panel form for B > 1 (W_hh packed once per call; measured on the EPYC), the dot
// form for one row (no preparation). RNNFUSED_CPU_FORM forces one.
//
// Path: B·H² < 2^17: fused (a BLAS call per step costs more than the whole step). B·H² > 2^26:
// gemm (the BLAS's cache blocking wins; timing the choice there is too noisy: two timed steps of
// a 2^28 product chose wrong in a test run and made 256x1024 forward 0.97x nn.RNN). In between,
// the answer depends on the processor (its vector width, its BLAS, its caches): the first call
// with a given (B, H, dtype, direction, instruction set, threads) times both paths on scratch
// data of that shape (a few ms, once per process) and remembers the faster.
// RNNFUSED_CPU_KERNEL forces a path.

int64_t cpu_seq_shares(int64_t B, int64_t H) {
  const int64_t forced = switches::cpu_split();
  if (forced > 0) return std::min<int64_t>(forced, std::max<int64_t>(1, H / 16));
  if (at::in_parallel_region()) return 1;
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || B * H * H < (int64_t(1) << 16)) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(threads, H / 32));
}

bool cpu_seq_panel(int64_t B) {
  switch (switches::cpu_form()) {
    case switches::CpuForm::Panel: return true;
    case switches::CpuForm::Dot: return false;
    case switches::CpuForm::Auto: break;
  }
  return B > 1;
}

// The LSTM (CellKind::LSTM): the BLAS path, a GEMM per step (csrc/cpu/rnn_cpu_lstm.cpp), whatever
// RNNFUSED_CPU_KERNEL says: its fused forms (the four gate rows of a unit together in registers,
// epilogue.h) are not written yet. Nothing is timed for it. Its layer always hoists the input
// product (no fused cell step yet), and its cell op runs as a layer of one step.
CpuSeqPath cpu_seq_path(const Cell& cell, int64_t B, int64_t H, c10::ScalarType dtype,
                        bool backward, int isa) {
  CpuSeqPath c;
  if (cell.kind == CellKind::LSTM) {
    c.fused = false;
    return c;
  }
  c.shares = cpu_seq_shares(B, H);
  c.panel = cpu_seq_panel(B);
  switch (switches::cpu_kernel()) {
    case switches::CpuKernel::Fused: c.fused = true; return c;
    case switches::CpuKernel::Gemm: c.fused = false; return c;
    case switches::CpuKernel::Auto: break;
  }
  const int64_t work = B * H * H;
  if (work < (int64_t(1) << 17)) return c;
  if (work > (int64_t(1) << 26)) { c.fused = false; return c; }
  using Key = std::tuple<int64_t, int64_t, int, bool, int, int64_t, bool>;
  static std::mutex mu;
  static std::map<Key, bool> cache;
  const Key key{B, H, static_cast<int>(dtype), backward, isa, c.shares, c.panel};
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(key);
    if (it != cache.end()) { c.fused = it->second; return c; }
  }
  // Timed outside the lock (it runs ATen ops); two threads meeting a new shape at once both
  // time it, and agree or not: either answer is correct, only its speed differs.
  c.fused = cpu_fused_beats_gemm(B, H, dtype, backward, c.shares, c.panel);
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, c.fused);
  return c;
}

}  // namespace policy
}  // namespace rnnfused
