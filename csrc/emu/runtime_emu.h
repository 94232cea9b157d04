// rnnfused SIMT emulator: the host runtime of the CUDA kernels under the emulator — the same names
// as csrc/cuda/runtime_cuda.cuh, so that host.cuh (plans, heuristic, launchers) runs unchanged.
// The "device" is an emulated one whose properties the tests choose (default: an H100 SXM), and
// its "driver" answers as a GPU's would: occupancy by CUDA's rule (plan.h's blocks_per_sm) for
// the launch-bound register budget, whether the build has code for the device's compute
// capability (archs.h), and cooperative launches refused where the grid cannot be co-resident on
// the SMs launches may use. Test hooks (runtime_emu.cpp, driven by the control ops of
// emu_module.cpp and by check_main.cpp) make the driver grant fewer SMs than the device has (as
// MPS or a green context would), refuse the next cooperative launches with a given reason, and
// require the launchers' scratch memory to live on the stream of the launches made meanwhile.
#pragma once

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "../cuda/archs.h"
#include "../cuda/plan.h"
#include "simt.h"

namespace rnnfused {
namespace cuda_detail {
namespace rt {

using Stream = void*;

inline int current_device() { return 0; }

// The emulated device (runtime_emu.cpp); setting new properties gives them a new id.
DeviceProps device_props(int dev);
void set_device_props(const DeviceProps& d);
// Property sets of real GPUs and of a tiny device: "h100" (SXM), "a100" (SXM), "l4", "rtx4090",
// "t4", "v100", and "tiny" (8 SMs, 16 KiB of shared memory per block: W_hh of a small H needs
// several CTAs, so the persistent kernel runs with G > 1 and its per-step group barrier at small
// sizes). Throws std::invalid_argument for another name.
DeviceProps device_preset(const std::string& name);

// Test hooks of the emulated driver, all reset by set_device_props. limit_sms(n): launches may
// use only n SMs of the device (0: all), as under MPS or in a green context, while the device's
// properties still say all. refuse_cooperative(why, times, fatal): the next `times` cooperative
// launches are refused with `why` (fatal: as a refusal that invalidated a CUDA-graph capture).
// cap_occupancy(n): the occupancy calculator answers at most n CTAs per SM (n < 0: no cap), as a
// driver whose accounting is stricter than CUDA's rule written out.
void limit_sms(int n);
void refuse_cooperative(const std::string& why, int times, bool fatal);
void cap_occupancy(int n);
int occupancy_cap();
// Cooperative launches attempted and refused since the last reset_driver_stats().
struct DriverStats {
  long long cooperative_attempts = 0, cooperative_refused = 0;
};
DriverStats driver_stats();
void reset_driver_stats();

// A kernel's attributes as its __launch_bounds__ allow at most: the compiled GPU kernel uses no
// more registers than this, so plans made with it hold on the GPU too.
template <typename K>
KernelAttrs kernel_attrs(K, int bound_threads, int bound_min_blocks, int dev) {
  KernelAttrs k;
  k.regs_per_thread = launch_bound_regs(device_props(dev), bound_threads, bound_min_blocks);
  k.static_smem = 0;
  k.max_threads_per_block = bound_threads;
  return k;
}

// cudaFuncSetAttribute(MaxDynamicSharedMemorySize), remembered per kernel: a launch above the
// default 48 KiB without it fails, as on a GPU.
void allow_dynamic_smem_raw(const void* kernel, int64_t bytes);
int64_t allowed_dynamic_smem(const void* kernel);

template <typename K>
void allow_dynamic_smem(K kernel, int64_t bytes, int dev) {
  const DeviceProps d = device_props(dev);
  if (bytes > d.smem_per_block_optin)
    throw std::runtime_error("simt: cudaFuncSetAttribute: " + std::to_string(bytes) +
                             " bytes of dynamic shared memory exceed the device's " +
                             std::to_string(d.smem_per_block_optin));
  allow_dynamic_smem_raw(reinterpret_cast<const void*>(kernel), bytes);
}

// The occupancy calculator: CUDA's rule for the kernel's launch-bound register budget (what the
// compiled kernel uses at most) on the emulated device, capped by the cap_occupancy hook.
template <typename K>
int coresident_blocks_per_sm(K kernel, int threads, int64_t smem, int dev) {
  const int n = blocks_per_sm(device_props(dev), kernel_attrs(kernel, threads, 1, dev), threads, smem);
  const int cap = occupancy_cap();
  return cap >= 0 && cap < n ? cap : n;
}

// Whether the build has code for the emulated device's compute capability (archs.h's rule over
// the list the build names: what the driver answers on a GPU).
struct DeviceCode {
  bool ok = true;
  std::string name;
  int major = 0, minor = 0;
};
template <typename K>
DeviceCode device_code(K, int dev) {
  const DeviceProps d = device_props(dev);
  DeviceCode c;
  c.major = d.cc_major;
  c.minor = d.cc_minor;
  c.ok = has_code_for(built_archs(), d.cc_major, d.cc_minor);
  c.name = "the emulated GPU " + std::to_string(dev);
  return c;
}

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  Stream stream = nullptr;
  const char* name = "";
};

// The checks every launch gets (out of line): dynamic shared memory within what the kernel's
// attribute allows, and the launchers' live scratch memory on the launch's stream.
void check_launch(const void* kernel, const LaunchSpec& s);

template <typename P>
void launch(void (*kernel)(P), const LaunchSpec& s, P arg) {
  check_launch(reinterpret_cast<const void*>(kernel), s);
  ::simt::LaunchConfig c;
  c.grid = s.grid;
  c.block = s.block;
  c.dynamic_smem = s.smem;
  c.name = s.name;
  ::simt::launch(c, [&] { kernel(arg); });
}

struct LaunchStatus {
  bool ok = true;
  bool fatal = false;
  std::string why;
};

// The emulated driver's answer to a cooperative launch of `blocks` CTAs, each holding one SM's
// share `per_sm` (its occupancy): "" to launch, else the reason it refuses (an injected refusal;
// a device without cooperative launches; more CTAs than the SMs launches may use can hold).
// Counts the attempt; `coresident` receives the co-resident CTAs the grid may have.
LaunchStatus cooperative_verdict(const LaunchSpec& s, int per_sm, int64_t* coresident);

template <typename P>
LaunchStatus launch_cooperative(void (*kernel)(P), const LaunchSpec& s, P arg) {
  check_launch(reinterpret_cast<const void*>(kernel), s);
  const int per_sm = coresident_blocks_per_sm(kernel, static_cast<int>(s.block.x), static_cast<int64_t>(s.smem),
                                              current_device());
  int64_t coresident = 0;
  const LaunchStatus st = cooperative_verdict(s, per_sm, &coresident);
  if (!st.ok) return st;
  ::simt::LaunchConfig c;
  c.grid = s.grid;
  c.block = s.block;
  c.dynamic_smem = s.smem;
  c.cooperative = true;
  c.max_coresident_blocks = coresident;
  c.name = s.name;
  ::simt::launch(c, [&] { kernel(arg); });
  return st;
}

// Scratch "device" memory: host memory, poisoned, on `stream` (registered: a launch on another
// stream while it lives is an error, check_launch).
void scratch_register(const void* p, Stream stream);
void scratch_unregister(const void* p);
class Scratch {
 public:
  Scratch(size_t bytes, Stream stream) : p_(std::malloc(bytes ? bytes : 1)) {
    if (!p_) throw std::bad_alloc();
    std::memset(p_, 0xFF, bytes ? bytes : 1);
    scratch_register(p_, stream);
  }
  ~Scratch() {
    scratch_unregister(p_);
    std::free(p_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }

 private:
  void* p_;
};

inline void memset_async(void* p, int v, size_t n, Stream) { std::memset(p, v, n); }
inline void memcpy_async(void* dst, const void* src, size_t n, Stream) { std::memmove(dst, src, n); }
// Memory the kernels must write before they read it (workspace, outputs): poisoned with 0xFF
// bytes, NaN in every float type, so that a read of an element never written shows.
inline void poison(void* p, size_t n, Stream) { std::memset(p, 0xFF, n); }

}  // namespace rt
}  // namespace cuda_detail
}  // namespace rnnfused
