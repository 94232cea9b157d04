// rnnfused SIMT emulator: the emulated device (runtime_emu.h).
#include "runtime_emu.h"

#include <map>
#include <mutex>

namespace rnnfused {
namespace cuda_detail {
namespace rt {
namespace {

std::mutex g_mu;
int g_serial = 1000;

DeviceProps make(int sms, int optin, int per_sm, int threads_per_sm, int blocks_per_sm) {
  DeviceProps d;
  d.sm_count = sms;
  d.smem_per_block_optin = optin;
  d.smem_per_sm = per_sm;
  d.smem_reserved_per_block = 1024;
  d.max_threads_per_sm = threads_per_sm;
  d.max_blocks_per_sm = blocks_per_sm;
  d.regs_per_sm = 65536;
  d.max_regs_per_block = 65536;
  d.cooperative_launch = true;
  d.id = g_serial;
  return d;
}

DeviceProps g_props = make(132, 232448, 233472, 2048, 32);  // the default: an H100 SXM
std::map<const void*, int64_t> g_smem_allowed;

}  // namespace

DeviceProps device_props(int) {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_props;
}

DeviceProps device_preset(const std::string& name) {
  // cudaDeviceGetAttribute values as the CUDA documentation's compute-capability tables give
  // them (sm_90: 228 KiB per SM, 227 KiB per block; sm_80: 164 / 163 KiB; sm_89: 100 / 99 KiB,
  // 1536 threads and 24 blocks per SM).
  if (name == "h100") return make(132, 232448, 233472, 2048, 32);
  if (name == "a100") return make(108, 166912, 167936, 2048, 32);
  if (name == "l4") return make(58, 101376, 102400, 1536, 24);
  if (name == "rtx4090") return make(128, 101376, 102400, 1536, 24);
  if (name == "tiny") return make(8, 16384, 32768, 1024, 4);
  throw std::invalid_argument("simt: unknown device preset '" + name +
                              "' (h100, a100, l4, rtx4090, tiny)");
}

void set_device_props(const DeviceProps& d) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_props = d;
  g_props.id = ++g_serial;
  g_smem_allowed.clear();  // a new device: no kernel attribute set yet
}

void allow_dynamic_smem_raw(const void* kernel, int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  int64_t& v = g_smem_allowed[kernel];
  if (bytes > v) v = bytes;
}

int64_t allowed_dynamic_smem(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_smem_allowed.find(kernel);
  const int64_t v = it == g_smem_allowed.end() ? 0 : it->second;
  return v > 49152 ? v : 49152;
}

}  // namespace rt
}  // namespace cuda_detail
}  // namespace rnnfused
