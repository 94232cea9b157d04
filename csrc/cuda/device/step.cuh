// rnnfused device code: the stepwise fused kernel (one launch per time step), forward and backward.
// Any B, any H: the general fallback (see host.cuh for when it runs).
#pragma once

#include "common.cuh"

namespace rnnfused {
namespace cuda_detail {

// ------------------------------------------------------------------------------------------------
// Stepwise kernel: C[b][n] = sum_k Aop[b][k] * Bop[k][n] for one step, fused epilogue.
//    forward : Aop = h_{t-1} (B x H), Bop[k][n] = W[n][k]     -> pre-activation increment
//    backward: Aop = dz_t    (B x H), Bop[k][n] = W[k][n]     -> dh_{t-1}
// Grid: x = batch tiles (BM), y = column tiles (BN); 256 threads; thread (tx, ty) owns outputs
// (ty + i*NTY, tx + j*NTX), i < TM, j < TN (interleaved: conflict-free shared-memory reads).
// The cell (csrc/cells/) is a template parameter: the forward epilogue is Cell::forward of the
// summed pre-activation, the backward's A tile is dz = Cell::backward of dh + g_t.
//
// Cells with NG = Cell::kGates > 1 gate blocks (W_hh is (NG·H, H), gate blocks in PyTorch's
// order) or a second state (Cell::kHasC) are refused by a static_assert; they plug in thus:
//  - forward: the GEMM's columns are the NG·H rows of W_hh, and a thread must hold all NG gate
//    columns of a unit when its epilogue runs. A column tile covers BN / NG units, NG gates each,
//    unit-major: local column c is gate c % NG of unit n0 + c / NG (n0 = blockIdx.y · BN / NG;
//    grid y = ceil(H / (BN / NG))), so Bs[kk][c] = W[(c % NG)·H + n0 + c / NG][k0 + kk]. Thread
//    (tx, ty) owns units n0 + tx + jj·NTX (jj < TN / NG) and reads its columns
//    (tx + jj·NTX)·NG + gate, acc[i][jj·NG + gate]; at NG = 1 all of this is the mapping above.
//    (Those reads are NG apart across a warp: NG-way bank conflicts unless Bs's rows are
//    stored gate-major, c' = (c % NG)·(BN / NG) + c / NG, which keeps the same ownership.)
//    The epilogue takes the unit's NG sums plus the hoisted input projection, which is then a
//    separate (T, B, NG·H) operand rather than `out` itself (pre is computed in place only
//    because Elman has one gate block), and writes h (and c, to a second state workspace and to
//    the saved c_t the backward reads).
//  - backward: K runs over the NG·H rows of W_hh (k0 < NG·H, Bs[kk][n] = W[k0 + kk][n0 + n]);
//    the A tile's element k = gate·H + u is the cell's backward for gate `gate` of unit u, from
//    dh[u] + g_t[u] (plus the second state's gradient and the saved gates / c_t); the
//    blockIdx.y == 0 tiles store dz (T, B, NG·H) and the second state's gradient. The epilogue
//    (dh_{t-1} per unit) is unchanged.

template <int BM_, int BN_, int TM_, int TN_>
struct StepCfg {
  static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, BK = 32, NT = 256;
  static constexpr int NTX = BN / TN, NTY = BM / TM;
  static_assert(NTX * NTY == NT, "step tile must map onto 256 threads");
};
using StepSmall = StepCfg<8, 64, 1, 2>;   // B <= 32
using StepLarge = StepCfg<64, 64, 4, 4>;  // B > 32

template <typename T, typename Cell, bool BWD, typename Cfg>
__global__ void __launch_bounds__(256, 1) step_kernel(Args<T> a) {
  static_assert(Cell::kGates == 1 && !Cell::kHasC,
                "step_kernel: cells with gates or a second state plug in as this file's header says");
  using A = acc_t<T>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, TM = Cfg::TM, TN = Cfg::TN, BK = Cfg::BK;
  constexpr int NT = Cfg::NT, NTX = Cfg::NTX, NTY = Cfg::NTY;
  RNNF_SHARED(A, As, [BK][BM + 1]);
  RNNF_SHARED(A, Bs, [BK][BN + 1]);

  const int tid = threadIdx.x, tx = tid % NTX, ty = tid / NTX;
  const int64_t B = a.B, H = a.H, NS = a.steps, s = a.s;
  const int64_t t = (a.reverse != BWD) ? NS - 1 - s : s;
  const int64_t b0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;
  const int64_t BH = B * H, tBH = t * BH;
  const A* scur = a.state + (s & 1) * BH;
  A* snext = a.state + ((s + 1) & 1) * BH;

  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = A(0);

  for (int64_t k0 = 0; k0 < H; k0 += BK) {
    // A operand tile, stored transposed: As[kk][m]. Compile-time trip counts, loads first and
    // stores after, so that all of a thread's global loads are in flight together.
    static_assert((BM * BK) % NT == 0 && (BN * BK) % NT == 0, "tile loads must divide evenly");
    constexpr int LA = BM * BK / NT, LB = BN * BK / NT;
    A av_ld[LA];
#pragma unroll
    for (int it = 0; it < LA; ++it) {
      const int i = tid + it * NT;
      const int m = i / BK, kk = i % BK;
      const int64_t b = b0 + m, k = k0 + kk;
      A v = A(0);
      if (b < B && k < H) {
        const int64_t idx = b * H + k;
        if (!BWD) {
          v = s == 0 ? to_acc(a.vec0[idx]) : scur[idx];
        } else {
          const int64_t len = item_len(a.lengths, b, NS);
          if (t < len) {
            const A dh = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : scur[idx];
            const A g = a.gout ? to_acc(a.gout[tBH + idx]) : A(0);
            v = Cell::template backward<DeviceMath>(dh + g, to_acc(a.out[tBH + idx]), a.act);
          }
          if (blockIdx.y == 0) {  // one column tile stores dz (it sees every k of its rows)
            a.dz[tBH + idx] = Cvt<T>::from(v);
            if (t == first_step(len, a.reverse)) a.dz_first[idx] = Cvt<T>::from(v);
          }
        }
      }
      av_ld[it] = v;
    }
    // B operand tile: Bs[kk][n].
    A bv_ld[LB];
#pragma unroll
    for (int it = 0; it < LB; ++it) {
      const int i = tid + it * NT;
      if (!BWD) {  // Bs[kk][n] = W[n0+n][k0+kk]; consecutive threads walk k (coalesced)
        const int n = i / BK, kk = i % BK;
        const int64_t row = n0 + n, k = k0 + kk;
        bv_ld[it] = (row < H && k < H) ? to_acc(a.w[row * H + k]) : A(0);
      } else {     // Bs[kk][n] = W[k0+kk][n0+n]; consecutive threads walk n (coalesced)
        const int kk = i / BN, n = i % BN;
        const int64_t row = k0 + kk, col = n0 + n;
        bv_ld[it] = (row < H && col < H) ? to_acc(a.w[row * H + col]) : A(0);
      }
    }
#pragma unroll
    for (int it = 0; it < LA; ++it) {
      const int i = tid + it * NT;
      As[i % BK][i / BK] = av_ld[it];
    }
#pragma unroll
    for (int it = 0; it < LB; ++it) {
      const int i = tid + it * NT;
      if (!BWD) Bs[i % BK][i / BK] = bv_ld[it];
      else Bs[i / BN][i % BN] = bv_ld[it];
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < BK; ++kk) {
      A av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = As[kk][ty + i * NTY];
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * NTX];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  const bool last_step = (s == NS - 1);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t b = b0 + ty + i * NTY;
    if (b >= B) continue;
    const bool active = t < item_len(a.lengths, b, NS);
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tx + j * NTX;
      if (n >= H) continue;
      const int64_t idx = b * H + n;
      A v;
      if (!BWD) {
        if (active) {
          v = Cell::template forward<DeviceMath>(to_acc(a.out[tBH + idx]) + acc[i][j], a.act);
          a.out[tBH + idx] = Cvt<T>::from(v);
        } else {
          v = s == 0 ? to_acc(a.vec0[idx]) : scur[idx];
          a.out[tBH + idx] = Cvt<T>::zero();
        }
      } else {
        if (active) v = acc[i][j];
        else v = s == 0 ? (a.vec0 ? to_acc(a.vec0[idx]) : A(0)) : scur[idx];
      }
      snext[idx] = v;
      if (last_step) a.last[idx] = Cvt<T>::from(v);
    }
  }
}

}  // namespace cuda_detail
}  // namespace rnnfused
