// rnnfused: the table of environment switches (switches.h). Needs only c10 (it is also linked
// into the emulator's standalone checker, which has no ATen).
#include "switches.h"

#include <c10/util/Exception.h>

#include <cstdlib>

namespace rnnfused {
namespace switches {
namespace {

enum Id { kInputMode, kCpuKernel, kCpuForm, kCpuProj, kCpuIsa, kCudaKernel, kCpuSplit };

const std::vector<Info>& table() {
  static const std::vector<Info> t = {
      {"RNNFUSED_INPUT_MODE", {"auto", "step", "hoist"},
       "a layer's input product: one fused cell kernel per step, or one GEMM hoisted over the "
       "sequence"},
      {"RNNFUSED_CPU_KERNEL", {"auto", "fused", "gemm"},
       "CPU recurrence and cell step: the fused kernels, or a BLAS call per step"},
      {"RNNFUSED_CPU_FORM", {"auto", "panel", "dot"},
       "fused CPU recurrence: W_hh packed into panels once per call, or dot products over its rows"},
      {"RNNFUSED_CPU_PROJ", {"auto", "own", "blas"},
       "hoisted input projection on the CPU: rnnfused's panel kernel, or BLAS plus the bias add"},
      {"RNNFUSED_CPU_ISA", {"auto", "default", "avx2", "avx512", "vec16"},
       "instruction set of the CPU kernels (vec16: the AVX-512 blocking in portable C++, tests)"},
      {"RNNFUSED_KERNEL", {"auto", "stepwise", "persistent"},
       "CUDA recurrence: one launch per step, or one persistent launch for the whole sequence"},
      {"RNNFUSED_CPU_SPLIT", {"N"},
       "threads the fused CPU recurrence splits each step's columns across (a positive integer)"},
  };
  return t;
}

// The index of the value of switch `id` among its choices; 0 (auto) when unset or empty.
int choice(Id id) {
  const Info& s = table()[id];
  const char* v = std::getenv(s.name.c_str());
  if (v == nullptr || *v == '\0') return 0;
  for (size_t i = 0; i < s.choices.size(); ++i)
    if (s.choices[i] == v) return static_cast<int>(i);
  std::string list;  // "a, b or auto": the forced choices first, as the messages always said
  for (size_t i = 1; i < s.choices.size(); ++i) list += s.choices[i] + ", ";
  list = list.substr(0, list.size() - 2) + " or auto";
  TORCH_CHECK(false, "rnnfused: ", s.name, " must be ", list, ", got '", v, "'");
}

}  // namespace

InputMode input_mode() { return static_cast<InputMode>(choice(kInputMode)); }
CpuKernel cpu_kernel() { return static_cast<CpuKernel>(choice(kCpuKernel)); }
CpuForm cpu_form() { return static_cast<CpuForm>(choice(kCpuForm)); }
CpuProj cpu_proj() { return static_cast<CpuProj>(choice(kCpuProj)); }
CpuIsa cpu_isa() { return static_cast<CpuIsa>(choice(kCpuIsa)); }
CudaKernel cuda_kernel() { return static_cast<CudaKernel>(choice(kCudaKernel)); }

int64_t cpu_split() {
  const char* name = table()[kCpuSplit].name.c_str();
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  TORCH_CHECK(end && *end == '\0' && x >= 1, "rnnfused: ", name, " must be a positive integer, got '",
              v, "'");
  return x;
}

const std::vector<Info>& all() { return table(); }

}  // namespace switches
}  // namespace rnnfused
