// rnnfused: the host runtime of the CUDA kernels on a GPU — device properties, kernel
// attributes and the driver's occupancy for the plans, whether the device has code, launches
// (a cooperative launch reports a refusal instead of raising), scratch memory. host.cuh calls
// these through the names in namespace rt; the emulation build provides the same names in
// csrc/emu/runtime_emu.h.
#pragma once

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "archs.h"
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
  d.cc_major = attr(cudaDevAttrComputeCapabilityMajor);
  d.cc_minor = attr(cudaDevAttrComputeCapabilityMinor);
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

// CTAs of `kernel` with `threads` threads and `smem` bytes of dynamic shared memory that one SM
// of device `dev` holds at once, as the driver computes it (the rule its cooperative launch
// enforces), after the attribute that lets the kernel use `smem` is set. 0 where `smem` exceeds
// what a block may have. Cached per device, kernel, block size and shared memory.
template <typename K>
int coresident_blocks_per_sm(K kernel, int threads, int64_t smem, int dev) {
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, int, int64_t>, int> cache;
  const auto key = std::make_tuple(dev, reinterpret_cast<const void*>(kernel), threads, smem);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  const KernelAttrs k = kernel_attrs(kernel, threads, 1, dev);
  int n = 0;
  if (smem + k.static_smem <= device_props(dev).smem_per_block_optin) {
    allow_dynamic_smem(kernel, smem, dev);
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, static_cast<size_t>(smem)));
  }
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, n);
  return n;
}

// Whether the device has code of this build: the driver's answer for `probe` (any kernel of the
// build), cudaErrorNoKernelImageForDevice when neither machine code for its architecture nor PTX
// it can compile is in the library.
struct DeviceCode {
  bool ok = true;
  std::string name;
  int major = 0, minor = 0;
};
template <typename K>
DeviceCode device_code(K probe, int dev) {
  DeviceCode c;
  cudaFuncAttributes fa;
  const cudaError_t e = cudaFuncGetAttributes(&fa, reinterpret_cast<const void*>(probe));
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
    (void)cudaGetLastError();  // not sticky: clear it so that later checks do not see it
    c.ok = false;
  } else {
    C10_CUDA_CHECK(e);
  }
  const DeviceProps d = device_props(dev);
  c.major = d.cc_major;
  c.minor = d.cc_minor;
  c.name = "GPU " + std::to_string(dev);
  if (!c.ok) {  // the device's name, for the error only
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) c.name += std::string(" (") + prop.name + ")";
    else (void)cudaGetLastError();
  }
  return c;
}

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  Stream stream = nullptr;
  const char* name = "";
};

template <typename P>
void launch(void (*kernel)(P), const LaunchSpec& s, P arg) {
  kernel<<<s.grid, s.block, s.smem, s.stream>>>(arg);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// A cooperative launch: the driver guarantees that all CTAs of the grid are resident at once (the
// group barrier needs it), or refuses. Refusals another kernel can do without — too many CTAs
// for the SMs this context may use (MPS, green contexts, another resident kernel), no support,
// a capture that does not allow it — come back in `why` (the caller falls back or raises); any
// other error raises here. `fatal`: the refusal also invalidated the stream's CUDA-graph capture.
// Launched with cudaLaunchKernelEx and the cooperative attribute (a cooperative kernel node
// under stream capture) where the runtime has it (CUDA 12), else cudaLaunchCooperativeKernel.
struct LaunchStatus {
  bool ok = true;
  bool fatal = false;
  std::string why;
};

template <typename P>
LaunchStatus launch_cooperative(void (*kernel)(P), const LaunchSpec& s, P arg) {
  void* args[] = {&arg};
#if CUDART_VERSION >= 12000
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = s.grid;
  cfg.blockDim = s.block;
  cfg.dynamicSmemBytes = s.smem;
  cfg.stream = s.stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t e = cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(kernel), args);
#else
  const cudaError_t e = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), s.grid, s.block,
                                                    args, s.smem, s.stream);
#endif
  LaunchStatus st;
  if (e == cudaSuccess) {
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return st;
  }
  const bool refusal = e == cudaErrorCooperativeLaunchTooLarge || e == cudaErrorNotSupported ||
                       e == cudaErrorNotPermitted || e == cudaErrorStreamCaptureUnsupported ||
                       e == cudaErrorStreamCaptureImplicit || e == cudaErrorStreamCaptureInvalidated;
  if (!refusal) C10_CUDA_CHECK(e);
  (void)cudaGetLastError();  // a launch error is not sticky: clear it for the launches that follow
  st.ok = false;
  st.why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s.stream, &cap) != cudaSuccess) (void)cudaGetLastError();
  st.fatal = cap == cudaStreamCaptureStatusInvalidated;
  return st;
}

// Device scratch memory from the caching allocator, allocated on `stream` and freed when it goes
// out of scope, stream-ordered on that same stream: the launches that use it are enqueued on it
// before (the allocator may hand the block to later work on `stream` only).
class Scratch {
 public:
  Scratch(size_t bytes, Stream stream)
      : p_(c10::cuda::CUDACachingAllocator::raw_alloc_with_stream(bytes, stream)) {}
  ~Scratch() { c10::cuda::CUDACachingAllocator::raw_delete(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }

 private:
  void* p_;
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
