// rnnfused SIMT emulator: control ops of the test-only emulation extension (rnnfused_emu), for the
// tests: the schedule, the emulated device and its driver's test hooks (fewer SMs for launches,
// refused cooperative launches), the persistent kernel's plan for a device preset, and the
// emulator's and the driver's counters. Registered as torch ops in namespace rnnfused_emu_ctl.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../cuda/device/persist.cuh"
#include "../cuda/plan.h"
#include "runtime_emu.h"
#include "simt.h"

namespace rnnfused {
namespace cuda_detail {
namespace {

// schedule: "in-order", "reversed" or "random"; preempt_prob: the random schedule's chance of a
// switch at each primitive; memory_model: delayed cross-block visibility of unreleased stores.
void set_schedule(const std::string& schedule, int64_t seed, double preempt_prob, bool memory_model) {
  simt::Options o = simt::get_options();
  if (schedule == "in-order") o.schedule = simt::Schedule::kInOrder;
  else if (schedule == "reversed") o.schedule = simt::Schedule::kReverse;
  else if (schedule == "random") o.schedule = simt::Schedule::kRandom;
  else TORCH_CHECK(false, "rnnfused_emu: schedule must be in-order, reversed or random, got '", schedule, "'");
  o.seed = static_cast<uint64_t>(seed);
  o.preempt_prob = preempt_prob;
  o.memory_model = memory_model;
  simt::set_options(o);
}

void set_device(const std::string& preset) { rt::set_device_props(rt::device_preset(preset)); }

// [sm_count, smem_per_block_optin, smem_per_sm, smem_reserved_per_block, max_threads_per_sm,
//  max_blocks_per_sm, regs_per_sm, max_regs_per_block, cooperative_launch, compute capability
//  (major * 10 + minor)]
std::vector<int64_t> device_props(const std::string& preset) {
  const DeviceProps d = rt::device_preset(preset);
  return {d.sm_count, d.smem_per_block_optin, d.smem_per_sm, d.smem_reserved_per_block, d.max_threads_per_sm,
          d.max_blocks_per_sm, d.regs_per_sm, d.max_regs_per_block, d.cooperative_launch ? 1 : 0,
          d.cc_major * 10 + d.cc_minor};
}

// The emulated driver's test hooks (runtime_emu.h): launches may use only `sms` SMs (0: all);
// the next `times` cooperative launches are refused with `why` (`fatal`: as if the refusal
// invalidated a CUDA-graph capture).
void limit_sms(int64_t sms) { rt::limit_sms(static_cast<int>(sms)); }
// The occupancy calculator answers at most n CTAs per SM (n < 0: no cap).
void cap_occupancy(int64_t n) { rt::cap_occupancy(static_cast<int>(n)); }
void refuse_cooperative(const std::string& why, int64_t times, bool fatal) {
  rt::refuse_cooperative(why, static_cast<int>(times), fatal);
}
// [cooperative launches attempted, refused] since the last reset_stats()
std::vector<int64_t> driver_stats() {
  const rt::DriverStats s = rt::driver_stats();
  return {s.cooperative_attempts, s.cooperative_refused};
}

// The persistent kernel's plan on a device preset, as the launcher makes it:
// [ok, G, R, NBg, BBg, BC, Hp, threads, smem, max_coresident_ctas, regs_per_thread]
std::vector<int64_t> persistent_plan(int64_t B, int64_t H, at::ScalarType dtype, const std::string& preset) {
  const DeviceProps d = rt::device_preset(preset);
  const bool dbl = dtype == at::kDouble;
  const int tw = static_cast<int>(c10::elementSize(dtype)), ta = dbl ? 8 : 4;
  const int threads = dbl ? PersistThreads<double>::value : PersistThreads<float>::value;
  KernelAttrs k;
  k.regs_per_thread = launch_bound_regs(d, threads, 1);
  k.max_threads_per_block = threads;
  const PersistPlan p = plan_persistent(B, H, tw, ta, threads, d, k);
  return {p.ok ? 1 : 0, p.G, p.R, p.NBg, p.BBg, p.BC, p.Hp, p.threads, p.smem, p.max_coresident_ctas,
          k.regs_per_thread};
}

// [launches, cooperative_launches, blocks, threads, switches, barriers, shuffles, stale_reads,
//  sleeps]
std::vector<int64_t> stats() {
  const simt::Stats s = simt::stats();
  return {s.launches, s.cooperative_launches, s.blocks, s.threads, s.switches, s.barriers, s.shuffles, s.stale_reads,
          s.sleeps};
}

void reset_stats() {
  simt::reset_stats();
  rt::reset_driver_stats();
}

int64_t launches_of(const std::string& name) { return simt::launches_of(name); }

}  // namespace
}  // namespace cuda_detail
}  // namespace rnnfused

TORCH_LIBRARY(rnnfused_emu_ctl, m) {
  using namespace rnnfused::cuda_detail;
  m.def("set_schedule(str schedule, int seed, float preempt_prob, bool memory_model) -> ()", &set_schedule);
  m.def("set_device(str preset) -> ()", &set_device);
  m.def("device_props(str preset) -> int[]", &device_props);
  m.def("limit_sms(int sms) -> ()", &limit_sms);
  m.def("cap_occupancy(int n) -> ()", &cap_occupancy);
  m.def("refuse_cooperative(str why, int times, bool fatal) -> ()", &refuse_cooperative);
  m.def("driver_stats() -> int[]", &driver_stats);
  m.def("persistent_plan(int B, int H, ScalarType dtype, str preset) -> int[]", &persistent_plan);
  m.def("stats() -> int[]", &stats);
  m.def("reset_stats() -> ()", &reset_stats);
  m.def("launches_of(str name) -> int", &launches_of);
}
