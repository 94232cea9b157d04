// rnnfused CPU: the instruction sets the row kernels are compiled for, and which one runs
// (rnn_cpu_isa.cpp). Each has its own source compiled with its target (rnn_cpu_default.cpp,
// rnn_cpu_avx2.cpp, rnn_cpu_avx512.cpp) and its own tables (row_table.h).
#pragma once

namespace rnnfused::cpu {

// Vec16 is the AVX-512 register blocking (16 float / 8 double lanes, same row and column blocks)
// built from portable C++ on any processor: tests use it to run the 16-lane blocking and tail
// logic where AVX-512 is missing.
enum class Isa : int { Default = 0, Avx2 = 1, Avx512 = 2, Vec16 = 3 };
constexpr int kNumIsas = 4;
const char* isa_name(Isa isa);

// Whether this build has the AVX2 (x86-64 with AVX2 + FMA) and AVX-512 (F/BW/DQ/VL) kernels
// compiled in (x86-64 with GCC or Clang); defined in their sources.
bool have_avx2_kernels();
bool have_avx512_kernels();

// The instruction set in use for this call: RNNFUSED_CPU_ISA if set
// (default|avx2|avx512|vec16|auto; raises if the processor lacks the one named), else the best
// the processor has (capped by ATen's own ATEN_CPU_CAPABILITY=default|avx2).
Isa current_isa();
bool isa_supported(Isa isa, const char** why_not = nullptr);

}  // namespace rnnfused::cpu
