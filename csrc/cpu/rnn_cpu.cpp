// rnnfused CPU recurrence: the step loops of the forward and backward passes.
//
// Two paths, same arithmetic contract (see rnn.h):
//  - fused: per step, one pass computes the cell's forward of pre + h_prev · W_hhᵀ with the
//    accumulators in registers (kernels/), straight into the output: in the panel form (W_hh
//    packed once per call into panels of 16 units; a block of rows × panels of outputs stays in
//    registers for the whole k loop, like an SGEMM micro-kernel, the cell's forward applied
//    before the only store) or, for one row, the dot form over W_hh's own rows (no
//    preparation). No allocation, no dispatcher call per step: what small shapes are bound by.
//    Where a step is big enough, its columns are split across the intra-op threads, which stay
//    alive for the whole sequence and meet once per step (run_steps, rnn_cpu_steps.h).
//  - gemm: per step, one BLAS call through ATen (out_t += h_prev · W_hhᵀ, beta = 1 onto the
//    hoisted pre), then the cell's forward over the rows. For shapes where the product is big
//    enough that the BLAS's blocking wins and a few µs of dispatch do not matter.
// policy::cpu_seq_path (csrc/policy.cpp) chooses; RNNFUSED_CPU_KERNEL=fused|gemm|auto forces one
// (tests run both on the same inputs); auto times both on this processor (fused_is_faster, below)
// the first time it meets a shape whose best path is not clear from its size alone.
//
// Every step loop is a template over the cell's definition C (csrc/cells/), entered once per
// call through RNNFUSED_CELL_SWITCH (bottom of this file); the kernels come from the tables of
// the instruction set in use (row_table.h), looked up once per call. The loops are written for
// cells with one gate block and no second state (C::kGates == 1, !C::kHasC; static_assert in
// fwd_impl / bwd_impl); a cell with G > 1 gates and a second state (the LSTM) runs
// rnn_cpu_lstm.cpp's loops, fused (the panel form with G gate blocks) or BLAS.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "../cells/switch.h"
#include "../policy.h"
#include "panel_pack.h"
#include "rnn_cpu.h"
#include "rnn_cpu_lstm.h"
#include "rnn_cpu_steps.h"
#include "seq_common.h"
#include "row_table.h"

namespace rnnfused {
namespace cpu {
namespace {

// Rows per task for at::parallel_for over an elementwise pass, so each task has at least 2^15
// elements (a fork/join costs a few µs).
int64_t elementwise_grain(int64_t H) {
  return std::max<int64_t>(1, ((int64_t(1) << 15) + H - 1) / H);
}

template <typename T, class C>
void fwd_fused(const SeqFwdParams& p, const IsaTables<T>& t, int64_t nshares, bool panel) {
  const CellKernels<T, C>& k = t.template cell<C>();
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  T* out = static_cast<T*>(p.out);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* W = static_cast<const T*>(p.w_hh);
  const Lengths L(p.lengths, B, T_);
  // Row pointers of each share (rows that are active at the step), refilled every step.
  std::vector<T*> ys(static_cast<size_t>(nshares * B));
  std::vector<const T*> xs(static_cast<size_t>(nshares * B));
  std::vector<T> wp;
  if (panel) {
    wp.resize(static_cast<size_t>((H + kPanel - 1) / kPanel * kPanel * H * C::kGates));
    pack_panels(wp.data(), W, H, H, C::kGates);
  }
  run_steps(T_, nshares, [&](int64_t s, int64_t share) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    const auto [n0, n1] = share_columns(H, nshares, share);
    T* cur = out + t * BH;
    const T* nb = out + (p.reverse ? t + 1 : t - 1) * BH;  // the neighbouring step
    T** y = ys.data() + share * B;
    const T** x = xs.data() + share * B;
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      T* yr = cur + b * H;
      if (!L.active(b, t)) { std::fill(yr + n0, yr + n1, T(0)); continue; }
      y[n] = yr;
      x[n++] = t == L.first_step(b, p.reverse) ? h0 + b * H : nb + b * H;
    }
    if (panel) {
      PanelArgs<T> a;
      a.nrows = n;
      a.y = y;
      a.init = y;
      a.x = x;
      a.wp = wp.data();
      a.K = H;
      a.cell = p.cell;
      k.panel_rows(a, n0, n1);
      return;
    }
    DotArgs<T> a;
    a.nrows = n;
    a.y = y;
    a.init = y;
    a.x0 = x;
    a.w0 = W;
    a.k0 = H;
    a.cell = p.cell;
    k.dot_rows(a, n0, n1);
  });
}

template <typename T, class C>
void fwd_gemm(const SeqFwdParams& p, const IsaTables<T>& t) {
  const CellKernels<T, C>& k = t.template cell<C>();
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  T* out = static_cast<T*>(p.out);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* W = static_cast<const T*>(p.w_hh);
  const Lengths L(p.lengths, B, T_);
  auto step_of = [&](int64_t s) { return p.reverse ? T_ - 1 - s : s; };
  // State buffer only where rows may start at different steps (masked); else read h_prev from
  // the previous step's output in place.
  T* state = static_cast<T*>(p.state);
  if (L.masked()) std::memcpy(state, h0, sizeof(T) * BH);
  const int64_t grain = elementwise_grain(H);
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = step_of(s);
    T* cur = out + t * BH;
    const T* prev = L.masked() ? state : (s == 0 ? h0 : out + step_of(s - 1) * BH);
    const int64_t m = L.rows_to_compute(B, t);
    gemm<T>(cur, prev, W, m, H, H, /*trans_b=*/true, /*accumulate=*/true);
    auto rows = [&](int64_t b0, int64_t b1) {
      if (!L.masked()) {  // contiguous rows: one pass
        k.fwd_row(cur + b0 * H, (b1 - b0) * H, p.cell);
        return;
      }
      for (int64_t b = b0; b < b1; ++b) {
        T* y = cur + b * H;
        if (!L.active(b, t)) { std::fill(y, y + H, T(0)); continue; }
        k.fwd_row(y, H, p.cell);
        std::memcpy(state + b * H, y, sizeof(T) * H);
      }
    };
    if (B <= grain) rows(0, B);
    else at::parallel_for(0, B, grain, rows);
  }
}

// The loops below are written for G = 1 and no second state (header comment).
template <class C>
constexpr bool kOneGateNoC = C::kGates == 1 && !C::kHasC;

template <typename T, class C>
void fwd_impl(const SeqFwdParams& p, const policy::CpuSeqPath& c) {
  static_assert(kOneGateNoC<C>, "the CPU recurrence runs one-gate cells without c (see the top)");
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  T* out = static_cast<T*>(p.out);
  const T* h0 = static_cast<const T*>(p.h0);
  T* hn = static_cast<T*>(p.hn);
  const Lengths L(p.lengths, B, T_);
  const IsaTables<T>& t = isa_tables<T>();
  if (T_ > 0 && B > 0) {
    if (c.fused) fwd_fused<T, C>(p, t, c.shares, c.panel);
    else fwd_gemm<T, C>(p, t);
  }
  // h_n: the output of each item's last active step, h0 if it has none.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = T_ > 0 ? L.of(b) : 0;
    const T* src = len == 0 ? h0 + b * H : out + (p.reverse ? 0 : len - 1) * BH + b * H;
    std::memcpy(hn + b * H, src, sizeof(T) * H);
  }
}

// Backward, fused path. Work item s (0..T) of a share (its columns C): first dh[:, C] =
// dz_{s-1} W_hh[:, C] for the rows active at step s-1 (needs every column of dz_{s-1}: the
// previous item of every share), then dz_s[:, C] from dh[:, C]. One meeting per step.
template <typename T, class C>
void bwd_fused(const SeqBwdParams& p, const IsaTables<T>& t, int64_t nshares, bool panel) {
  const RowKernels<T>& plain = t.rows;
  const CellKernels<T, C>& k = t.template cell<C>();
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  const T* g = static_cast<const T*>(p.grad_out);
  const T* out = static_cast<const T*>(p.out);
  const T* W = static_cast<const T*>(p.w_hh);
  T* dz = static_cast<T*>(p.dz);
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dh = static_cast<T*>(p.state);  // (B, H): the running dL/dh
  const Lengths L(p.lengths, B, T_);
  auto step_of = [&](int64_t s) { return p.reverse ? s : T_ - 1 - s; };
  std::vector<T*> ys(static_cast<size_t>(nshares * B));
  std::vector<const T*> xs(static_cast<size_t>(nshares * B));
  std::vector<T> wp;
  if (panel) {
    wp.resize(static_cast<size_t>((H + kPanel - 1) / kPanel * kPanel * H));
    pack_panels_kn(wp.data(), W, H, H);
  }
  run_steps(T_ + 1, nshares, [&](int64_t s, int64_t share) {
    const auto [n0, n1] = share_columns(H, nshares, share);
    if (s > 0) {
      const int64_t t = step_of(s - 1);
      T** y = ys.data() + share * B;
      const T** x = xs.data() + share * B;
      int64_t n = 0;
      for (int64_t b = 0; b < B; ++b) {
        if (!L.active(b, t)) continue;
        y[n] = dh + b * H;
        x[n++] = dz + t * BH + b * H;
      }
      if (panel) {
        PanelArgs<T> a;
        a.nrows = n;
        a.y = y;
        a.x = x;
        a.wp = wp.data();
        a.K = H;
        plain.panel_rows(a, n0, n1);
      } else {
        plain.vecmat_rows(n, y, x, W, H, H, n0, n1, /*accumulate=*/false);
      }
    }
    if (s < T_) {
      const int64_t t = step_of(s);
      for (int64_t b = 0; b < B; ++b) {
        T* dzr = dz + t * BH + b * H;
        if (!L.active(b, t)) { std::fill(dzr + n0, dzr + n1, T(0)); continue; }
        k.dz_row(dzr + n0, dh + b * H + n0, g ? g + t * BH + b * H + n0 : nullptr,
                 out + t * BH + b * H + n0, n1 - n0, p.cell);
        if (t == L.first_step(b, p.reverse))
          std::memcpy(dz_first + b * H + n0, dzr + n0, sizeof(T) * (n1 - n0));
      }
    }
  });
}

template <typename T, class C>
void bwd_gemm(const SeqBwdParams& p, const IsaTables<T>& t) {
  const CellKernels<T, C>& k = t.template cell<C>();
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  const T* g = static_cast<const T*>(p.grad_out);
  const T* out = static_cast<const T*>(p.out);
  const T* W = static_cast<const T*>(p.w_hh);
  T* dz = static_cast<T*>(p.dz);
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dh = static_cast<T*>(p.state);  // (B, H): the running dL/dh
  T* tmp = dh + BH;                  // (B, H): scratch for the masked case
  const Lengths L(p.lengths, B, T_);
  auto step_of = [&](int64_t s) { return p.reverse ? s : T_ - 1 - s; };
  const int64_t grain = elementwise_grain(H);
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = step_of(s);
    T* dzt = dz + t * BH;
    const T* gt = g ? g + t * BH : nullptr;
    const T* ot = out + t * BH;
    auto rows = [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* dzr = dzt + b * H;
        if (!L.active(b, t)) { std::fill(dzr, dzr + H, T(0)); continue; }
        k.dz_row(dzr, dh + b * H, gt ? gt + b * H : nullptr, ot + b * H, H, p.cell);
        if (t == L.first_step(b, p.reverse)) std::memcpy(dz_first + b * H, dzr, sizeof(T) * H);
      }
    };
    if (B <= grain) rows(0, B);
    else at::parallel_for(0, B, grain, rows);
    const int64_t m = L.rows_to_compute(B, t);
    if (!L.masked() || L.sorted_desc) {
      gemm<T>(dh, dzt, W, m, H, H, /*trans_b=*/false, /*accumulate=*/false);
    } else {
      gemm<T>(tmp, dzt, W, B, H, H, /*trans_b=*/false, /*accumulate=*/false);
      for (int64_t b = 0; b < B; ++b)
        if (L.active(b, t)) std::memcpy(dh + b * H, tmp + b * H, sizeof(T) * H);
    }
  }
}

template <typename T, class C>
void bwd_impl(const SeqBwdParams& p, const policy::CpuSeqPath& c) {
  static_assert(kOneGateNoC<C>, "the CPU recurrence runs one-gate cells without c (see the top)");
  const int64_t T_ = p.T, B = p.B, H = p.H, BH = B * H;
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dh = static_cast<T*>(p.state);
  const IsaTables<T>& t = isa_tables<T>();
  if (p.grad_hn) std::memcpy(dh, p.grad_hn, sizeof(T) * BH);
  else std::fill(dh, dh + BH, T(0));
  std::fill(dz_first, dz_first + BH, T(0));
  if (T_ > 0 && B > 0) {
    if (c.fused) bwd_fused<T, C>(p, t, c.shares, c.panel);
    else bwd_gemm<T, C>(p, t);
  }
  std::memcpy(p.grad_h0, dh, sizeof(T) * BH);
}

// ---------------------------------------------------------------------------------------------
// Timing the two paths for policy::cpu_seq_path (csrc/policy.cpp).

// Times the two paths of one direction of cell C on scratch data of shape (B, H); true if fused
// wins.
template <typename T, class C>
bool fused_is_faster(int64_t B, int64_t H, bool backward, int64_t shares, bool panel) {
  const IsaTables<T>& k = isa_tables<T>();
  // Enough steps for about 2^23 multiply-adds per timed run (a few ms over all runs).
  const int64_t S = std::clamp<int64_t>((int64_t(1) << 23) / (B * H * H), 2, 64);
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  // Deterministic values in [-1, 1] (never the global RNG: timing must not change the user's
  // random stream).
  auto fill = [&](at::IntArrayRef shape, double scale) {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    return at::arange(n, opts).mul_(0.7548776662).sin_().mul_(scale).view(shape);
  };
  const at::Tensor W = fill({H, H}, 1.0 / std::sqrt(double(H)));
  const at::Tensor h0 = fill({B, H}, 0.5);
  const at::Tensor pre = fill({S, B, H}, 1.0);
  const at::Tensor g = fill({S, B, H}, 0.1);
  at::Tensor out = at::empty({S, B, H}, opts), dz = at::empty({S, B, H}, opts);
  at::Tensor state = at::empty({2, B, H}, opts), extra = at::empty({B, H}, opts);
  SeqFwdParams fp;
  fp.T = S; fp.B = B; fp.H = H;
  fp.state = state.data_ptr(); fp.out = out.data_ptr(); fp.h0 = h0.data_ptr();
  fp.w_hh = W.data_ptr(); fp.hn = extra.data_ptr();
  SeqBwdParams bp;
  bp.T = S; bp.B = B; bp.H = H;
  bp.state = state.data_ptr(); bp.grad_out = g.data_ptr(); bp.out = pre.data_ptr();
  bp.w_hh = W.data_ptr(); bp.dz = dz.data_ptr(); bp.dz_first = extra.data_ptr();
  auto run = [&](bool fused) {
    const auto t0 = std::chrono::steady_clock::now();
    if (backward) {
      state.zero_();
      if (fused) bwd_fused<T, C>(bp, k, shares, panel);
      else bwd_gemm<T, C>(bp, k);
    } else {
      out.copy_(pre);
      if (fused) fwd_fused<T, C>(fp, k, shares, panel);
      else fwd_gemm<T, C>(fp, k);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  run(true);
  run(false);
  double best_fused = 1e30, best_gemm = 1e30;
  for (int rep = 0; rep < 3; ++rep) {  // interleaved, best of each
    best_fused = std::min(best_fused, run(true));
    best_gemm = std::min(best_gemm, run(false));
  }
  return best_fused <= best_gemm;
}

// ---------------------------------------------------------------------------------------------
// The input projection through the panel form.

template <typename T>
void input_proj(const T* x, const T* w_ih, const T* b_ih, const T* b_hh, T* out, int64_t rows,
                int64_t I, int64_t H) {
  if (rows <= 0 || H <= 0) return;
  const RowKernels<T>& k = isa_tables<T>().rows;
  std::vector<T> wp(static_cast<size_t>((H + kPanel - 1) / kPanel * kPanel * I));
  pack_panels(wp.data(), w_ih, H, I);
  std::vector<T> bias;
  if (b_ih || b_hh) {
    bias.assign(static_cast<size_t>(H), T(0));
    for (int64_t n = 0; n < H; ++n) bias[n] = (b_ih ? b_ih[n] : T(0)) + (b_hh ? b_hh[n] : T(0));
  }
  // Rows in chunks (pointer arrays on the stack); chunks across the intra-op threads where the
  // work is large enough to pay for the fork (2^18 multiply-adds a chunk).
  constexpr int64_t kChunk = 192;
  const int64_t nchunks = (rows + kChunk - 1) / kChunk;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, kChunk * I * H));
  auto run = [&](int64_t c0, int64_t c1) {
    T* y[kChunk];
    const T* xr[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = c * kChunk, n = std::min(kChunk, rows - r0);
      for (int64_t r = 0; r < n; ++r) {
        y[r] = out + (r0 + r) * H;
        xr[r] = x + (r0 + r) * I;
      }
      PanelArgs<T> a;
      a.nrows = n;
      a.y = y;
      a.bias = bias.empty() ? nullptr : bias.data();
      a.x = xr;
      a.wp = wp.data();
      a.K = I;
      k.panel_rows(a, 0, H);
    }
  };
  if (nchunks <= grain || at::get_num_threads() <= 1 || at::in_parallel_region()) run(0, nchunks);
  else at::parallel_for(0, nchunks, grain, run);
}

// The hoisted projection through BLAS: out = x W_ihᵀ + (b_ih + b_hh), one addmm.
template <typename T>
void input_proj_blas(const T* x, const T* w_ih, const T* b_ih, const T* b_hh, T* out, int64_t rows,
                     int64_t I, int64_t H) {
  if (rows <= 0) return;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor o = at::from_blob(out, {rows, H}, opts);
  const at::Tensor xt = at::from_blob(const_cast<T*>(x), {rows, I}, opts);
  const at::Tensor w = at::from_blob(const_cast<T*>(w_ih), {H, I}, opts);
  auto vec = [&](const T* b) { return at::from_blob(const_cast<T*>(b), {H}, opts); };
  if (b_ih || b_hh) {
    const at::Tensor bias = b_ih && b_hh ? vec(b_ih) + vec(b_hh) : vec(b_ih ? b_ih : b_hh);
    at::addmm_out(o, bias, xt, w.t());
  } else {
    at::mm_out(o, xt, w.t());
  }
}

}  // namespace
}  // namespace cpu

// The CPU kernels compute in float32 or float64 (the host runs half types through float32).
#define RNNFUSED_CPU_DTYPE_SWITCH(dtype, T, ...)                                          \
  switch (dtype) {                                                                      \
    case c10::ScalarType::Float: { using T = float; __VA_ARGS__; return; }              \
    case c10::ScalarType::Double: { using T = double; __VA_ARGS__; return; }            \
    default: TORCH_CHECK(false, "rnnfused: CPU kernels take float32 or float64, got ", dtype); \
  }

void input_proj_cpu(const void* x, const void* w_ih, const void* b_ih, const void* b_hh, void* out,
                    int64_t rows, int64_t I, int64_t H, c10::ScalarType dtype, bool own) {
  RNNFUSED_CPU_DTYPE_SWITCH(dtype, T, {
    const auto args = std::make_tuple(static_cast<const T*>(x), static_cast<const T*>(w_ih),
                                      static_cast<const T*>(b_ih), static_cast<const T*>(b_hh),
                                      static_cast<T*>(out), rows, I, H);
    if (own) std::apply(cpu::input_proj<T>, args);
    else std::apply(cpu::input_proj_blas<T>, args);
  })
}

// Times the default cell (Cell{}: Elman, tanh), as the policy's cache does not key on the cell;
// a cell whose epilogue changes the balance would pass its Cell here and into that key.
bool cpu_fused_beats_gemm(int64_t B, int64_t H, c10::ScalarType dtype, bool backward, int64_t shares,
                          bool panel) {
  const Cell cell{};
  return RNNFUSED_CELL_SWITCH(cell.kind, C, [&] {
    return dtype == c10::ScalarType::Double
               ? cpu::fused_is_faster<double, C>(B, H, backward, shares, panel)
               : cpu::fused_is_faster<float, C>(B, H, backward, shares, panel);
  });
}

const char* cpu_isa_name() { return cpu::isa_name(cpu::current_isa()); }
int cpu_isa_id() { return static_cast<int>(cpu::current_isa()); }

namespace cpu {
// A cell with a second state (the LSTM) runs rnn_cpu_lstm.cpp's loops. Templates, so that the
// branch not taken is not instantiated.
template <typename T, class C>
void seq_fwd_of(const SeqFwdParams& p, const policy::CpuSeqPath& path) {
  if constexpr (C::kHasC) gated_seq_fwd<T, C>(p, path);
  else fwd_impl<T, C>(p, path);
}
template <typename T, class C>
void seq_bwd_of(const SeqBwdParams& p, const policy::CpuSeqPath& path) {
  if constexpr (C::kHasC) gated_seq_bwd<T, C>(p, path);
  else bwd_impl<T, C>(p, path);
}
}  // namespace cpu

void seq_fwd_cpu(const SeqFwdParams& p, c10::ScalarType dtype, const policy::CpuSeqPath& path) {
  RNNFUSED_CPU_DTYPE_SWITCH(dtype, T,
                            RNNFUSED_CELL_SWITCH(p.cell.kind, C, [&] { cpu::seq_fwd_of<T, C>(p, path); }))
}

void seq_bwd_cpu(const SeqBwdParams& p, c10::ScalarType dtype, const policy::CpuSeqPath& path) {
  RNNFUSED_CPU_DTYPE_SWITCH(dtype, T,
                            RNNFUSED_CELL_SWITCH(p.cell.kind, C, [&] { cpu::seq_bwd_of<T, C>(p, path); }))
}

}  // namespace rnnfused
