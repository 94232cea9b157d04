// rnnfused CPU recurrence of a cell with gate blocks and a second state (the LSTM: C::kHasC;
// rnn.h's SeqFwdParams / SeqBwdParams, their kHasC fields), forward and backward, on the path
// policy::cpu_seq_path chooses (RNNFUSED_CPU_KERNEL forces one).
//
// The fused path (no ATen call per step; W_hh, W_hr packed once per call, panel_pack.h):
//  - forward, step t: one pass of the panel form with the cell's epilogue (CellKernels::
//    panel_rows, PanelArgs' G > 1 form): the G gate sums of a vector of units, hoisted x_t W_ihᵀ + b
//    plus h_{t-1} W_hhᵀ, stay in registers while C's forward turns them into the activations
//    (saved in place of z_t), c_t and h̃_t. With a projection, h_t = h̃_t W_hrᵀ is a second
//    product per step (the plain panel form, RowKernels::panel_rows). h_{t-1} and c_{t-1} are
//    read from the neighbouring step's outputs (h0, c0 at an item's first step). Where a step is
//    big enough, both products' columns are split across the intra-op threads, which meet once
//    per product (run_steps, rnn_cpu_steps.h).
//  - backward, step t: with a projection, dL/dh̃_t = dL/dh_t W_hr (plain panel form, W_hr
//    packed by columns); dz_t and the carried dc from C's pointwise backward (gates_bwd_row);
//    dh = dz_t W_hh (plain panel form, K = G·H, W_hh packed by columns). One thread.
// The BLAS path, a product per step through ATen:
//  - forward, step t: z_t += h_{t-1} W_hhᵀ (one GEMM onto the hoisted x_t W_ihᵀ + b, G·H columns
//    wide); then C's pointwise forward over each active row (CellKernels::gates_fwd_row: the gate
//    activations in place of z_t, c_t, h̃_t; vectorised per instruction set); with a projection,
//    h_t = h̃_t W_hrᵀ (a second GEMM).
//  - backward, step t (in reverse order): dL/dh_t = grad_out_t + the carried dh; with a
//    projection, dL/dh̃_t = dL/dh_t W_hr (GEMM); dz_t and the carried dc from C's pointwise
//    backward (gates_bwd_row); dh = dz_t W_hh (GEMM, K = G·H).
// Per-item lengths: an item inactive at step t keeps its state (h, c forward; dh, dc backward),
// outputs zero there and has zero dz. The BLAS path's running state lives in a buffer of its own
// (B rows of h and of c), so masked and unmasked input run the same loop; a GEMM runs over the
// prefix of rows still active where the lengths are sorted, else over all B. The fused path
// passes the active rows' pointers.
#include "rnn_cpu_lstm.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../cells/switch.h"
#include "../policy.h"
#include "panel_pack.h"
#include "rnn_cpu_steps.h"
#include "seq_common.h"
#include "row_table.h"

namespace rnnfused {
namespace cpu {
namespace {

template <typename T, class C>
void fwd_gemm(const SeqFwdParams& p) {
  constexpr int64_t G = C::kGates;
  const int64_t T_ = p.T, B = p.B, H = p.H, P = p.P, GH = G * H;
  const bool proj = p.w_hr != nullptr;
  T* out = static_cast<T*>(p.out);
  T* gates = static_cast<T*>(p.gates);
  T* cs = static_cast<T*>(p.cs);
  T* hp = static_cast<T*>(p.hp);
  const T* W = static_cast<const T*>(p.w_hh);
  const T* Wr = static_cast<const T*>(p.w_hr);
  const Lengths L(p.lengths, B, T_);
  const CellKernels<T, C>& k = isa_tables<T>().template cell<C>();
  // The running state: h (B, P) and c (B, H).
  std::vector<T> h(static_cast<size_t>(B * P)), c(static_cast<size_t>(B * H));
  std::memcpy(h.data(), p.h0, sizeof(T) * B * P);
  std::memcpy(c.data(), p.c0, sizeof(T) * B * H);
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    T* z = gates + t * B * GH;
    T* ct = cs + t * B * H;
    T* ot = out + t * B * P;
    T* ht = proj ? hp + t * B * H : ot;  // h̃_t
    const int64_t m = L.rows_to_compute(B, t);
    gemm<T>(z, h.data(), W, m, GH, P, /*trans_b=*/true, /*accumulate=*/true);
    for (int64_t b = 0; b < B; ++b) {
      if (!L.active(b, t)) {
        std::fill(z + b * GH, z + (b + 1) * GH, T(0));
        std::fill(ct + b * H, ct + (b + 1) * H, T(0));
        std::fill(ht + b * H, ht + (b + 1) * H, T(0));
        continue;
      }
      k.gates_fwd_row(z + b * GH, c.data() + b * H, ct + b * H, ht + b * H, H);
      std::memcpy(c.data() + b * H, ct + b * H, sizeof(T) * H);
    }
    if (proj) gemm<T>(ot, ht, Wr, m, P, H, /*trans_b=*/true, /*accumulate=*/false);
    for (int64_t b = 0; b < B; ++b) {
      T* o = ot + b * P;
      if (!L.active(b, t)) {
        std::fill(o, o + P, T(0));
        continue;
      }
      std::memcpy(h.data() + b * P, o, sizeof(T) * P);
    }
  }
  std::memcpy(p.hn, h.data(), sizeof(T) * B * P);
  std::memcpy(p.cn, c.data(), sizeof(T) * B * H);
}

template <typename T, class C>
void bwd_gemm(const SeqBwdParams& p) {
  constexpr int64_t G = C::kGates;
  const int64_t T_ = p.T, B = p.B, H = p.H, P = p.P, GH = G * H;
  const bool proj = p.w_hr != nullptr;
  const T* g = static_cast<const T*>(p.grad_out);
  const T* gates = static_cast<const T*>(p.gates);
  const T* cs = static_cast<const T*>(p.cs);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* W = static_cast<const T*>(p.w_hh);
  const T* Wr = static_cast<const T*>(p.w_hr);
  T* dz = static_cast<T*>(p.dz);
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dhp = static_cast<T*>(p.dhp);
  const Lengths L(p.lengths, B, T_);
  const CellKernels<T, C>& k = isa_tables<T>().template cell<C>();
  // The carried dL/dh (B, P) and dL/dc (B, H); scratch: dL/dh_t (B, P), dL/dh̃_t (B, H), and
  // the next dh before it is kept for the active rows (B, P).
  std::vector<T> dh(static_cast<size_t>(B * P)), dc(static_cast<size_t>(B * H));
  std::vector<T> dht(static_cast<size_t>(B * P)), dhh(proj ? static_cast<size_t>(B * H) : 0);
  std::vector<T> next(static_cast<size_t>(B * P));
  if (p.grad_hn) std::memcpy(dh.data(), p.grad_hn, sizeof(T) * B * P);
  if (p.grad_cn) std::memcpy(dc.data(), p.grad_cn, sizeof(T) * B * H);
  std::fill(dz_first, dz_first + B * GH, T(0));
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = p.reverse ? s : T_ - 1 - s;
    const int64_t m = L.rows_to_compute(B, t);
    T* dzt = dz + t * B * GH;
    // dL/dh_t for the active rows (the others: zero, so nothing flows through them).
    for (int64_t b = 0; b < B; ++b) {
      T* d = dht.data() + b * P;
      if (!L.active(b, t)) {
        std::fill(d, d + P, T(0));
        continue;
      }
      const T* gt = g ? g + (t * B + b) * P : nullptr;
      for (int64_t n = 0; n < P; ++n) d[n] = dh[b * P + n] + (gt ? gt[n] : T(0));
    }
    const T* dtil = dht.data();  // dL/dh̃_t
    if (proj) {
      std::memcpy(dhp + t * B * P, dht.data(), sizeof(T) * B * P);
      gemm<T>(dhh.data(), dht.data(), Wr, m, H, P, /*trans_b=*/false, /*accumulate=*/false);
      dtil = dhh.data();
    }
    for (int64_t b = 0; b < B; ++b) {
      T* dzr = dzt + b * GH;
      if (!L.active(b, t)) {
        std::fill(dzr, dzr + GH, T(0));
        continue;
      }
      const bool first = t == L.first_step(b, p.reverse);
      const T* c_prev = first ? c0 + b * H : cs + ((p.reverse ? t + 1 : t - 1) * B + b) * H;
      k.gates_bwd_row(dzr, dtil + b * H, nullptr, dc.data() + b * H, gates + (t * B + b) * GH,
                      c_prev, cs + (t * B + b) * H, H);
      if (first) std::memcpy(dz_first + b * GH, dzr, sizeof(T) * GH);
    }
    gemm<T>(next.data(), dzt, W, m, P, GH, /*trans_b=*/false, /*accumulate=*/false);
    for (int64_t b = 0; b < m; ++b)
      if (L.active(b, t)) std::memcpy(dh.data() + b * P, next.data() + b * P, sizeof(T) * P);
  }
  std::memcpy(p.grad_h0, dh.data(), sizeof(T) * B * P);
  std::memcpy(p.grad_c0, dc.data(), sizeof(T) * B * H);
}

// Values in ceil(N / kPanel) panels of K·G·kPanel (panel_pack.h).
inline size_t panel_size(int64_t N, int64_t K, int64_t G = 1) {
  return static_cast<size_t>((N + kPanel - 1) / kPanel * kPanel * K * G);
}

// The fused forward (top). Work item s of a share: the gate pass of step s / phases over the
// share's units, or (phases = 2, with a projection) the projection of that step over its share
// of the P outputs.
template <typename T, class C>
void fwd_fused(const SeqFwdParams& p, int64_t nshares) {
  constexpr int64_t G = C::kGates;
  const int64_t T_ = p.T, B = p.B, H = p.H, P = p.P, GH = G * H;
  const bool proj = p.w_hr != nullptr;
  T* out = static_cast<T*>(p.out);
  T* gates = static_cast<T*>(p.gates);
  T* cs = static_cast<T*>(p.cs);
  T* ht_all = proj ? static_cast<T*>(p.hp) : out;  // h̃_t rows (H wide; P = H without projection)
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  const Lengths L(p.lengths, B, T_);
  const IsaTables<T>& tab = isa_tables<T>();
  const CellKernels<T, C>& k = tab.template cell<C>();
  const RowKernels<T>& plain = tab.rows;
  std::vector<T> wp(panel_size(H, P, G)), wrp(proj ? panel_size(P, H) : 0);
  pack_panels(wp.data(), static_cast<const T*>(p.w_hh), H, P, G);
  if (proj) pack_panels(wrp.data(), static_cast<const T*>(p.w_hr), P, H);
  // Row pointers of each share, refilled every work item.
  const size_t nb = static_cast<size_t>(nshares * B);
  std::vector<T*> ys(nb), cos(nb), acts(nb);
  std::vector<const T*> xs(nb), cps(nb);
  const int64_t phases = proj ? 2 : 1;
  auto step_of = [&](int64_t s) { return p.reverse ? T_ - 1 - s : s; };
  if (B > 0) run_steps(T_ * phases, nshares, [&](int64_t s, int64_t share) {
    const int64_t t = step_of(s / phases), prev = p.reverse ? t + 1 : t - 1;
    T** y = ys.data() + share * B;
    const T** x = xs.data() + share * B;
    int64_t n = 0;
    if (s % phases == 1) {  // h_t = h̃_t W_hrᵀ, outputs [n0, n1) of P
      const auto [n0, n1] = share_columns(P, nshares, share);
      for (int64_t b = 0; b < B; ++b) {
        T* o = out + (t * B + b) * P;
        if (!L.active(b, t)) { std::fill(o + n0, o + n1, T(0)); continue; }
        y[n] = o;
        x[n++] = ht_all + (t * B + b) * H;
      }
      PanelArgs<T> a;
      a.nrows = n;
      a.y = y;
      a.x = x;
      a.wp = wrp.data();
      a.K = H;
      plain.panel_rows(a, n0, n1);
      return;
    }
    const auto [n0, n1] = share_columns(H, nshares, share);  // units
    T** co = cos.data() + share * B;
    T** act = acts.data() + share * B;
    const T** cp = cps.data() + share * B;
    for (int64_t b = 0; b < B; ++b) {
      T* z = gates + (t * B + b) * GH;
      T* ct = cs + (t * B + b) * H;
      T* ht = ht_all + (t * B + b) * H;
      if (!L.active(b, t)) {
        for (int64_t g = 0; g < G; ++g) std::fill(z + g * H + n0, z + g * H + n1, T(0));
        std::fill(ct + n0, ct + n1, T(0));
        std::fill(ht + n0, ht + n1, T(0));
        continue;
      }
      const bool first = t == L.first_step(b, p.reverse);
      x[n] = first ? h0 + b * P : out + (prev * B + b) * P;
      cp[n] = first ? c0 + b * H : cs + (prev * B + b) * H;
      act[n] = z;
      co[n] = ct;
      y[n++] = ht;
    }
    PanelArgs<T> a;
    a.nrows = n;
    a.y = y;
    a.init = act;
    a.x = x;
    a.wp = wp.data();
    a.K = P;
    a.H = H;
    a.c_prev = cp;
    a.c_out = co;
    a.act = act;
    k.panel_rows(a, n0, n1);
  });
  // h_n, c_n: each item's last active step, (h0, c0) if it has none.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = T_ > 0 ? L.of(b) : 0, last = p.reverse ? 0 : len - 1;
    std::memcpy(static_cast<T*>(p.hn) + b * P, len == 0 ? h0 + b * P : out + (last * B + b) * P,
                sizeof(T) * P);
    std::memcpy(static_cast<T*>(p.cn) + b * H, len == 0 ? c0 + b * H : cs + (last * B + b) * H,
                sizeof(T) * H);
  }
}

// The fused backward (top): the BLAS path's loop with its products in the plain panel form, over
// the active rows only (so the carried dh of an inactive row is left as it is, with no copy).
template <typename T, class C>
void bwd_fused(const SeqBwdParams& p) {
  constexpr int64_t G = C::kGates;
  const int64_t T_ = p.T, B = p.B, H = p.H, P = p.P, GH = G * H;
  const bool proj = p.w_hr != nullptr;
  const T* g = static_cast<const T*>(p.grad_out);
  const T* gates = static_cast<const T*>(p.gates);
  const T* cs = static_cast<const T*>(p.cs);
  const T* c0 = static_cast<const T*>(p.c0);
  T* dz = static_cast<T*>(p.dz);
  T* dz_first = static_cast<T*>(p.dz_first);
  T* dhp = static_cast<T*>(p.dhp);
  const Lengths L(p.lengths, B, T_);
  const IsaTables<T>& tab = isa_tables<T>();
  const CellKernels<T, C>& k = tab.template cell<C>();
  const RowKernels<T>& plain = tab.rows;
  // W_hh (G·H, P) as the (K = G·H, N = P) matrix of dh = dz W_hh; W_hr (P, H) as (K = P, N = H).
  std::vector<T> wp(panel_size(P, GH)), wrp(proj ? panel_size(H, P) : 0);
  pack_panels_kn(wp.data(), static_cast<const T*>(p.w_hh), GH, P);
  if (proj) pack_panels_kn(wrp.data(), static_cast<const T*>(p.w_hr), P, H);
  // The carried dL/dh (B, P) and dL/dc (B, H); dL/dh_t (B, P) and dL/dh̃_t (B, H).
  std::vector<T> dh(static_cast<size_t>(B * P)), dc(static_cast<size_t>(B * H));
  std::vector<T> dht(static_cast<size_t>(B * P)), dhh(proj ? static_cast<size_t>(B * H) : 0);
  std::vector<T*> ys(static_cast<size_t>(B));
  std::vector<const T*> xs(static_cast<size_t>(B));
  if (p.grad_hn) std::memcpy(dh.data(), p.grad_hn, sizeof(T) * B * P);
  if (p.grad_cn) std::memcpy(dc.data(), p.grad_cn, sizeof(T) * B * H);
  std::fill(dz_first, dz_first + B * GH, T(0));
  // y_r = x_r · (packed wp) over columns [0, N) for the rows set in ys / xs.
  auto product = [&](int64_t n, const std::vector<T>& w, int64_t K, int64_t N) {
    PanelArgs<T> a;
    a.nrows = n;
    a.y = ys.data();
    a.x = xs.data();
    a.wp = w.data();
    a.K = K;
    plain.panel_rows(a, 0, N);
  };
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = p.reverse ? s : T_ - 1 - s;
    T* dzt = dz + t * B * GH;
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      T* d = dht.data() + b * P;
      if (!L.active(b, t)) {
        std::fill(d, d + P, T(0));
        continue;
      }
      const T* gt = g ? g + (t * B + b) * P : nullptr;
      for (int64_t c = 0; c < P; ++c) d[c] = dh[b * P + c] + (gt ? gt[c] : T(0));
      if (proj) {
        ys[n] = dhh.data() + b * H;
        xs[n++] = d;
      }
    }
    const T* dtil = dht.data();  // dL/dh̃_t
    if (proj) {
      std::memcpy(dhp + t * B * P, dht.data(), sizeof(T) * B * P);
      product(n, wrp, P, H);
      dtil = dhh.data();
    }
    n = 0;
    for (int64_t b = 0; b < B; ++b) {
      T* dzr = dzt + b * GH;
      if (!L.active(b, t)) {
        std::fill(dzr, dzr + GH, T(0));
        continue;
      }
      const bool first = t == L.first_step(b, p.reverse);
      const T* c_prev = first ? c0 + b * H : cs + ((p.reverse ? t + 1 : t - 1) * B + b) * H;
      k.gates_bwd_row(dzr, dtil + b * H, nullptr, dc.data() + b * H, gates + (t * B + b) * GH,
                      c_prev, cs + (t * B + b) * H, H);
      if (first) std::memcpy(dz_first + b * GH, dzr, sizeof(T) * GH);
      ys[n] = dh.data() + b * P;
      xs[n++] = dzr;
    }
    product(n, wp, GH, P);
  }
  std::memcpy(p.grad_h0, dh.data(), sizeof(T) * B * P);
  std::memcpy(p.grad_c0, dc.data(), sizeof(T) * B * H);
}

}  // namespace

template <typename T, class C>
void gated_seq_fwd(const SeqFwdParams& p, const policy::CpuSeqPath& path) {
  if (path.fused) fwd_fused<T, C>(p, path.shares);
  else fwd_gemm<T, C>(p);
}

template <typename T, class C>
void gated_seq_bwd(const SeqBwdParams& p, const policy::CpuSeqPath& path) {
  if (path.fused) bwd_fused<T, C>(p);
  else bwd_gemm<T, C>(p);
}

template void gated_seq_fwd<float, LSTM>(const SeqFwdParams&, const policy::CpuSeqPath&);
template void gated_seq_fwd<double, LSTM>(const SeqFwdParams&, const policy::CpuSeqPath&);
template void gated_seq_bwd<float, LSTM>(const SeqBwdParams&, const policy::CpuSeqPath&);
template void gated_seq_bwd<double, LSTM>(const SeqBwdParams&, const policy::CpuSeqPath&);

}  // namespace cpu
}  // namespace rnnfused
