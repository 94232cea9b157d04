// rnnfused: the host runtime of the CUDA kernels on a GPU — device properties and kernel
// attributes for the plans, launches, scratch memory. host.cuh calls these through the names in
// namespace rt; the emulation build provides the same names in csrc/emu/runtime_emu.h.
#pragma once

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

#include "plan.h"

namespace rnnfused {
namespace cuda_detail {
namespace rt {

using Stream = cudaStream_t;

inline int current_device() { return c10::cuda::current_device(); }

// Queried once per device.
inline DeviceProps device_props(int dev) {
  static std::mutex mu;
  static std::map<int, DeviceProps> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  auto attr = [dev](cudaDeviceAttr a) {
    int v = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, dev));
    return v;
  };
  DeviceProps d;
  d.sm_count = attr(cudaDevAttrMultiProcessorCount);
  d.smem_per_block_optin = attr(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  d.smem_per_sm = attr(cudaDevAttrMaxSharedMemoryPerMultiprocessor);
  d.smem_reserved_per_block = attr(cudaDevAttrReservedSharedMemoryPerBlock);
  d.max_threads_per_sm = attr(cudaDevAttrMaxThreadsPerMultiProcessor);
  d.max_blocks_per_sm = attr(cudaDevAttrMaxBlocksPerMultiprocessor);
  d.regs_per_sm = attr(cudaDevAttrMaxRegistersPerMultiprocessor);
  d.max_regs_per_block = attr(cudaDevAttrMaxRegistersPerBlock);
  d.cooperative_launch = attr(cudaDevAttrCooperativeLaunch) != 0;
  d.id = dev;
  cache.emplace(dev, d);
  return d;
}

// The compiled kernel's attributes (the launch bounds are what the emulator assumes instead).
template <typename K>
KernelAttrs kernel_attrs(K kernel, int /*bound_threads*/, int /*bound_min_blocks*/, int dev) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, KernelAttrs> cache;
  const auto key = std::make_pair(dev, reinterpret_cast<const void*>(kernel));
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  cudaFuncAttributes fa;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&fa, reinterpret_cast<const void*>(kernel)));
  KernelAttrs k;
  k.regs_per_thread = fa.numRegs;
  k.static_smem = static_cast<int>(fa.sharedSizeBytes);
  k.max_threads_per_block = fa.maxThreadsPerBlock;
  cache.emplace(key, k);
  return k;
}

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device (above the
// default 48 KiB this must be asked for). The attribute persists per device: set it once.
template <typename K>
void allow_dynamic_smem(K kernel, int64_t bytes, int dev) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, int64_t> done;
  const auto key = std::make_pair(dev, reinterpret_cast<const void*>(kernel));
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(key);
  if (it != done.end() && it->second >= bytes) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done[key] = bytes;
}

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  Stream stream = nullptr;
  bool cooperative = false;
  int64_t max_coresident = 0;  // checked by the driver itself on a GPU
  const char* name = "";
};

template <typename P>
void launch(void (*kernel)(P), const LaunchSpec& s, P arg) {
  if (s.cooperative) {
    void* args[] = {&arg};
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), s.grid, s.block,
                                               args, s.smem, s.stream));
  } else {
    kernel<<<s.grid, s.block, s.smem, s.stream>>>(arg);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Device scratch memory from the caching allocator, freed (stream-ordered on the current stream)
// when it goes out of scope after the launches that use it are enqueued.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : p_(c10::cuda::CUDACachingAllocator::get()->allocate(bytes)) {}
  void* get() const { return p_.get(); }

 private:
  c10::DataPtr p_;
};

inline void memset_async(void* p, int v, size_t n, Stream s) { C10_CUDA_CHECK(cudaMemsetAsync(p, v, n, s)); }
inline void memcpy_async(void* dst, const void* src, size_t n, Stream s) {
  C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s));
}
// Fills memory whose contents are undefined with a pattern (the emulator's NaN poison); nothing
// to do on a GPU.
inline void poison(void*, size_t, Stream) {}

}  // namespace rt
}  // namespace cuda_detail
}  // namespace rnnfused
