// rnnfused: launch plans of the CUDA kernels, as pure functions of the device's properties.
//
// Nothing here queries a runtime: on a GPU the properties and kernel attributes are filled from
// the CUDA runtime (runtime_cuda.cuh), under the emulator from the emulated device
// (csrc/emu/runtime_emu.h), and the tests give the property sets of real GPUs (H100, A100, L4,
// RTX 4090, T4, V100) and of a tiny device that forces several CTAs per group. Plain C++: no
// CUDA, no ATen.
//
// How many CTAs of a kernel fit on an SM at once is an argument of the plan (`occ_of`): on a GPU the
// driver's occupancy calculator answers (cudaOccupancyMaxActiveBlocksPerMultiprocessor, the very
// rule its cooperative launch enforces); blocks_per_sm below is the same rule written out, for
// the emulator, whose device has no driver, and for the tests that re-derive it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

namespace rnnfused {
namespace cuda_detail {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// What the plans need to know of a device (cudaDeviceGetAttribute names in comments).
struct DeviceProps {
  int sm_count = 0;                 // MultiProcessorCount
  int smem_per_block_optin = 0;     // MaxSharedMemoryPerBlockOptin (static + dynamic)
  int smem_per_sm = 0;              // MaxSharedMemoryPerMultiprocessor
  int smem_reserved_per_block = 0;  // ReservedSharedMemoryPerBlock (1 KiB from sm_80)
  int max_threads_per_sm = 0;       // MaxThreadsPerMultiProcessor
  int max_blocks_per_sm = 0;        // MaxBlocksPerMultiprocessor
  int regs_per_sm = 0;              // MaxRegistersPerMultiprocessor
  int max_regs_per_block = 0;       // MaxRegistersPerBlock
  bool cooperative_launch = false;  // CooperativeLaunch
  int cc_major = 0, cc_minor = 0;   // ComputeCapabilityMajor / Minor
  int id = 0;  // tells property sets apart in plan caches (device ordinal, emulated set serial)
};

// What the plans need to know of a compiled kernel (cudaFuncGetAttributes).
struct KernelAttrs {
  int regs_per_thread = 0;
  int static_smem = 0;
  int max_threads_per_block = 0;
};

// The registers per thread a kernel may use at most under __launch_bounds__(threads, min_blocks)
// on a device with regs_per_sm registers: what the emulator assumes for a kernel (the compiled
// kernel uses no more; tests/test_emulated_plans.py holds the plans to it).
inline int launch_bound_regs(const DeviceProps& d, int threads, int min_blocks) {
  const int per_thread = d.regs_per_sm / (std::max(1, min_blocks) * round_up(threads, 32));
  return std::min(255, per_thread / 8 * 8);
}

// Resident blocks per SM (the CUDA occupancy rule): threads, registers (allocated per warp in
// units of 256, per thread in multiples of 8), shared memory (plus the per-block reservation),
// and the per-SM block limit. 0 if one block cannot run at all.
inline int blocks_per_sm(const DeviceProps& d, const KernelAttrs& k, int threads, int64_t dynamic_smem) {
  if (threads <= 0 || threads > k.max_threads_per_block) return 0;
  const int warps = static_cast<int>(ceil_div(threads, 32));
  const int by_threads = d.max_threads_per_sm / (warps * 32);
  const int regs_per_warp = static_cast<int>(round_up(round_up(std::max(1, k.regs_per_thread), 8) * 32, 256));
  if (regs_per_warp * warps > d.max_regs_per_block) return 0;
  const int by_regs = (d.regs_per_sm / regs_per_warp) / warps;
  const int64_t smem = k.static_smem + dynamic_smem;
  if (smem > d.smem_per_block_optin) return 0;
  const int64_t per_block = smem + d.smem_reserved_per_block;
  const int by_smem = per_block > 0 ? static_cast<int>(d.smem_per_sm / per_block) : d.max_blocks_per_sm;
  return std::max(0, std::min({d.max_blocks_per_sm, by_threads, by_regs, by_smem}));
}

// ------------------------------------------------------------------------------------------------
// The persistent kernel's plan (device/persist.cuh).
//
// A group of G CTAs owns a batch slice of BBg items; CTA g keeps rows [g*R, g*R + R) of W_hh
// (forward) or W_hhᵀ (backward), zero-padded to Hp = H rounded up to kKChunk columns, in shared
// memory; per step it walks its slice in chunks of BC items. NBg groups cover the batch. G > 1
// needs one barrier per step between the CTAs of a group, so the whole grid (G * NBg CTAs) must
// be co-resident (cooperative launch); G == 1 needs none. These plans are for a cell with one gate
// block (W_hh square): how a cell with kGates blocks changes the rows and columns counted here is
// in device/persist.cuh's header.
struct PersistPlan {
  bool ok = false;
  int G = 1, R = 4, NBg = 1, BBg = 1, BC = 4, Hp = 128, threads = 0;
  int64_t smem = 0;                  // dynamic shared memory per CTA, bytes
  int64_t max_coresident_ctas = 0;   // blocks_per_sm * sm_count for this kernel and smem
  std::string why;                   // when !ok: the reason, for error messages
};

constexpr int kPersistKChunk = 128;     // k per warp iteration in the kernel; rows are padded to it
constexpr int64_t kWorkPerCta = 32768;  // target multiply-adds per CTA per step when splitting rows

// Shared memory of one CTA: R rows of W (storage bytes tw) + BC state rows (accumulator bytes
// ta) + the partial sums of the k-split reduction (at least one 16-value tile per warp).
inline int64_t persist_smem(int64_t R, int64_t BC, int64_t Hp, int tw, int ta, int warps) {
  const int64_t tiles = (R / 4) * (BC / 4);
  return round_up(R * Hp * tw, 16) + BC * Hp * ta + std::max<int64_t>(tiles, warps) * 16 * ta;
}

// B, H: batch and hidden size; tw, ta: bytes of the storage and accumulation types; threads:
// the kernel's block size; k: the compiled kernel's attributes; occ(smem): the CTAs of `threads`
// threads with `smem` bytes of dynamic shared memory that one SM holds at once (0: none).
template <class Occupancy>
PersistPlan plan_persistent(int64_t B, int64_t H, int tw, int ta, int threads, const DeviceProps& d,
                            const KernelAttrs& k, const Occupancy& occ_of) {
  PersistPlan pl;
  pl.threads = threads;
  const int warps = threads / 32;
  if (B <= 0 || H <= 0) { pl.why = "empty batch or hidden size"; return pl; }
  const int64_t Hp = round_up(H, kPersistKChunk), smax = d.smem_per_block_optin - k.static_smem;
  auto smem_for = [&](int64_t R, int64_t BC) { return persist_smem(R, BC, Hp, tw, ta, warps); };
  auto bc_fit = [&](int64_t R, int64_t cap) {  // the largest multiple of 4 <= cap that fits
    int64_t bc = 4;
    while (bc + 4 <= cap && smem_for(R, bc + 4) <= smax) bc += 4;
    return bc;
  };
  if (smem_for(4, 4) > smax) {
    pl.why = "hidden_size " + std::to_string(H) + " is too large: 4 rows of W_hh and 4 state rows " +
             "exceed the " + std::to_string(smax) + " bytes of shared memory per block";
    return pl;
  }
  // The fewest CTAs per group whose rows of W fit.
  int64_t Gmin = -1;
  const int64_t Gcap = std::min<int64_t>(d.sm_count, ceil_div(H, 4));
  for (int64_t G = 1; G <= Gcap; ++G) {
    const int64_t R = round_up(ceil_div(H, G), 4);
    if (smem_for(R, 4) <= smax) { Gmin = ceil_div(H, R); break; }
  }
  if (Gmin < 0) {
    pl.why = "W_hh (hidden_size " + std::to_string(H) + ", " + std::to_string(tw) +
             "-byte elements) does not fit in the shared memory of " + std::to_string(d.sm_count) + " SMs";
    return pl;
  }
  pl.Hp = static_cast<int>(Hp);
  auto accept = [&](int64_t G, int64_t R, int64_t BBg, int64_t NBg, int64_t BC, int64_t smem, int64_t occ) {
    pl.ok = true;
    pl.G = static_cast<int>(G);
    pl.R = static_cast<int>(R);
    pl.BBg = static_cast<int>(BBg);
    pl.NBg = static_cast<int>(NBg);
    pl.BC = static_cast<int>(BC);
    pl.smem = smem;
    pl.max_coresident_ctas = occ * d.sm_count;
    return pl;
  };
  if (Gmin == 1) {
    // W_hh fits one CTA: each CTA owns a batch slice; no barrier, no co-residency needed.
    const int64_t R = round_up(H, 4);
    const int64_t BBg = std::max<int64_t>(1, ceil_div(B, d.sm_count));
    const int64_t BC = bc_fit(R, round_up(BBg, 4));
    const int64_t smem = smem_for(R, BC);
    const int occ = occ_of(smem);
    if (occ < 1) { pl.why = "the persistent kernel cannot be resident on an SM"; return pl; }
    return accept(1, R, BBg, ceil_div(B, BBg), BC, smem, occ);
  }
  if (!d.cooperative_launch) { pl.why = "the device does not support cooperative launches"; return pl; }
  // Several CTAs per group, one barrier per step: the whole grid must be co-resident.
  for (int64_t NB0 = std::min<int64_t>(B, std::max<int64_t>(1, d.sm_count / Gmin)); NB0 >= 1; --NB0) {
    const int64_t BBg = ceil_div(B, NB0), NBg = ceil_div(B, BBg);
    const int64_t Gwork = std::max<int64_t>(1, H * H * BBg / kWorkPerCta);
    int64_t G = std::max<int64_t>(Gmin, std::min<int64_t>(d.sm_count / NBg, Gwork));
    G = std::min<int64_t>(G, ceil_div(H, 4));
    const int64_t R = round_up(ceil_div(H, G), 4);
    G = ceil_div(H, R);
    const int64_t BC = bc_fit(R, round_up(BBg, 4));
    const int64_t smem = smem_for(R, BC);
    if (smem > smax) continue;
    const int occ = occ_of(smem);
    if (int64_t(occ) * d.sm_count >= G * NBg) return accept(G, R, BBg, NBg, BC, smem, occ);
  }
  pl.why = "the " + std::to_string(Gmin) + "+ CTAs per batch group cannot all be co-resident";
  return pl;
}

// The plan with the occupancy rule written out (blocks_per_sm): the emulator's, and the tests'.
inline PersistPlan plan_persistent(int64_t B, int64_t H, int tw, int ta, int threads,
                                   const DeviceProps& d, const KernelAttrs& k) {
  return plan_persistent(B, H, tw, ta, threads, d, k,
                         [&](int64_t smem) { return blocks_per_sm(d, k, threads, smem); });
}

}  // namespace cuda_detail
}  // namespace rnnfused
