// rnnfused: the environment switches, every RNNFUSED_* variable the extension reads at run time,
// in one table (switches.cpp) and read nowhere else. The README's "Knobs" table lists each one
// (a test holds it to this table: rnnfused._C.switches()).
//
// Each switch is read at every call (tests and the benchmark change them between calls) and
// parsed strictly: a value outside its choices raises a c10::Error (RuntimeError in Python) that
// names the choices. Unset or empty means "auto" (or, for RNNFUSED_CPU_SPLIT, not forced).
// The decisions these switches override are made in policy.cpp (and, for the CUDA kernel, by
// policy.h's cuda_use_persistent).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rnnfused {
namespace switches {

// RNNFUSED_INPUT_MODE: how a layer-direction's input product is done (policy::input_mode).
enum class InputMode { Auto, Step, Hoist };
// RNNFUSED_CPU_KERNEL: the CPU recurrence and cell step: fused kernels or a BLAS call per step.
enum class CpuKernel { Auto, Fused, Gemm };
// RNNFUSED_CPU_FORM: the fused CPU recurrence's form: panels of packed W_hh, or dot products
// over W_hh's rows as stored.
enum class CpuForm { Auto, Panel, Dot };
// RNNFUSED_CPU_PROJ: the hoisted input projection on the CPU: our panel kernel or BLAS.
enum class CpuProj { Auto, Own, Blas };
// RNNFUSED_CPU_ISA: the instruction set of the CPU kernels.
enum class CpuIsa { Auto, Default, Avx2, Avx512, Vec16 };
// RNNFUSED_KERNEL: the CUDA recurrence kernel.
enum class CudaKernel { Auto, Stepwise, Persistent };

InputMode input_mode();
CpuKernel cpu_kernel();
CpuForm cpu_form();
CpuProj cpu_proj();
CpuIsa cpu_isa();
CudaKernel cuda_kernel();
// RNNFUSED_CPU_SPLIT: the number of threads the fused CPU recurrence splits each step's columns
// across, forced (a positive integer); 0 when unset.
int64_t cpu_split();

// The table, for the README test and error messages: name, choices ("auto" first; for
// RNNFUSED_CPU_SPLIT the one entry "N"), what it does.
struct Info {
  std::string name;
  std::vector<std::string> choices;
  std::string what;
};
const std::vector<Info>& all();

}  // namespace switches
}  // namespace rnnfused
