// rnnfused: which GPUs a build has code for, and the error a GPU without code gets.
//
// setup.py compiles the CUDA sources for the architectures of TORCH_CUDA_ARCH_LIST and names
// them in a header it writes into the build's include path (build/generated/
// rnnfused_cuda_archs.h): RNNFUSED_CUDA_SASS (machine code sm_XY, as XY, comma-separated) and
// RNNFUSED_CUDA_PTX (PTX compute_XY, which the driver compiles at load time for X.Y and newer).
// The defaults below are setup.py's default list under nvcc 13 (DEFAULT_CUDA_ARCHS), for the
// builds that do not go through setup.py (the emulator's, tools/). Plain C++: no CUDA, no ATen.
#pragma once

#include <string>
#include <vector>

#if __has_include("rnnfused_cuda_archs.h")
#include "rnnfused_cuda_archs.h"
#endif

#ifndef RNNFUSED_CUDA_SASS
#define RNNFUSED_CUDA_SASS 75, 80, 90
#endif
#ifndef RNNFUSED_CUDA_PTX
#define RNNFUSED_CUDA_PTX 90
#endif

namespace rnnfused {
namespace cuda_detail {

struct BuiltArchs {
  std::vector<int> sass, ptx;  // XY of sm_XY / compute_XY
};

inline BuiltArchs built_archs() {
  // A leading 0 so that an empty list (a build without +PTX) still compiles; zeros are skipped.
  constexpr int sass[] = {0, RNNFUSED_CUDA_SASS};
  constexpr int ptx[] = {0, RNNFUSED_CUDA_PTX};
  BuiltArchs b;
  for (int a : sass)
    if (a > 0) b.sass.push_back(a);
  for (int a : ptx)
    if (a > 0) b.ptx.push_back(a);
  return b;
}

// Whether a build runs on a device of compute capability major.minor: machine code sm_XY runs on
// X.y for y >= Y (the same major version); PTX compute_XY on X.Y and every later capability.
inline bool has_code_for(const BuiltArchs& b, int major, int minor) {
  const int cc = major * 10 + minor;
  for (int a : b.sass)
    if (a / 10 == major && a % 10 <= minor) return true;
  for (int a : b.ptx)
    if (a <= cc) return true;
  return false;
}

inline std::string arch_name(int xy) { return std::to_string(xy / 10) + "." + std::to_string(xy % 10); }

// "7.5, 8.0, 9.0 (machine code) and PTX of 9.0 (compiled by the driver for 9.0 and newer)"
inline std::string describe(const BuiltArchs& b) {
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + arch_name(v[i]);
    return s;
  };
  std::string s = b.sass.empty() ? std::string("no machine code") : list(b.sass) + " (machine code)";
  if (!b.ptx.empty())
    s += " and PTX of " + list(b.ptx) + " (compiled by the driver for " + arch_name(b.ptx.front()) +
         " and newer)";
  return s;
}

// The RuntimeError's text for a device this build has no code for.
inline std::string no_code_message(const std::string& device, int major, int minor, const BuiltArchs& b) {
  const std::string cc = std::to_string(major) + "." + std::to_string(minor);
  std::string m = "rnnfused: this build has no CUDA code for " + device + " (compute capability " + cc +
                  "): it was compiled for compute capabilities " + describe(b) + ". ";
  if (major < 7) {
    return m + "rnnfused's CUDA kernels need compute capability 7.0 or newer; use the module on the "
               "CPU on this machine.";
  }
  return m + "Rebuild it for this GPU, in the environment that runs it: TORCH_CUDA_ARCH_LIST=\"" + cc +
         "\" pip install --no-build-isolation --force-reinstall --no-deps . (from rnnfused's source "
         "tree; the CUDA toolkit must still support " + cc +
         ": CUDA 13 dropped 7.0, CUDA 12 has it), or add \"" + cc +
         "\" to the TORCH_CUDA_ARCH_LIST the build used.";
}

}  // namespace cuda_detail
}  // namespace rnnfused
