// rnnfused CPU recurrence of a cell with gate blocks and a second state (the LSTM: C::kHasC;
// rnn.h's SeqFwdParams / SeqBwdParams, their kHasC fields), forward and backward.
//
// The BLAS path, a product per step through ATen (the fused forms come next: epilogue.h,
// "Units and gates"):
//  - forward, step t: z_t += h_{t-1} W_hhᵀ (one GEMM onto the hoisted x_t W_ihᵀ + b, G·H columns
//    wide); then C's pointwise forward over each active row (CellKernels::gates_fwd_row: the gate
//    activations in place of z_t, c_t, h̃_t; vectorised per instruction set); with a projection,
//    h_t = h̃_t W_hrᵀ (a second GEMM).
//  - backward, step t (in reverse order): dL/dh_t = grad_out_t + the carried dh; with a
//    projection, dL/dh̃_t = dL/dh_t W_hr (GEMM); dz_t and the carried dc from C's pointwise
//    backward (gates_bwd_row); dh = dz_t W_hh (GEMM, K = G·H).
// Per-item lengths: an item inactive at step t keeps its state (h, c forward; dh, dc backward),
// outputs zero there and has zero dz. The running state lives in a buffer of its own (B rows of
// h and of c), so masked and unmasked input run the same loop; a GEMM runs over the prefix of
// rows still active where the lengths are sorted, else over all B.
#include "rnn_cpu_lstm.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../cells/switch.h"
#include "row_table.h"

namespace rnnfused {
namespace cpu {
namespace {

// Row-major C(m×n) = A(m×k) · (trans_b ? B(n×k)ᵀ : B(k×n)) through ATen's BLAS, onto C when
// accumulate.
template <typename T>
void gemm(T* C, const T* A, const T* Bm, int64_t m, int64_t n, int64_t k, bool trans_b,
          bool accumulate) {
  if (m == 0 || n == 0) return;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor c = at::from_blob(C, {m, n}, opts);
  if (k == 0) {
    if (!accumulate) c.zero_();
    return;
  }
  const at::Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, opts);
  const at::Tensor b = trans_b ? at::from_blob(const_cast<T*>(Bm), {n, k}, opts).t()
                               : at::from_blob(const_cast<T*>(Bm), {k, n}, opts);
  if (accumulate) c.addmm_(a, b);
  else at::mm_out(c, a, b);
}

// Per-item lengths (validated), or all T.
struct Lengths {
  const int64_t* len = nullptr;
  int64_t T = 0;
  bool sorted_desc = true;

  Lengths(const int64_t* l, int64_t B, int64_t T_) : len(l), T(T_) {
    if (!len) return;
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK(len[b] >= 0 && len[b] <= T, "rnnfused: lengths[", b, "] = ", len[b],
                  " is outside [0, ", T, "]");
      if (b > 0 && len[b] > len[b - 1]) sorted_desc = false;
    }
  }
  int64_t of(int64_t b) const { return len ? len[b] : T; }
  bool active(int64_t b, int64_t t) const { return t < of(b); }
  int64_t first_step(int64_t b, bool reverse) const { return reverse ? of(b) - 1 : 0; }
  // Rows a GEMM at step t must cover: the active prefix where the lengths are sorted, else B.
  int64_t rows(int64_t B, int64_t t) const {
    if (!len || !sorted_desc) return B;
    return std::upper_bound(len, len + B, t, [](int64_t tt, int64_t l) { return tt >= l; }) - len;
  }
};

template <typename T, class C>
void fwd(const SeqFwdParams& p) {
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
    const int64_t m = L.rows(B, t);
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
void bwd(const SeqBwdParams& p) {
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
    const int64_t m = L.rows(B, t);
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

}  // namespace

template <typename T, class C>
void gated_seq_fwd(const SeqFwdParams& p) {
  fwd<T, C>(p);
}

template <typename T, class C>
void gated_seq_bwd(const SeqBwdParams& p) {
  bwd<T, C>(p);
}

template void gated_seq_fwd<float, LSTM>(const SeqFwdParams&);
template void gated_seq_fwd<double, LSTM>(const SeqFwdParams&);
template void gated_seq_bwd<float, LSTM>(const SeqBwdParams&);
template void gated_seq_bwd<double, LSTM>(const SeqBwdParams&);

}  // namespace cpu
}  // namespace rnnfused
