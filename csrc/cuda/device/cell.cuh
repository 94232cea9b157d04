// rnnfused device code: one time step with the input product fused in (FusedRNNCell, and FusedRNN
// where stepping beats the hoisted input GEMM), forward and backward (rnn.h: StepFwdParams,
// StepBwdParams). Weights in nn.RNNCell's layout, read as they are: no preparation. The cell
// (csrc/cells/) is a template parameter.
//
// Forward: h_new[b][n] = cell(b_ih[n] + b_hh[n] + Σ_k x[b][k] W_ih[n][k] + Σ_k h[b][k] W_hh[n][k])
//   (Elman: cell = act). One warp per output column n (W's rows are contiguous in k): the lanes
//   split k, each lane keeps kCellRows batch rows' partial sums, a shuffle reduction per row,
//   lane 0 adds the bias and applies Cell::forward. Grid: ceil(H / warps per block) blocks.
// Backward: dz = Cell::backward(g, h_new) (Elman: g ⊙ act'(h_new)); grad_x = dz W_ih,
//   grad_h = dz W_hh. One thread per output column c of [grad_x | grad_h] (c < I: W_ih's column
//   c; else W_hh's column c - I; consecutive threads read consecutive columns of a row of W:
//   coalesced), for kCellRows batch rows at a time; dz formed on the fly from g and h_new (the
//   same address across a warp: one broadcast load). The blocks also store dz, grid-stride (the
//   grid has at least ceil(B·H / threads) blocks, up to a cap: extra blocks only store dz).
//
// Cells with NG = Cell::kGates > 1 gate blocks (W_ih (NG·H, I), W_hh (NG·H, H), biases (NG·H),
// gate blocks in PyTorch's order) or a second state (Cell::kHasC) are refused by a
// static_assert; they plug in thus:
//  - forward: the warp of unit n owns its NG gate rows gate·H + n of W_ih and W_hh: per k it
//    loads NG weights and keeps acc[NG][kCellRows] (each x / h element loaded once feeds NG
//    products), reduces the NG·kCellRows sums, and lane 0 passes the unit's NG gate sums (GRU:
//    the n gate's input and recurrent parts apart, b_hn with the recurrent one) and, for LSTM,
//    c[b][n] to the cell's forward, writing h_new (and c_new). Grid and warp mapping unchanged:
//    one warp per unit.
//  - backward: dz is (B, NG·H) and each of its elements needs the whole unit (all gate values,
//    c, the second state's gradient), which the forward then saves; dz can no longer be formed
//    on the fly per element. A first pass writes dz (today the grid-stride loop, over B·H units,
//    writing NG elements each; a separate launch, since the other blocks read it), then the
//    products run n over the NG·H rows of W reading dz: grad_x[b][c] = Σ_{n < NG·H} dz[b][n]
//    W_ih[n][c], grad_h likewise. Output columns and grid are unchanged (I + H).
#pragma once

#include "common.cuh"

namespace rnnfused {
namespace cuda_detail {

constexpr int kCellThreads = 256;
constexpr int kCellRows = 4;  // batch rows per pass: each weight load feeds this many products

template <typename T>
struct CellArgs {
  const T* x = nullptr;        // (B, I)
  const T* h = nullptr;        // (B, H)
  const T* w_ih = nullptr;     // (H, I)   (NG·H rows for a cell with NG gate blocks)
  const T* w_hh = nullptr;     // (H, H)   (likewise)
  const T* b_ih = nullptr;     // (H) or nullptr
  const T* b_hh = nullptr;     // (H) or nullptr
  T* h_new = nullptr;          // (B, H)   forward: written; backward: read
  const T* grad = nullptr;     // (B, H)   backward: dL/dh_new
  T* dz = nullptr;             // (B, H)   backward: written
  T* grad_x = nullptr;         // (B, I)   backward: written, or nullptr
  T* grad_h = nullptr;         // (B, H)   backward: written, or nullptr
  int64_t B = 0, I = 0, H = 0;
  Act act = Act::Tanh;         // the cell's variant (Elman: tanh or relu)
};

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T, typename Cell>
__global__ void __launch_bounds__(kCellThreads) cell_fwd_kernel(CellArgs<T> a) {
  static_assert(Cell::kGates == 1 && !Cell::kHasC,
                "cell_fwd_kernel: cells with gates or a second state plug in as this file's header says");
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t n = (int64_t)blockIdx.x * (kCellThreads / 32) + (threadIdx.x >> 5);
  if (n >= a.H) return;  // the whole warp: n is warp-uniform
  const int64_t B = a.B, I = a.I, H = a.H;
  const T* wi = a.w_ih + n * I;
  const T* wh = a.w_hh + n * H;
  A bias = A(0);
  if (a.b_ih) bias += to_acc(__ldg(a.b_ih + n));
  if (a.b_hh) bias += to_acc(__ldg(a.b_hh + n));
  for (int64_t b0 = 0; b0 < B; b0 += kCellRows) {
    const int rows = (int)min((int64_t)kCellRows, B - b0);
    A acc[kCellRows];
#pragma unroll
    for (int r = 0; r < kCellRows; ++r) acc[r] = A(0);
    for (int64_t k = lane; k < I; k += 32) {
      const A w = to_acc(__ldg(wi + k));
#pragma unroll
      for (int r = 0; r < kCellRows; ++r)
        if (r < rows) acc[r] = fma(w, to_acc(__ldg(a.x + (b0 + r) * I + k)), acc[r]);
    }
    for (int64_t k = lane; k < H; k += 32) {
      const A w = to_acc(__ldg(wh + k));
#pragma unroll
      for (int r = 0; r < kCellRows; ++r)
        if (r < rows) acc[r] = fma(w, to_acc(__ldg(a.h + (b0 + r) * H + k)), acc[r]);
    }
#pragma unroll
    for (int r = 0; r < kCellRows; ++r) {
      const A s = warp_sum(acc[r]);  // every lane takes part, also for rows >= `rows`
      if (lane == 0 && r < rows)
        a.h_new[(b0 + r) * H + n] = Cvt<T>::from(Cell::template forward<DeviceMath>(s + bias, a.act));
    }
  }
}

template <typename T, typename Cell>
__global__ void __launch_bounds__(kCellThreads) cell_bwd_kernel(CellArgs<T> a) {
  static_assert(Cell::kGates == 1 && !Cell::kHasC,
                "cell_bwd_kernel: cells with gates or a second state plug in as this file's header says");
  using A = acc_t<T>;
  const int64_t B = a.B, I = a.I, H = a.H;
  // dz itself, spread over the whole grid (grid-stride; the launcher sizes the grid for it too).
  for (int64_t i = (int64_t)blockIdx.x * kCellThreads + threadIdx.x; i < B * H; i += (int64_t)gridDim.x * kCellThreads)
    a.dz[i] = Cvt<T>::from(Cell::template backward<DeviceMath>(to_acc(a.grad[i]), to_acc(a.h_new[i]), a.act));
  // Columns of [grad_x | grad_h] this launch computes: only the gradients asked for.
  const int64_t c_begin = a.grad_x ? 0 : I, c_end = a.grad_h ? I + H : I;
  const int64_t c = c_begin + (int64_t)blockIdx.x * kCellThreads + threadIdx.x;
  if (c >= c_end) return;
  const bool from_ih = c < I;
  const T* w = from_ih ? a.w_ih + c : a.w_hh + (c - I);
  const int64_t ld = from_ih ? I : H;
  for (int64_t b0 = 0; b0 < B; b0 += kCellRows) {
    const int rows = (int)min((int64_t)kCellRows, B - b0);
    A acc[kCellRows];
#pragma unroll
    for (int r = 0; r < kCellRows; ++r) acc[r] = A(0);
    for (int64_t n = 0; n < H; ++n) {
      const A wv = to_acc(__ldg(w + n * ld));
#pragma unroll
      for (int r = 0; r < kCellRows; ++r) {
        if (r < rows) {
          const int64_t i = (b0 + r) * H + n;
          const A g = to_acc(__ldg(a.grad + i)), h = to_acc(__ldg(a.h_new + i));
          const A dz = Cell::template backward<DeviceMath>(g, h, a.act);
          acc[r] = fma(dz, wv, acc[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kCellRows; ++r) {  // constant trip count: acc stays in registers
      if (r >= rows) continue;
      if (from_ih) a.grad_x[(b0 + r) * I + c] = Cvt<T>::from(acc[r]);
      else a.grad_h[(b0 + r) * H + (c - I)] = Cvt<T>::from(acc[r]);
    }
  }
}

}  // namespace cuda_detail
}  // namespace rnnfused
