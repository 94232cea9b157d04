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

DeviceProps make(int sms, int optin, int per_sm, int threads_per_sm, int blocks_per_sm, int cc,
                 int reserved = 1024) {
  DeviceProps d;
  d.sm_count = sms;
  d.smem_per_block_optin = optin;
  d.smem_per_sm = per_sm;
  d.smem_reserved_per_block = reserved;
  d.max_threads_per_sm = threads_per_sm;
  d.max_blocks_per_sm = blocks_per_sm;
  d.regs_per_sm = 65536;
  d.max_regs_per_block = 65536;
  d.cooperative_launch = true;
  d.cc_major = cc / 10;
  d.cc_minor = cc % 10;
  d.id = g_serial;
  return d;
}

DeviceProps g_props = make(132, 232448, 233472, 2048, 32, 90);  // the default: an H100 SXM
std::map<const void*, int64_t> g_smem_allowed;
// The test hooks' state (runtime_emu.h).
int g_launch_sms = 0;  // SMs launches may use; 0: all
int g_occupancy_cap = -1;  // < 0: none
std::string g_refuse_why;
int g_refuse_times = 0;
bool g_refuse_fatal = false;
DriverStats g_driver_stats;
std::map<const void*, Stream> g_scratch;  // live scratch memory -> its stream

}  // namespace

DeviceProps device_props(int) {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_props;
}

DeviceProps device_preset(const std::string& name) {
  // cudaDeviceGetAttribute values as the CUDA documentation's compute-capability tables give
  // them (sm_90: 228 KiB per SM, 227 KiB per block; sm_80: 164 / 163 KiB; sm_89: 100 / 99 KiB,
  // 1536 threads and 24 blocks per SM).
  // sm_75: 64 / 64 KiB, 1024 threads and 16 blocks per SM; sm_70: 96 / 96 KiB. Before sm_80 no
  // shared memory is reserved per block.
  if (name == "h100") return make(132, 232448, 233472, 2048, 32, 90);
  if (name == "a100") return make(108, 166912, 167936, 2048, 32, 80);
  if (name == "l4") return make(58, 101376, 102400, 1536, 24, 89);
  if (name == "rtx4090") return make(128, 101376, 102400, 1536, 24, 89);
  if (name == "t4") return make(40, 65536, 65536, 1024, 16, 75, 0);
  if (name == "v100") return make(80, 98304, 98304, 2048, 32, 70, 0);
  if (name == "tiny") return make(8, 16384, 32768, 1024, 4, 90);
  throw std::invalid_argument("simt: unknown device preset '" + name +
                              "' (h100, a100, l4, rtx4090, t4, v100, tiny)");
}

void set_device_props(const DeviceProps& d) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_props = d;
  g_props.id = ++g_serial;
  g_smem_allowed.clear();  // a new device: no kernel attribute set yet
  g_launch_sms = 0;
  g_refuse_times = 0;
  g_occupancy_cap = -1;
}

void cap_occupancy(int n) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_occupancy_cap = n;
}

int occupancy_cap() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_occupancy_cap;
}

void limit_sms(int n) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_launch_sms = n;
}

void refuse_cooperative(const std::string& why, int times, bool fatal) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_refuse_why = why;
  g_refuse_times = times;
  g_refuse_fatal = fatal;
}

DriverStats driver_stats() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_driver_stats;
}

void reset_driver_stats() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_driver_stats = DriverStats();
}

LaunchStatus cooperative_verdict(const LaunchSpec& s, int per_sm, int64_t* coresident) {
  std::lock_guard<std::mutex> lock(g_mu);
  ++g_driver_stats.cooperative_attempts;
  LaunchStatus st;
  const int sms = g_launch_sms > 0 && g_launch_sms < g_props.sm_count ? g_launch_sms : g_props.sm_count;
  *coresident = int64_t(per_sm) * sms;
  const int64_t blocks = int64_t(s.grid.x) * s.grid.y * s.grid.z;
  if (g_refuse_times > 0) {
    --g_refuse_times;
    st.why = g_refuse_why;
    st.fatal = g_refuse_fatal;
  } else if (!g_props.cooperative_launch) {
    st.why = "cudaErrorNotSupported: operation not supported";
  } else if (blocks > *coresident) {
    // What the CUDA runtime says (cudaGetErrorName: cudaGetErrorString).
    st.why = "cudaErrorCooperativeLaunchTooLarge: too many blocks in cooperative launch";
  }
  st.ok = st.why.empty();
  if (!st.ok) ++g_driver_stats.cooperative_refused;
  return st;
}

void scratch_register(const void* p, Stream stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_scratch[p] = stream;
}

void scratch_unregister(const void* p) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_scratch.erase(p);
}

void check_launch(const void* kernel, const LaunchSpec& s) {
  const int64_t allowed = allowed_dynamic_smem(kernel);
  if (static_cast<int64_t>(s.smem) > allowed)
    throw std::runtime_error(std::string("simt: launch of ") + s.name + " with " + std::to_string(s.smem) +
                             " bytes of dynamic shared memory; the kernel allows " + std::to_string(allowed) +
                             " (cudaFuncSetAttribute missing?)");
  std::lock_guard<std::mutex> lock(g_mu);
  for (const auto& [p, stream] : g_scratch)
    if (stream != s.stream)
      throw std::runtime_error(std::string("simt: launch of ") + s.name + " on stream " +
                               std::to_string(reinterpret_cast<uintptr_t>(s.stream)) +
                               " while scratch memory of stream " +
                               std::to_string(reinterpret_cast<uintptr_t>(stream)) +
                               " is live: it would be freed in the order of the other stream, "
                               "not after this launch");
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
