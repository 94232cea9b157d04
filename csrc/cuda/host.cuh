// rnnfused: the host side of the CUDA recurrence — the heuristic that picks a kernel, the plan
// caches, and the launchers. Included once per storage type by rnn_f32.cu / rnn_f64.cu /
// rnn_f16.cu / rnn_bf16.cu (one instantiation each, so builds run in parallel).
//
// Kernels (device/*.cuh, device code only), each templated on the storage type T and the cell
// (csrc/cells/: Elman), whose pointwise forward / backward is the kernel's epilogue:
//  1. step_kernel<T, Cell, BWD, Cfg> (device/step.cuh): one launch per step; a tiled (batch x H)
//     GEMM over K = H with the whole step fused into it. Any B, any H: the general fallback.
//  2. persist_kernel<T, Cell, BWD> (device/persist.cuh): one launch for all T steps, W_hh
//     resident in shared memory, groups of G CTAs meeting at one barrier per step where G > 1
//     (cooperative launch). Plans: plan.h, pure functions of the device's properties.
//  3. cell_fwd_kernel<T, Cell> / cell_bwd_kernel<T, Cell> (device/cell.cuh): one step with the
//     input product fused in (FusedRNNCell), forward and the sequential part of the backward.
// The heuristic: persistent wherever it has a plan, stepwise otherwise (policy::cuda_use_persistent;
// RNNFUSED_KERNEL forces one).
//
// The runtime cell of the params (rnn.h: p.cell.kind) becomes the kernels' template parameter in
// RNNFUSED_CELL_SWITCH (csrc/cells/switch.h, shared with the CPU kernels), and nowhere else; each
// entry point of a storage type (fwd_impl<T>, ...) switches once, so a new cell is instantiated
// here by its case in switch.h, not by a file of its own. A cell the kernels cannot run yet
// (kCudaRunsCell below: the LSTM) is refused there at run time.
//
// Runtime calls go through namespace rt: runtime_cuda.cuh on a GPU, csrc/emu/runtime_emu.h under
// the SIMT emulator (RNNFUSED_EMULATE), so this file runs unchanged in both.
#pragma once

#include <c10/util/Exception.h>

#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

#include "../cells/switch.h"
#include "../policy.h"
#include "../rnn.h"
#include "archs.h"
#include "device/cell.cuh"
#include "device/persist.cuh"
#include "device/step.cuh"
#include "launch.h"
#include "plan.h"
#ifdef RNNFUSED_EMULATE
#include "../emu/runtime_emu.h"
#else
#include "runtime_cuda.cuh"
#endif

namespace rnnfused {
namespace cuda_detail {

static_assert(kKChunk == kPersistKChunk, "plan.h and device/persist.cuh must agree on the k chunk");

// ------------------------------------------------------------------------------------------------
// The device: code for it, once per device (the first CUDA call on a GPU without code raises,
// naming the capabilities this build has and how to rebuild, instead of failing deep inside a
// launch).

// Probed with a kernel of this storage type's own file (each rnn_<dtype>.cu is one module);
// a device found good is remembered (per process, and per thread for the common case of one).
template <typename T>
void ensure_device_code() {
  const int dev = rt::current_device();
  const int id = rt::device_props(dev).id;
  static thread_local int last_good = -1;
  if (id == last_good) return;
  static std::mutex mu;
  static std::set<int> good;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (good.count(id)) {
      last_good = id;
      return;
    }
  }
  const rt::DeviceCode c = rt::device_code(step_kernel<T, Elman, false, StepSmall>, dev);
  TORCH_CHECK(c.ok, no_code_message(c.name, c.major, c.minor, built_archs()));
  std::lock_guard<std::mutex> lock(mu);
  good.insert(id);
  last_good = id;
}

// ------------------------------------------------------------------------------------------------
// Plans and the heuristic.

// The persistent kernel's plans of one instantiation, per (device, B, H). A plan whose
// cooperative launch the driver refused is replaced by a failed one (forget_plan), so that later
// calls go to the stepwise kernel at once instead of failing again.
struct PlanCache {
  std::mutex mu;
  std::map<std::tuple<int, int64_t, int64_t>, PersistPlan> plans;
};
template <typename T, typename Cell, bool BWD>
PlanCache& plan_cache() {
  static PlanCache c;
  return c;
}

template <typename T, typename Cell, bool BWD>
PersistPlan persistent_plan(int64_t B, int64_t H) {
  constexpr int NT = PersistThreads<acc_t<T>>::value;
  const int dev = rt::current_device();
  const DeviceProps d = rt::device_props(dev);
  PlanCache& cache = plan_cache<T, Cell, BWD>();
  const auto key = std::make_tuple(d.id, B, H);
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.plans.find(key);
    if (it != cache.plans.end()) return it->second;
  }
  auto kernel = persist_kernel<T, Cell, BWD>;
  const KernelAttrs k = rt::kernel_attrs(kernel, NT, 1, dev);
  // Co-resident CTAs per SM from the driver's occupancy calculator (the emulator: CUDA's rule).
  auto occ = [&](int64_t smem) { return rt::coresident_blocks_per_sm(kernel, NT, smem, dev); };
  PersistPlan pl = plan_persistent(B, H, sizeof(T), sizeof(acc_t<T>), NT, d, k, occ);
  std::lock_guard<std::mutex> lock(cache.mu);
  if (cache.plans.size() > 4096) cache.plans.clear();
  cache.plans.emplace(key, pl);
  return pl;
}

template <typename T, typename Cell, bool BWD>
void forget_plan(int64_t B, int64_t H, const std::string& why) {
  const int id = rt::device_props(rt::current_device()).id;
  PlanCache& cache = plan_cache<T, Cell, BWD>();
  PersistPlan failed;
  failed.why = "the driver refused its cooperative launch (" + why + ")";
  std::lock_guard<std::mutex> lock(cache.mu);
  cache.plans[std::make_tuple(id, B, H)] = failed;
}

// The heuristic is policy::cuda_use_persistent (csrc/policy.h): persistent wherever it has a
// plan, stepwise otherwise; RNNFUSED_KERNEL forces one (persistent forced where impossible raises).
template <typename T, typename Cell, bool BWD>
bool choose_persistent(int64_t B, int64_t H, PersistPlan* plan_out) {
  return policy::cuda_use_persistent(BWD, B, H, [&] {
    const PersistPlan pl = persistent_plan<T, Cell, BWD>(B, H);
    if (plan_out) *plan_out = pl;
    return std::make_pair(pl.ok, pl.why);
  });
}

// ------------------------------------------------------------------------------------------------
// Launchers.

template <typename T, typename Cell, bool BWD>
void launch_stepwise(Args<T> a, rt::Stream stream) {
  const bool large = a.B > 32;
  const int64_t gx = ceil_div(a.B, large ? StepLarge::BM : StepSmall::BM);
  const int64_t gy = ceil_div(a.H, large ? StepLarge::BN : StepSmall::BN);
  TORCH_CHECK(gy <= 65535 && gx <= INT32_MAX, "rnnfused: sizes too large for the stepwise grid");
  rt::LaunchSpec spec;
  spec.grid = dim3((unsigned)gx, (unsigned)gy);
  spec.block = dim3(StepSmall::NT);
  spec.stream = stream;
  spec.name = BWD ? "step_kernel (backward)" : "step_kernel (forward)";
  for (int64_t s = 0; s < a.steps; ++s) {
    a.s = s;
    if (large) rt::launch(step_kernel<T, Cell, BWD, StepLarge>, spec, a);
    else rt::launch(step_kernel<T, Cell, BWD, StepSmall>, spec, a);
  }
}

// Launches the persistent kernel on its plan. A plan with a CTA group (G > 1) meets at a barrier
// every step, so its CTAs must all be resident at once: a cooperative launch, which the driver
// may refuse (the status says why; nothing ran). Never a plain launch of such a grid: with no
// co-residency guarantee its barrier can wait forever.
template <typename T, typename Cell, bool BWD>
rt::LaunchStatus launch_persistent(Args<T> a, const PersistPlan& pl, rt::Stream stream) {
  a.G = pl.G; a.R = pl.R; a.BBg = pl.BBg; a.BC = pl.BC; a.Hp = pl.Hp;
  std::unique_ptr<rt::Scratch> counters;
  if (pl.G > 1) {
    // One counter per batch group, zeroed on the stream (capturable); allocated on the launch's
    // stream and freed, stream-ordered on it, after the launch is enqueued.
    counters = std::make_unique<rt::Scratch>(sizeof(unsigned) * pl.NBg, stream);
    rt::memset_async(counters->get(), 0, sizeof(unsigned) * pl.NBg, stream);
    a.counters = static_cast<unsigned*>(counters->get());
  }
  auto kernel = persist_kernel<T, Cell, BWD>;
  rt::allow_dynamic_smem(kernel, pl.smem, rt::current_device());
  rt::LaunchSpec spec;
  spec.grid = dim3((unsigned)(pl.G * pl.NBg));
  spec.block = dim3(pl.threads);
  spec.smem = (size_t)pl.smem;
  spec.stream = stream;
  spec.name = BWD ? "persist_kernel (backward)" : "persist_kernel (forward)";
  if (pl.G > 1) return rt::launch_cooperative(kernel, spec, a);
  rt::launch(kernel, spec, a);
  return rt::LaunchStatus();
}

// The recurrence of one pass: the persistent kernel where the heuristic picks it and the driver
// takes its launch, else the stepwise kernel. A refused cooperative launch is remembered (the
// plan is replaced by a failed one) and handled by policy::cuda_persistent_refused: a one-time
// warning and the stepwise kernel in auto mode, an error where RNNFUSED_KERNEL=persistent.
template <typename T, typename Cell, bool BWD>
void run_recurrence(const Args<T>& a, rt::Stream stream) {
  PersistPlan pl;
  if (choose_persistent<T, Cell, BWD>(a.B, a.H, &pl)) {
    const rt::LaunchStatus st = launch_persistent<T, Cell, BWD>(a, pl, stream);
    if (st.ok) return;
    forget_plan<T, Cell, BWD>(a.B, a.H, st.why);
    policy::cuda_persistent_refused(BWD, a.B, a.H, pl.G * pl.NBg, st.why, st.fatal,
                                    rt::device_props(rt::current_device()).id);
  }
  launch_stepwise<T, Cell, BWD>(a, stream);
}

// The kernel arguments both passes fill alike, from rnn.h's SeqCommon.
template <typename T>
Args<T> common_args(const SeqCommon& p) {
  Args<T> a;
  a.lengths = p.lengths;
  a.state = static_cast<acc_t<T>*>(p.state);
  a.steps = p.T;
  a.B = p.B;
  a.H = p.H;
  a.act = p.cell.act;
  a.reverse = p.reverse;
  return a;
}

template <typename T, typename Cell>
void seq_fwd(const SeqFwdParams& p, void* stream_) {
  const auto stream = static_cast<rt::Stream>(stream_);
  if (p.B == 0 || p.H == 0) return;
  const size_t bytes = sizeof(T) * p.B * p.H;
  if (p.T == 0) {  // h_n = h0
    rt::memcpy_async(p.hn, p.h0, bytes, stream);
    return;
  }
  // Contents undefined on entry: every element must be written before it is read.
  rt::poison(p.state, 2 * sizeof(acc_t<T>) * p.B * p.H, stream);
  rt::poison(p.hn, bytes, stream);
  Args<T> a = common_args<T>(p);
  a.out = static_cast<T*>(p.out);
  a.w = static_cast<const T*>(p.w_hh);
  a.vec0 = static_cast<const T*>(p.h0);
  a.last = static_cast<T*>(p.hn);
  run_recurrence<T, Cell, false>(a, stream);
}

template <typename T, typename Cell>
void seq_bwd(const SeqBwdParams& p, void* stream_) {
  const auto stream = static_cast<rt::Stream>(stream_);
  if (p.B == 0 || p.H == 0) return;
  const size_t bytes = sizeof(T) * p.B * p.H;
  if (p.T == 0) {  // grad_h0 = grad_hn (or 0), dz_first = 0
    if (p.grad_hn) rt::memcpy_async(p.grad_h0, p.grad_hn, bytes, stream);
    else rt::memset_async(p.grad_h0, 0, bytes, stream);
    rt::memset_async(p.dz_first, 0, bytes, stream);
    return;
  }
  rt::poison(p.state, 2 * sizeof(acc_t<T>) * p.B * p.H, stream);
  rt::poison(p.dz, bytes * p.T, stream);
  rt::poison(p.grad_h0, bytes, stream);
  rt::poison(p.dz_first, bytes, stream);
  Args<T> a = common_args<T>(p);
  a.out = const_cast<T*>(static_cast<const T*>(p.out));  // read only in the backward kernels
  a.w = static_cast<const T*>(p.w_hh);
  a.vec0 = static_cast<const T*>(p.grad_hn);
  a.gout = static_cast<const T*>(p.grad_out);
  a.dz = static_cast<T*>(p.dz);
  a.dz_first = static_cast<T*>(p.dz_first);
  a.last = static_cast<T*>(p.grad_h0);
  run_recurrence<T, Cell, true>(a, stream);
}

// One cell step (rnn.h: StepFwdParams / StepBwdParams).
template <typename T>
CellArgs<T> cell_args(int64_t B, int64_t I, int64_t H, const void* w_ih, const void* w_hh, Act act) {
  CellArgs<T> a;
  a.B = B;
  a.I = I;
  a.H = H;
  a.w_ih = static_cast<const T*>(w_ih);
  a.w_hh = static_cast<const T*>(w_hh);
  a.act = act;
  return a;
}

template <typename T, typename Cell>
void step_fwd(const StepFwdParams& p, void* stream) {
  if (p.B == 0 || p.H == 0) return;
  CellArgs<T> a = cell_args<T>(p.B, p.I, p.H, p.w_ih, p.w_hh, p.cell.act);
  a.x = static_cast<const T*>(p.x);
  a.h = static_cast<const T*>(p.h);
  a.b_ih = static_cast<const T*>(p.b_ih);
  a.b_hh = static_cast<const T*>(p.b_hh);
  a.h_new = static_cast<T*>(p.h_new);
  rt::poison(p.h_new, sizeof(T) * p.B * p.H, static_cast<rt::Stream>(stream));
  const int64_t blocks = ceil_div(p.H, kCellThreads / 32);
  TORCH_CHECK(blocks <= INT32_MAX, "rnnfused: hidden_size too large for the cell kernel");
  rt::LaunchSpec spec;
  spec.grid = dim3((unsigned)blocks);
  spec.block = dim3(kCellThreads);
  spec.stream = static_cast<rt::Stream>(stream);
  spec.name = "cell_fwd_kernel";
  rt::launch(cell_fwd_kernel<T, Cell>, spec, a);
}

template <typename T, typename Cell>
void step_bwd(const StepBwdParams& p, void* stream) {
  if (p.B == 0 || p.H == 0) {
    if (p.grad_x && p.B * p.I > 0) rt::memset_async(p.grad_x, 0, sizeof(T) * p.B * p.I, static_cast<rt::Stream>(stream));
    return;
  }
  CellArgs<T> a = cell_args<T>(p.B, p.I, p.H, p.w_ih, p.w_hh, p.cell.act);
  a.grad = static_cast<const T*>(p.grad_h_new);
  a.h_new = const_cast<T*>(static_cast<const T*>(p.h_new));  // read only here
  a.dz = static_cast<T*>(p.dz);
  a.grad_x = static_cast<T*>(p.grad_x);
  a.grad_h = static_cast<T*>(p.grad_h);
  const auto s = static_cast<rt::Stream>(stream);
  rt::poison(p.dz, sizeof(T) * p.B * p.H, s);
  if (p.grad_x) rt::poison(p.grad_x, sizeof(T) * p.B * p.I, s);
  if (p.grad_h) rt::poison(p.grad_h, sizeof(T) * p.B * p.H, s);
  // One thread per output column of [grad_x | grad_h]; dz (B·H elements) is stored by the whole
  // grid, grid-stride, so the grid is also sized for it (capped: the stride covers the rest).
  const int64_t cols = (p.grad_x ? p.I : 0) + (p.grad_h ? p.H : 0);
  const int64_t blocks = std::max<int64_t>({1, ceil_div(cols, kCellThreads),
                                            std::min<int64_t>(ceil_div(p.B * p.H, kCellThreads), 65535)});
  TORCH_CHECK(blocks <= INT32_MAX, "rnnfused: sizes too large for the cell kernel");
  rt::LaunchSpec spec;
  spec.grid = dim3((unsigned)blocks);
  spec.block = dim3(kCellThreads);
  spec.stream = s;
  spec.name = "cell_bwd_kernel";
  rt::launch(cell_bwd_kernel<T, Cell>, spec, a);
}

// Whether the CUDA kernels run cell C: one gate block, no second state (the kernels'
// static_asserts say how the others plug in). A cell without them (the LSTM, until its kernels
// are written) is refused at run time with a clear error, not instantiated; the host code does
// not send it here (backend::has_kernels: such tensors run the ATen composite).
template <class C>
constexpr bool kCudaRunsCell = C::kGates == 1 && !C::kHasC;

// The cell switch of the CUDA side: f.template operator()<C>() for the cells with kernels.
#define RNNFUSED_CUDA_CELL_SWITCH(KIND, C, ...)                                               \
  RNNFUSED_CELL_SWITCH(KIND, C, [&] {                                                     \
    if constexpr (kCudaRunsCell<C>) {                                                     \
      __VA_ARGS__();                                                                      \
    } else {                                                                              \
      TORCH_CHECK(false, "rnnfused: the CUDA kernels do not run this cell yet (kind ",   \
                  static_cast<int>(KIND), ": gates and a second state are a later step)"); \
    }                                                                                     \
  })

// The entry points of one storage type (launch.h): the cell switch, once per call.
template <typename T>
void fwd_impl(const SeqFwdParams& p, void* stream) {
  ensure_device_code<T>();
  RNNFUSED_CUDA_CELL_SWITCH(p.cell.kind, Cell, [&] { seq_fwd<T, Cell>(p, stream); });
}

template <typename T>
void bwd_impl(const SeqBwdParams& p, void* stream) {
  ensure_device_code<T>();
  RNNFUSED_CUDA_CELL_SWITCH(p.cell.kind, Cell, [&] { seq_bwd<T, Cell>(p, stream); });
}

template <typename T>
void cell_fwd_impl(const StepFwdParams& p, void* stream) {
  ensure_device_code<T>();
  RNNFUSED_CUDA_CELL_SWITCH(p.cell.kind, Cell, [&] { step_fwd<T, Cell>(p, stream); });
}

template <typename T>
void cell_bwd_impl(const StepBwdParams& p, void* stream) {
  ensure_device_code<T>();
  RNNFUSED_CUDA_CELL_SWITCH(p.cell.kind, Cell, [&] { step_bwd<T, Cell>(p, stream); });
}

// The kernel nn.RNN's cell (Elman) would run: cuda_kernel_name (rnn_cuda.h) takes no cell; it
// answers for FusedRNN, the one module with a sequence kernel.
template <typename T>
const char* kernel_name_impl(int64_t B, int64_t H, bool backward) {
  if (B <= 0 || H <= 0) return "stepwise";  // nothing runs; the launcher returns early
  ensure_device_code<T>();
  const bool pers = backward ? choose_persistent<T, Elman, true>(B, H, nullptr)
                             : choose_persistent<T, Elman, false>(B, H, nullptr);
  return pers ? "persistent" : "stepwise";
}

template <typename T, typename Cell, bool BWD>
PersistPlanInfo plan_info(int64_t B, int64_t H) {
  PersistPlanInfo info;
  const PersistPlan pl = persistent_plan<T, Cell, BWD>(B, H);
  info.ok = pl.ok;
  info.why = pl.why;
  if (!pl.ok) return info;
  const int dev = rt::current_device();
  const DeviceProps d = rt::device_props(dev);
  auto kernel = persist_kernel<T, Cell, BWD>;
  const KernelAttrs k = rt::kernel_attrs(kernel, pl.threads, 1, dev);
  info.G = pl.G;
  info.NBg = pl.NBg;
  info.threads = pl.threads;
  info.regs = k.regs_per_thread;
  info.sm_count = d.sm_count;
  info.smem = pl.smem;
  info.driver_per_sm = rt::coresident_blocks_per_sm(kernel, pl.threads, pl.smem, dev);
  info.rule_per_sm = blocks_per_sm(d, k, pl.threads, pl.smem);
  return info;
}

template <typename T>
PersistPlanInfo plan_info_impl(int64_t B, int64_t H, bool backward) {
  ensure_device_code<T>();
  return backward ? plan_info<T, Elman, true>(B, H) : plan_info<T, Elman, false>(B, H);
}

#define RNNFUSED_INSTANTIATE(T)                                  \
  template void fwd_impl<T>(const SeqFwdParams&, void*);         \
  template void bwd_impl<T>(const SeqBwdParams&, void*);         \
  template void cell_fwd_impl<T>(const StepFwdParams&, void*);   \
  template void cell_bwd_impl<T>(const StepBwdParams&, void*);   \
  template const char* kernel_name_impl<T>(int64_t, int64_t, bool); \
  template PersistPlanInfo plan_info_impl<T>(int64_t, int64_t, bool);

}  // namespace cuda_detail
}  // namespace rnnfused
