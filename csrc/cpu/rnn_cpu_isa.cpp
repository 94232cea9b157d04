// rnnfused CPU: which instruction set's row kernels run (ATen's scheme: one source compiled per
// instruction set, one chosen at run time), and its tables (row_table.h).
//
//   RNNFUSED_CPU_ISA=auto|default|avx2|avx512|vec16   (csrc/switches.h; unset = auto)
//   auto: the best the processor has: avx512 (F, BW, DQ, VL, as ATen requires) > avx2 (+FMA) >
//         default, capped by ATen's own ATEN_CPU_CAPABILITY=default|avx2 if set.
//   vec16: the AVX-512 blocking in portable C++ (tests only; slow).
// Naming an instruction set the processor lacks raises (RuntimeError) with the reason.
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "../switches.h"
#include "isa.h"
#include "row_table.h"

namespace rnnfused::cpu {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports reads CPUID; it also checks (GCC >= 12 / libgcc) that the OS saves
  // the 512-bit state. The same four extensions ATen requires for its AVX512 capability.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

Isa best_isa() {
  static const Isa best = [] {
    const char* cap = std::getenv("ATEN_CPU_CAPABILITY");  // ATen's own knob, honoured too
    const std::string c = cap ? cap : "";
    if (c == "default") return Isa::Default;
    if (have_avx512_kernels() && cpu_has_avx512() && c != "avx2") return Isa::Avx512;
    if (have_avx2_kernels() && cpu_has_avx2()) return Isa::Avx2;
    return Isa::Default;
  }();
  return best;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Vec16: return "vec16";
    default: return "default";
  }
}

bool isa_supported(Isa isa, const char** why_not) {
  const char* why = nullptr;
  switch (isa) {
    case Isa::Default:
    case Isa::Vec16: break;
    case Isa::Avx2:
      if (!have_avx2_kernels()) why = "this build has no AVX2 kernels (not x86-64 GCC/Clang)";
      else if (!cpu_has_avx2()) why = "this processor lacks AVX2 or FMA";
      break;
    case Isa::Avx512:
      if (!have_avx512_kernels()) why = "this build has no AVX-512 kernels (not x86-64 GCC/Clang)";
      else if (!cpu_has_avx512()) why = "this processor lacks AVX-512 (F, BW, DQ and VL)";
      break;
  }
  if (why_not) *why_not = why;
  return why == nullptr;
}

Isa current_isa() {
  Isa isa = Isa::Default;
  const char* name = "default";
  switch (switches::cpu_isa()) {
    case switches::CpuIsa::Auto: return best_isa();
    case switches::CpuIsa::Default: break;
    case switches::CpuIsa::Avx2: isa = Isa::Avx2; name = "avx2"; break;
    case switches::CpuIsa::Avx512: isa = Isa::Avx512; name = "avx512"; break;
    case switches::CpuIsa::Vec16: isa = Isa::Vec16; name = "vec16"; break;
  }
  const char* why = nullptr;
  TORCH_CHECK(isa_supported(isa, &why), "rnnfused: RNNFUSED_CPU_ISA=", name, " but ", why);
  return isa;
}

namespace {

// The tables of every instruction set, indexed by Isa (built once; the AVX ones only where this
// build has them and the processor runs them, the baseline ones standing in otherwise, never
// called there). The per-ISA sources are compiled for their target as a whole, so even building
// a table there may use its instructions (it did, once a table had a few more entries: an
// illegal instruction on an AVX2 processor): never call into them on a processor without it.
template <typename T>
const IsaTables<T>& tables_of(Isa isa) {
  static const IsaTables<T> t[kNumIsas] = {
      tables_default<T>(),
      isa_supported(Isa::Avx2, nullptr) ? tables_avx2<T>() : tables_default<T>(),
      isa_supported(Isa::Avx512, nullptr) ? tables_avx512<T>() : tables_default<T>(),
      tables_vec16<T>()};
  return t[static_cast<int>(isa)];
}

}  // namespace

template <>
const IsaTables<float>& isa_tables<float>() {
  return tables_of<float>(current_isa());
}

template <>
const IsaTables<double>& isa_tables<double>() {
  return tables_of<double>(current_isa());
}

}  // namespace rnnfused::cpu
