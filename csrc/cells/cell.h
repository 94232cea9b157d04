// rnnfused: what a recurrent cell is to the engine (docs/design.md, "Adding a cell").
//
// A cell is a definition, not a fork of the engine. It says:
//   - how many gate blocks its weights stack (kGates: Elman 1, GRU 3, LSTM 4; W_ih is
//     (kGates·H, I) and W_hh (kGates·H, H), the blocks in PyTorch's order);
//   - whether it carries a second state (kHasC: LSTM's c);
//   - its pointwise forward and backward, given the gate pre-activations.
// The layer loop, packing, dropout, autograd and the kernels' products are shared; every kernel
// calls the cell's pointwise functions where its products are still in registers.
//
// Each cell lives in a header of its own (csrc/cells/elman.h, ...) that is plain C++ compiled
// three ways: by the host compiler for the CPU kernels (the value type a SIMD vector), by nvcc
// for the CUDA kernels (a float or double), and by the host compiler again for the SIMT emulator.
// Its pointwise functions are templates over the value type V and a math policy M that supplies
// the elementary functions for V on that platform:
//   M::tanh(v), M::relu(v), M::relu_grad(h)   (relu' from the output: 0 where h <= 0, else 1;
//                                              1 where h is NaN, as torch's threshold_backward)
//   M::sigmoid(v)                              (the LSTM's gates: 1 / (1 + exp(-v)))
// (the CPU kernels define one over their SIMD vectors, the CUDA kernels one over float/double).
#pragma once
#include <cstdint>

// Always inlined, as __forceinline__ under nvcc: a kernel calls these on values still in its
// registers (GCC would otherwise keep the float32 tanh's body out of line in some kernels).
#if defined(__CUDACC__)
#define RNNF_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define RNNF_HD inline __attribute__((always_inline))
#else
#define RNNF_HD inline
#endif

namespace rnnfused {

// Elman's nonlinearity; None is a plain product (no epilogue) inside the CPU kernels.
enum class Act : int { None = 0, Tanh = 1, Relu = 2 };

// The cells the engine runs. Each has a definition in csrc/cells/ (elman.h, lstm.h).
enum class CellKind : int { Elman = 0, LSTM = 1 };

// A cell as the host passes it to the kernels: which one, and its variant.
struct Cell {
  CellKind kind = CellKind::Elman;
  Act act = Act::Tanh;  // Elman: tanh or relu (the LSTM ignores it)
};

}  // namespace rnnfused
