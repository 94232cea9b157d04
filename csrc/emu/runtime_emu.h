// rnnfused SIMT emulator: the host runtime of the CUDA kernels under the emulator — the same names
// as csrc/cuda/runtime_cuda.cuh, so that host.cuh (plans, heuristic, launchers) runs unchanged.
// The "device" is an emulated one whose properties the tests choose (default: an H100 SXM).
#pragma once

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

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
// and "tiny" (8 SMs, 16 KiB of shared memory per block: W_hh of a small H needs several CTAs, so
// the persistent kernel runs with G > 1 and its per-step group barrier at small sizes). Throws
// std::invalid_argument for another name.
DeviceProps device_preset(const std::string& name);

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

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  Stream stream = nullptr;
  bool cooperative = false;
  int64_t max_coresident = 0;
  const char* name = "";
};

template <typename P>
void launch(void (*kernel)(P), const LaunchSpec& s, P arg) {
  const int64_t allowed = allowed_dynamic_smem(reinterpret_cast<const void*>(kernel));
  if (static_cast<int64_t>(s.smem) > allowed)
    throw std::runtime_error(std::string("simt: launch of ") + s.name + " with " + std::to_string(s.smem) +
                             " bytes of dynamic shared memory; the kernel allows " + std::to_string(allowed) +
                             " (cudaFuncSetAttribute missing?)");
  if (s.cooperative && !device_props(current_device()).cooperative_launch)
    throw std::runtime_error(std::string("simt: cooperative launch of ") + s.name +
                             " on a device without cooperative launch support");
  ::simt::LaunchConfig c;
  c.grid = s.grid;
  c.block = s.block;
  c.dynamic_smem = s.smem;
  c.cooperative = s.cooperative;
  c.max_coresident_blocks = s.max_coresident;
  c.name = s.name;
  ::simt::launch(c, [&] { kernel(arg); });
}

// Scratch "device" memory: host memory, poisoned.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : p_(std::malloc(bytes ? bytes : 1)) {
    if (!p_) throw std::bad_alloc();
    std::memset(p_, 0xFF, bytes ? bytes : 1);
  }
  ~Scratch() { std::free(p_); }
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
