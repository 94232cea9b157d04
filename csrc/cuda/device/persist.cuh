// rnnfused device code: the persistent kernel (one launch for all T steps, W_hh resident in shared
// memory), forward and backward, with its warp reduction and the per-step barrier of a CTA group.
// The cell (csrc/cells/) is a template parameter: the forward epilogue is Cell::forward of the
// summed pre-activation, the backward's vector operand is dz = Cell::backward of dh + g_t.
//
// Cells with NG = Cell::kGates > 1 gate blocks (W_hh is (NG·H, H), gate blocks in PyTorch's
// order) or a second state (Cell::kHasC) are refused by a static_assert; they plug in thus.
// "G" below and in plan.h is the number of CTAs of a group, not the cell's gate count.
//  - forward: CTA g owns units [row0, row0 + R) and all NG gate rows of each, gate-major in
//    shared memory: Ws[gate·R + r][k] = W[gate·H + row0 + r][k], NG·R rows of Hp (R stays a
//    multiple of 4, so a 4-row dot tile never straddles two gates). The dot covers NR = NG·R / 4
//    row tiles; red is [KS][BCa][NG·R]; the epilogue's output o = (item bl, unit r) sums
//    red[..][gate·R + r] for each gate, adds the hoisted projection's gate elements
//    pre[t][b][gate·H + row0 + r] (a separate (T, B, NG·H) operand: pre is computed into `out`
//    in place only because Elman has one gate block) and calls the cell's forward with all NG of
//    them, so one thread sees a unit's gates together. The second state c needs no exchange:
//    unit j's c stays with the CTA that owns j (a per-CTA array [BC][R] beside vs, or the state
//    workspace), and c_t is saved for the backward.
//  - backward: CTA g owns the columns [row0, row0 + R) of dh and needs W_hh's columns over all
//    NG·H rows: Ws[r][k] = W[k][row0 + r], k < NG·H, so the dot's K is NG·H (padded to kKChunk)
//    and the vector operand vs is dz_t over NG·H per item: element k = gate·H + u is the cell's
//    backward for gate `gate` of unit u (from dh[u] + g_t[u], the second state's gradient and the
//    saved gates / c_t); each CTA stores the dz elements of its own units, all gates. The second
//    state's gradient carried to the previous step is exchanged like dh: the CTA owning unit u
//    stores it for u into a second (2, B, H) workspace before the group barrier.
//  - plan.h then counts, per CTA, forward NG·R rows of Hp = round_up(H, kKChunk) elements for W
//    plus BC·Hp state elements, backward R rows of Kp = round_up(NG·H, kKChunk) for W plus BC·Kp
//    dz elements; the k-split partial sums (NG·R / 4)·(BC / 4) tiles forward. The forward and
//    backward plans then differ (today they are one plan, W_hh being square), and the fewest CTAs
//    per group are found for the NG·R rows.
#pragma once

#include "common.cuh"

namespace rnnfused {
namespace cuda_detail {

// ------------------------------------------------------------------------------------------------
// Persistent kernel.

template <typename A> struct PersistThreads { static constexpr int value = 512; };
template <> struct PersistThreads<double> { static constexpr int value = 256; };  // registers
constexpr int kPrefetch = 4;  // epilogue operands per thread loaded early (before the dot)
constexpr int kKChunk = 128;    // k per warp iteration (32 lanes x 4); rows are padded to it
constexpr int kLoadBatch = 8;  // state loads in flight per thread in the persistent loader

// Sum of v[0..15] over the 32 lanes of a warp in 16 shuffles (transpose-reduce). On return,
// lane l holds the total of index (l >> 1) & 15.
template <typename A>
__device__ __forceinline__ A warp_reduce16(A (&v)[16], int lane) {
  constexpr unsigned kFull = 0xffffffffu;
  {
    const bool up = lane & 16;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const A send = up ? v[i] : v[i + 8], keep = up ? v[i + 8] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 16);
    }
  }
  {
    const bool up = lane & 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const A send = up ? v[i] : v[i + 4], keep = up ? v[i + 4] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 8);
    }
  }
  {
    const bool up = lane & 4;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const A send = up ? v[i] : v[i + 2], keep = up ? v[i + 2] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, 4);
    }
  }
  {
    const bool up = lane & 2;
    const A send = up ? v[0] : v[1], keep = up ? v[1] : v[0];
    v[0] = keep + __shfl_xor_sync(kFull, send, 2);
  }
  return v[0] + __shfl_xor_sync(kFull, v[0], 1);
}

// Barrier of the G CTAs of one group. The counter only grows (target = G * (steps done)); the
// comparison is wrap-safe. Pattern as cooperative_groups' grid sync: bar.sync, then thread 0
// fences (release, cumulative over the CTA's writes), arrives, spins with ld.acquire.gpu, fences.
// The spin backs off (a sleep doubling from kBackoffMinNs to kBackoffMaxNs) so that G waiting
// CTAs do not hammer the counter's L2 line; the cap bounds what the backoff adds to a step.
// Debug builds (RNNFUSED_SPIN_LIMIT) trap with a message after that many spins instead of hanging.
constexpr unsigned kBackoffMinNs = 32, kBackoffMaxNs = 256;
__device__ __forceinline__ void group_barrier(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
    unsigned ns = kBackoffMinNs;
#ifdef RNNFUSED_SPIN_LIMIT
    unsigned spins = 0;
#endif
    for (;;) {
      const unsigned seen = ld_acquire_gpu(counter);
      if (static_cast<int>(seen - target) >= 0) break;
#ifdef RNNFUSED_SPIN_LIMIT
      if (++spins > (RNNFUSED_SPIN_LIMIT)) spin_limit_trap("group_barrier", seen, target);
#endif
      backoff(ns);
      ns = ns < kBackoffMaxNs ? 2 * ns : kBackoffMaxNs;
    }
    __threadfence();
  }
  __syncthreads();
}

template <typename T, typename Cell, bool BWD>
__global__ void __launch_bounds__(PersistThreads<acc_t<T>>::value, 1) persist_kernel(Args<T> a) {
  static_assert(Cell::kGates == 1 && !Cell::kHasC,
                "persist_kernel: cells with gates or a second state plug in as this file's header says");
  using A = acc_t<T>;
  constexpr int NT = PersistThreads<A>::value, NW = NT / 32;
  RNNF_DYNAMIC_SHARED(unsigned char, smem_raw, 16);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int G = a.G, R = a.R, BCmax = a.BC, Hp = a.Hp;
  const int g = blockIdx.x % G;
  const int64_t q = blockIdx.x / G;
  const int64_t NS = a.steps, B = a.B, H = a.H, BH = B * H;
  const int64_t row0 = (int64_t)g * R;
  const int Rc = (int)min((int64_t)R, H - row0);  // >= 1: the plan makes G = ceil(H / R)
  const int64_t gb0 = q * a.BBg, gb1 = min(B, gb0 + a.BBg);
  const int NR = R / 4, nkc = Hp / kKChunk;

  T* Ws = reinterpret_cast<T*>(smem_raw);  // [R][Hp]
  const size_t ws_bytes = ((size_t)R * Hp * sizeof(T) + 15) & ~size_t(15);
  A* vs = reinterpret_cast<A*>(smem_raw + ws_bytes);  // [BC][Hp]
  A* red = vs + (size_t)BCmax * Hp;                    // [KS][BCa][R]

  // W slice, zero-padded to R rows and Hp columns. Forward: Ws[r][k] = W[row0+r][k].
  // Backward: Ws[r][j] = W[j][row0+r] (columns of W; consecutive threads walk j so the shared
  // stores are conflict-free; the strided global reads happen once).
  for (int64_t i = tid; i < (int64_t)R * Hp; i += NT) {
    const int r = (int)(i / Hp), k = (int)(i % Hp);
    T v = Cvt<T>::zero();
    if (r < Rc && k < H) v = BWD ? a.w[(int64_t)k * H + row0 + r] : a.w[(row0 + r) * H + k];
    Ws[i] = v;
  }

  unsigned* counter = (G > 1) ? a.counters + q : nullptr;
  for (int64_t s = 0; s < NS; ++s) {
    const int64_t t = (a.reverse != BWD) ? NS - 1 - s : s;
    const int64_t tBH = t * BH;
    const A* scur = a.state + (s & 1) * BH;
    A* snext = a.state + ((s + 1) & 1) * BH;
    const bool last_step = (s == NS - 1);

    for (int64_t c0 = gb0; c0 < gb1; c0 += BCmax) {
      const int BCc = (int)min((int64_t)BCmax, gb1 - c0);
      const int BCa = (BCc + 3) & ~3;
      const int tiles = NR * (BCa / 4);
      const int KS = max(1, min(NW / tiles, nkc));
      const int nout = BCc * Rc;

      // Epilogue operand, loaded early so its latency hides behind the load + dot below:
      // forward the pre-activation out[t][b][j]; backward the old dh[b][k] (kept if inactive).
      auto load_e = [&](int o) -> A {
        const int bl = o / Rc, r = o % Rc;
        const int64_t idx = (c0 + bl) * H + row0 + r;
        if (!BWD) return to_acc(a.out[tBH + idx]);
        return s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : ld_state(scur + idx);
      };
      A e[kPrefetch];
#pragma unroll
      for (int i = 0; i < kPrefetch; ++i) {
        const int o = tid + i * NT;
        e[i] = o < nout ? load_e(o) : A(0);
      }

      // Vector operand of the chunk: vs[bl][k] (zero-padded rows and columns).
      // Forward: h_{t-1}. Backward: dz_t = (dh + g_t) * act'(h_t), 0 where inactive; the CTA
      // also stores dz (and dz_first) for its own columns [row0, row0 + Rc).
      // Batched: kLoadBatch loads in flight per thread before their shared-memory stores.
      auto fetch = [&](int i) -> A {
        const int bl = i / Hp, k = i % Hp;
        A v = A(0);
        if (bl < BCc && k < H) {
          const int64_t b = c0 + bl, idx = b * H + k;
          if (!BWD) {
            v = s == 0 ? to_acc(a.vec0[idx]) : ld_state(scur + idx);
          } else {
            const int64_t len = item_len(a.lengths, b, NS);
            if (t < len) {
              const A dh = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : ld_state(scur + idx);
              const A gg = a.gout ? to_acc(a.gout[tBH + idx]) : A(0);
              v = Cell::template backward<DeviceMath>(dh + gg, to_acc(a.out[tBH + idx]), a.act);
            }
            if (k >= row0 && k < row0 + Rc) {
              a.dz[tBH + idx] = Cvt<T>::from(v);
              if (t == first_step(len, a.reverse)) a.dz_first[idx] = Cvt<T>::from(v);
            }
          }
        }
        return v;
      };
      const int nvs = BCa * Hp;
      for (int i0 = tid; i0 < nvs; i0 += NT * kLoadBatch) {
        A v[kLoadBatch];
#pragma unroll
        for (int u = 0; u < kLoadBatch; ++u) {
          const int i = i0 + u * NT;
          v[u] = i < nvs ? fetch(i) : A(0);
        }
#pragma unroll
        for (int u = 0; u < kLoadBatch; ++u) {
          const int i = i0 + u * NT;
          if (i < nvs) vs[i] = v[u];
        }
      }
      __syncthreads();

      // Dot products: unit u = (k split ks, tile of 4 rows x 4 items), one warp per unit; lanes
      // split k in chunks of 128 (4 consecutive elements each).
      for (int u = warp; u < tiles * KS; u += NW) {
        const int ks = u / tiles, tile = u % tiles;
        const int rt = tile % NR, bt = tile / NR;
        const T* wp = Ws + (size_t)(rt * 4) * Hp + lane * 4;
        const A* hp = vs + (size_t)(bt * 4) * Hp + lane * 4;
        A acc[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) acc[i] = A(0);
        for (int c = ks; c < nkc; c += KS) {
          const int k = c * kKChunk;
          A hv[4][4];
#pragma unroll
          for (int j = 0; j < 4; ++j) ld4(hp + (size_t)j * Hp + k, hv[j]);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            A wv[4];
            ld4(wp + (size_t)i * Hp + k, wv);
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
              for (int x = 0; x < 4; ++x) acc[i * 4 + j] = fma(wv[x], hv[j][x], acc[i * 4 + j]);
          }
        }
        const A sum = warp_reduce16(acc, lane);
        if ((lane & 1) == 0) {
          const int idx16 = (lane >> 1) & 15, rr = idx16 >> 2, bb = idx16 & 3;
          red[((size_t)ks * BCa + bt * 4 + bb) * R + rt * 4 + rr] = sum;
        }
      }
      __syncthreads();

      // Epilogue: output o = (item bl, row r), rows fastest (coalesced global stores).
      auto epi = [&](int o, A ev) {
        const int bl = o / Rc, r = o % Rc;
        const int64_t b = c0 + bl, j = row0 + r, idx = b * H + j;
        A dot = A(0);
        for (int ks = 0; ks < KS; ++ks) dot += red[((size_t)ks * BCa + bl) * R + r];
        const bool active = t < item_len(a.lengths, b, NS);
        A v;
        if (!BWD) {
          if (active) {
            v = Cell::template forward<DeviceMath>(ev + dot, a.act);
            a.out[tBH + idx] = Cvt<T>::from(v);
          } else {
            v = vs[(size_t)bl * Hp + j];
            a.out[tBH + idx] = Cvt<T>::zero();
          }
        } else {
          v = active ? dot : ev;
        }
        st_state(snext + idx, v);
        if (last_step) a.last[idx] = Cvt<T>::from(v);
      };
#pragma unroll
      for (int i = 0; i < kPrefetch; ++i) {
        const int o = tid + i * NT;
        if (o < nout) epi(o, e[i]);
      }
      for (int o = tid + kPrefetch * NT; o < nout; o += NT) epi(o, load_e(o));
      // vs and red are rewritten by the next chunk; with G == 1 this is also the step barrier
      // (the state written above is read back by other threads of this CTA only).
      __syncthreads();
    }
    if (G > 1) group_barrier(counter, (unsigned)G * (unsigned)(s + 1));
  }
}

}  // namespace cuda_detail
}  // namespace rnnfused
