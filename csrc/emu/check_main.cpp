// rnnfused SIMT emulator: a standalone check of the CUDA recurrence kernels (no Python, no ATen
// tensors; libc10 only for its error type). It runs the real entry points (seq_fwd_cuda /
// seq_bwd_cuda: heuristic, plans, launchers, kernels) under the emulator on a matrix of cases —
// both kernels, forward and backward, four dtypes, G = 1 and G > 1 plans, lengths (0, T,
// unsorted), reverse, relu — against a float64 reference, and requires every schedule to give
// bit-identical results. Built plain, with AddressSanitizer + UBSan, and with ThreadSanitizer by
// tests/emu_support.py (check_binary); the mutation check (tools/emu_mutate.py) builds it from mutated kernels.
//
//   emu_check [--quick] [--schedules N] [--filter SUBSTRING] [--list]
// Exit status 0 when every case passes; each failure is printed on a line starting with FAIL.
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../cuda/rnn_cuda.h"
#include "runtime_emu.h"
#include "simt.h"

namespace {

using rnnfused::SeqBwdParams;
using rnnfused::SeqFwdParams;
namespace rt = rnnfused::cuda_detail::rt;

// ------------------------------------------------------------------------------------------------
// Storage types on the host (the emulator's __half / __nv_bfloat16 layouts).

enum class DT { f32, f64, f16, bf16 };
const char* dt_name(DT d) {
  switch (d) {
    case DT::f32: return "f32";
    case DT::f64: return "f64";
    case DT::f16: return "f16";
    default: return "bf16";
  }
}
size_t dt_size(DT d) { return d == DT::f64 ? 8 : d == DT::f32 ? 4 : 2; }
size_t acc_size(DT d) { return d == DT::f64 ? 8 : 4; }
c10::ScalarType dt_scalar(DT d) {
  switch (d) {
    case DT::f32: return c10::ScalarType::Float;
    case DT::f64: return c10::ScalarType::Double;
    case DT::f16: return c10::ScalarType::Half;
    default: return c10::ScalarType::BFloat16;
  }
}

// A buffer of n elements of a storage type, filled from / read as double.
struct Buf {
  DT dt;
  std::vector<unsigned char> bytes;
  Buf(DT d, size_t n) : dt(d), bytes(n * dt_size(d)) {}
  size_t n() const { return bytes.size() / dt_size(dt); }
  void* data() { return bytes.data(); }
  void set(size_t i, double v) {
    switch (dt) {
      case DT::f32: { float f = float(v); std::memcpy(&bytes[i * 4], &f, 4); break; }
      case DT::f64: std::memcpy(&bytes[i * 8], &v, 8); break;
      case DT::f16: { unsigned short h = simt::float_to_half_bits_rn(float(v)); std::memcpy(&bytes[i * 2], &h, 2); break; }
      case DT::bf16: { unsigned short h = simt::float_to_bf16_bits_rn(float(v)); std::memcpy(&bytes[i * 2], &h, 2); break; }
    }
  }
  double get(size_t i) const {
    switch (dt) {
      case DT::f32: { float f; std::memcpy(&f, &bytes[i * 4], 4); return f; }
      case DT::f64: { double v; std::memcpy(&v, &bytes[i * 8], 8); return v; }
      case DT::f16: { unsigned short h; std::memcpy(&h, &bytes[i * 2], 2); return simt::half_bits_to_float(h); }
      default: { unsigned short h; std::memcpy(&h, &bytes[i * 2], 2); return simt::bf16_bits_to_float(h); }
    }
  }
};

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double uniform() {  // [-1, 1)
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return double(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
  }
};

// ------------------------------------------------------------------------------------------------
// Cases.

struct Case {
  DT dt;
  const char* kernel;  // RNNFUSED_KERNEL
  const char* device;  // emulated device preset
  int64_t T, B, H;
  bool relu, reverse, lengths, grad_out, grad_hn;
  int sms = 0;       // > 0: the emulated driver lets launches use only this many SMs (as MPS would)
  int occ_cap = -1;  // >= 0: its occupancy calculator answers at most this many CTAs per SM
  bool stress = false;  // a long sequence ("long-" before the device: the mutants' filters skip it)
  std::string name() const {
    char b[200];
    const std::string hooks = (sms ? "-" + std::to_string(sms) + "sm" : std::string()) +
                              (occ_cap >= 0 ? "-occ" + std::to_string(occ_cap) : std::string());
    std::snprintf(b, sizeof b, "%s-%s-%s%s%s-T%lld-B%lld-H%lld%s%s%s%s%s", dt_name(dt), kernel, stress ? "long-" : "", device,
                  hooks.c_str(), (long long)T, (long long)B, (long long)H,
                  relu ? "-relu" : "", reverse ? "-rev" : "", lengths ? "-len" : "", grad_out ? "" : "-nogout",
                  grad_hn ? "" : "-nogh");
    return b;
  }
};

std::vector<Case> make_cases(bool quick) {
  std::vector<Case> cs;
  const DT dts[] = {DT::f32, DT::f64, DT::f16, DT::bf16};
  for (DT dt : dts) {
    const bool half = dt == DT::f16 || dt == DT::bf16;
    const int64_t Hg = half ? 130 : 33;  // needs a CTA group (G > 1) on the tiny device
    for (const char* k : {"stepwise", "persistent"}) {
      // G = 1 (H100) and G > 1 (tiny): lengths with 0 and T, unsorted; reverse; relu.
      cs.push_back({dt, k, "tiny", 4, 5, Hg, false, false, true, true, true});
      cs.push_back({dt, k, "tiny", 3, 3, Hg, true, true, true, true, false});
      cs.push_back({dt, k, "h100", 5, 3, 33, false, true, false, true, true});
      cs.push_back({dt, k, "h100", 4, 9, 33, true, false, true, false, true});
      if (!quick) {
        cs.push_back({dt, k, "h100", 3, 1, 1, false, false, false, true, true});
        cs.push_back({dt, k, "h100", 2, 3, 257, false, true, true, true, true});
        cs.push_back({dt, k, "tiny", 1, 2, Hg, true, false, false, true, true});
        cs.push_back({dt, k, "h100", 3, 40, 20, false, false, true, true, true});  // B > 32: large tiles
      }
    }
    // auto on a CTA-group plan whose cooperative launch the driver refuses (one SM for launches,
    // as under MPS): the stepwise kernel runs instead, and the refusal is remembered.
    cs.push_back({dt, "auto", "tiny", 4, 9, Hg, false, false, true, true, true, 1});
  }
  // auto where the driver's occupancy calculator says the kernel cannot be resident at all (CUDA's
  // rule written out says it can): the plan must follow the driver and not even try.
  cs.push_back({DT::f32, "auto", "tiny", 3, 5, 33, false, false, true, true, true, 0, 0});
  // The group barrier over a long sequence (G > 1, several batch groups).
  if (!quick) cs.push_back({DT::f32, "persistent", "tiny", 200, 6, 33, false, false, true, true, true, 0, -1, true});
  return cs;
}

double act(double x, bool relu) { return relu ? (x < 0 ? 0 : x) : std::tanh(x); }
double dact(double y, bool relu) { return relu ? (y <= 0 ? 0 : 1) : 1 - y * y; }

// The results of one run of a case (bytes, compared bit for bit across schedules).
struct Result {
  Buf out, hn, dz, dz_first, gh0;
  Result(DT d, const Case& c)
      : out(d, c.T * c.B * c.H), hn(d, c.B * c.H), dz(d, c.T * c.B * c.H), dz_first(d, c.B * c.H), gh0(d, c.B * c.H) {}
};

struct Inputs {
  Buf pre, h0, w, gout, ghn;
  std::vector<int64_t> len;
  Inputs(const Case& c, uint64_t seed)
      : pre(c.dt, c.T * c.B * c.H), h0(c.dt, c.B * c.H), w(c.dt, c.H * c.H), gout(c.dt, c.T * c.B * c.H), ghn(c.dt, c.B * c.H) {
    Rng r(seed);
    const double ws = 1.5 / std::sqrt(double(c.H));
    for (size_t i = 0; i < pre.n(); ++i) pre.set(i, r.uniform());
    for (size_t i = 0; i < h0.n(); ++i) h0.set(i, 0.5 * r.uniform());
    for (size_t i = 0; i < w.n(); ++i) w.set(i, ws * r.uniform());
    for (size_t i = 0; i < gout.n(); ++i) gout.set(i, r.uniform());
    for (size_t i = 0; i < ghn.n(); ++i) ghn.set(i, r.uniform());
    if (c.lengths) {  // unsorted, with 0 and T
      const int64_t pattern[] = {c.T, 0, 1, c.T, c.T > 2 ? 2 : c.T, c.T > 1 ? c.T - 1 : c.T};
      for (int64_t b = 0; b < c.B; ++b) len.push_back(pattern[b % 6]);
    }
  }
};

// The stream the checker launches on: not the default one, so that the emulated runtime can hold
// the launchers' scratch memory to the stream of their launches.
void* const kStream = reinterpret_cast<void*>(0x5);

Result run(const Case& c, const Inputs& in) {
  Result r(c.dt, c);
  r.out = in.pre;  // the hoisted input projection: pre_t, overwritten with h_t
  const size_t acc = acc_size(c.dt);
  std::vector<unsigned char> state(2 * c.B * c.H * acc);
  SeqFwdParams p;
  p.lengths = c.lengths ? in.len.data() : nullptr;
  p.state = state.data();
  p.T = c.T;
  p.B = c.B;
  p.H = c.H;
  p.cell.act = c.relu ? rnnfused::Act::Relu : rnnfused::Act::Tanh;
  p.reverse = c.reverse;
  p.out = r.out.data();
  p.h0 = const_cast<Buf&>(in.h0).data();
  p.w_hh = const_cast<Buf&>(in.w).data();
  p.hn = r.hn.data();
  rnnfused::seq_fwd_cuda(p, dt_scalar(c.dt), kStream);
  SeqBwdParams q;
  static_cast<rnnfused::SeqCommon&>(q) = static_cast<rnnfused::SeqCommon&>(p);
  q.grad_out = c.grad_out ? const_cast<Buf&>(in.gout).data() : nullptr;
  q.grad_hn = c.grad_hn ? const_cast<Buf&>(in.ghn).data() : nullptr;
  q.out = r.out.data();
  q.w_hh = p.w_hh;
  q.dz = r.dz.data();
  q.dz_first = r.dz_first.data();
  q.grad_h0 = r.gh0.data();
  rnnfused::seq_bwd_cuda(q, dt_scalar(c.dt), kStream);
  return r;
}

// The float64 reference: forward from the (rounded) inputs; backward from the kernel's own
// forward output, so that each pass is checked on its own.
struct Ref {
  std::vector<double> out, hn, dz, dz_first, gh0;
};

Ref reference(const Case& c, const Inputs& in, const Buf& kernel_out) {
  const int64_t T = c.T, B = c.B, H = c.H;
  Ref f;
  f.out.assign(T * B * H, 0.0);
  f.hn.assign(B * H, 0.0);
  f.dz.assign(T * B * H, 0.0);
  f.dz_first.assign(B * H, 0.0);
  f.gh0.assign(B * H, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = c.lengths ? in.len[b] : T;
    std::vector<double> h(H), hn(H);
    for (int64_t j = 0; j < H; ++j) h[j] = in.h0.get(b * H + j);
    for (int64_t s = 0; s < len; ++s) {
      const int64_t t = c.reverse ? len - 1 - s : s;
      for (int64_t j = 0; j < H; ++j) {
        double z = in.pre.get((t * B + b) * H + j);
        for (int64_t k = 0; k < H; ++k) z += in.w.get(j * H + k) * h[k];
        hn[j] = act(z, c.relu);
      }
      h = hn;
      for (int64_t j = 0; j < H; ++j) f.out[(t * B + b) * H + j] = h[j];
    }
    for (int64_t j = 0; j < H; ++j) f.hn[b * H + j] = h[j];
    // Backward over the kernel's outputs, in the reverse of the forward's processing order.
    std::vector<double> dh(H), dz(H);
    for (int64_t j = 0; j < H; ++j) dh[j] = c.grad_hn ? in.ghn.get(b * H + j) : 0.0;
    for (int64_t s = len - 1; s >= 0; --s) {
      const int64_t t = c.reverse ? len - 1 - s : s;
      for (int64_t j = 0; j < H; ++j) {
        const size_t i = (t * B + b) * H + j;
        const double g = c.grad_out ? in.gout.get(i) : 0.0;
        dz[j] = (dh[j] + g) * dact(kernel_out.get(i), c.relu);
        f.dz[i] = dz[j];
      }
      if (s == 0)
        for (int64_t j = 0; j < H; ++j) f.dz_first[b * H + j] = dz[j];
      for (int64_t k = 0; k < H; ++k) {
        double v = 0;
        for (int64_t j = 0; j < H; ++j) v += dz[j] * in.w.get(j * H + k);
        dh[k] = v;
      }
    }
    for (int64_t j = 0; j < H; ++j) f.gh0[b * H + j] = dh[j];
  }
  return f;
}

// Tolerances against the float64 reference, relative to max(1, |ref|): the storage rounding of
// each output (the state itself is kept in the accumulation type) and the accumulation order.
double tolerance(DT d) {
  switch (d) {
    case DT::f64: return 1e-12;
    case DT::f32: return 2e-5;
    case DT::f16: return 4e-3;
    default: return 3e-2;
  }
}

int compare(const Case& c, const char* what, const Buf& got, const std::vector<double>& want, std::string* msg) {
  const double tol = tolerance(c.dt);
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = got.get(i), w = want[i];
    if (!(std::fabs(g - w) <= tol * std::max(1.0, std::fabs(w)))) {  // NaN fails
      char b[256];
      std::snprintf(b, sizeof b, "%s[%zu] = %.9g, reference %.9g (tolerance %.1e)", what, i, g, w, tol);
      *msg = b;
      return 1;
    }
  }
  return 0;
}

bool operator==(const Result& a, const Result& b) {
  return a.out.bytes == b.out.bytes && a.hn.bytes == b.hn.bytes && a.dz.bytes == b.dz.bytes &&
         a.dz_first.bytes == b.dz_first.bytes && a.gh0.bytes == b.gh0.bytes;
}

// ------------------------------------------------------------------------------------------------
// The fused cell step (device/cell.cuh): forward and the sequential part of the backward.

struct CellCase {
  DT dt;
  int64_t B, I, H;
  bool relu, bias, grad_x, grad_h;
  std::string name() const {
    char b[160];
    std::snprintf(b, sizeof b, "%s-cell-B%lld-I%lld-H%lld%s%s%s%s", dt_name(dt), (long long)B, (long long)I,
                  (long long)H, relu ? "-relu" : "", bias ? "" : "-nobias", grad_x ? "" : "-nogx", grad_h ? "" : "-nogh");
    return b;
  }
};

std::vector<CellCase> make_cell_cases(bool quick) {
  std::vector<CellCase> cs;
  for (DT dt : {DT::f32, DT::f64, DT::f16, DT::bf16}) {
    cs.push_back({dt, 5, 40, 33, false, true, true, true});
    cs.push_back({dt, 1, 3, 70, true, false, true, false});
    cs.push_back({dt, 9, 5, 70, false, true, false, true});  // dz (630 elements) over 3 blocks
    if (!quick) {
      cs.push_back({dt, 9, 7, 1, false, true, false, true});
      cs.push_back({dt, 3, 300, 130, true, true, true, true});
    }
  }
  return cs;
}

struct CellResult {
  Buf hnew, dz, gx, gh;
  explicit CellResult(const CellCase& c)
      : hnew(c.dt, c.B * c.H), dz(c.dt, c.B * c.H), gx(c.dt, c.B * c.I), gh(c.dt, c.B * c.H) {}
  bool operator==(const CellResult& o) const {
    return hnew.bytes == o.hnew.bytes && dz.bytes == o.dz.bytes && gx.bytes == o.gx.bytes && gh.bytes == o.gh.bytes;
  }
};

struct CellInputs {
  Buf x, h, wih, whh, bih, bhh, g;
  CellInputs(const CellCase& c, uint64_t seed)
      : x(c.dt, c.B * c.I), h(c.dt, c.B * c.H), wih(c.dt, c.H * c.I), whh(c.dt, c.H * c.H), bih(c.dt, c.H),
        bhh(c.dt, c.H), g(c.dt, c.B * c.H) {
    Rng r(seed);
    for (Buf* b : {&x, &h, &g}) for (size_t i = 0; i < b->n(); ++i) b->set(i, r.uniform());
    for (size_t i = 0; i < wih.n(); ++i) wih.set(i, r.uniform() / std::sqrt(double(c.I)));
    for (size_t i = 0; i < whh.n(); ++i) whh.set(i, r.uniform() / std::sqrt(double(c.H)));
    for (Buf* b : {&bih, &bhh}) for (size_t i = 0; i < b->n(); ++i) b->set(i, 0.2 * r.uniform());
  }
};

CellResult run_cell(const CellCase& c, CellInputs& in) {
  CellResult r(c);
  rnnfused::StepFwdParams p;
  p.x = in.x.data();
  p.h = in.h.data();
  p.w_ih = in.wih.data();
  p.w_hh = in.whh.data();
  p.b_ih = c.bias ? in.bih.data() : nullptr;
  p.b_hh = c.bias ? in.bhh.data() : nullptr;
  p.h_new = r.hnew.data();
  p.B = c.B;
  p.I = c.I;
  p.H = c.H;
  p.cell.act = c.relu ? rnnfused::Act::Relu : rnnfused::Act::Tanh;
  rnnfused::step_fwd_cuda(p, dt_scalar(c.dt), kStream);
  rnnfused::StepBwdParams q;
  q.grad_h_new = in.g.data();
  q.h_new = r.hnew.data();
  q.w_ih = p.w_ih;
  q.w_hh = p.w_hh;
  q.dz = r.dz.data();
  q.grad_x = c.grad_x ? r.gx.data() : nullptr;
  q.grad_h = c.grad_h ? r.gh.data() : nullptr;
  q.B = c.B;
  q.I = c.I;
  q.H = c.H;
  q.cell = p.cell;
  rnnfused::step_bwd_cuda(q, dt_scalar(c.dt), kStream);
  return r;
}

std::string check_cell(const CellCase& c, const CellInputs& in, const CellResult& r) {
  const int64_t B = c.B, I = c.I, H = c.H;
  std::vector<double> hn(B * H), dz(B * H), gx(B * I, 0.0), gh(B * H, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < H; ++n) {
      double z = c.bias ? in.bih.get(n) + in.bhh.get(n) : 0.0;
      for (int64_t k = 0; k < I; ++k) z += in.x.get(b * I + k) * in.wih.get(n * I + k);
      for (int64_t k = 0; k < H; ++k) z += in.h.get(b * H + k) * in.whh.get(n * H + k);
      hn[b * H + n] = act(z, c.relu);
      // backward from the kernel's own output, as for the sequence
      dz[b * H + n] = in.g.get(b * H + n) * dact(r.hnew.get(b * H + n), c.relu);
    }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < H; ++n) {
      for (int64_t k = 0; k < I; ++k) gx[b * I + k] += dz[b * H + n] * in.wih.get(n * I + k);
      for (int64_t k = 0; k < H; ++k) gh[b * H + k] += dz[b * H + n] * in.whh.get(n * H + k);
    }
  Case cc{c.dt, "", "", 1, B, H, c.relu, false, false, false, false};
  std::string m;
  if (compare(cc, "h_new", r.hnew, hn, &m) || compare(cc, "dz", r.dz, dz, &m) ||
      (c.grad_x && compare(cc, "grad_x", r.gx, gx, &m)) || (c.grad_h && compare(cc, "grad_h", r.gh, gh, &m)))
    return m;
  return "";
}

// ------------------------------------------------------------------------------------------------
// Running cases under schedules.

struct Sched {
  simt::Schedule s;
  uint64_t seed;
  const char* name;
};
const Sched kScheds[] = {{simt::Schedule::kInOrder, 1, "in-order"}, {simt::Schedule::kReverse, 1, "reversed"},
                         {simt::Schedule::kRandom, 1, "random-1"}, {simt::Schedule::kRandom, 2, "random-2"},
                         {simt::Schedule::kRandom, 3, "random-3"}, {simt::Schedule::kRandom, 4, "random-4"}};
constexpr int kNumScheds = sizeof kScheds / sizeof kScheds[0];

// Runs `once()` under the first `nsched` schedules into `results`; every run must give the same
// bytes as the first, and `check(before, after)` (the emulator's counters around the run) must
// return "". Returns the first problem, or "".
template <typename R, typename Once, typename Check>
std::string under_schedules(int nsched, Once once, Check check, std::vector<R>& results) {
  for (int si = 0; si < nsched; ++si) {
    simt::Options o = simt::get_options();
    o.schedule = kScheds[si].s;
    o.seed = kScheds[si].seed;
    simt::set_options(o);
    const simt::Stats before = simt::stats();
    try {
      results.push_back(once());
    } catch (const std::exception& e) {
      return std::string(kScheds[si].name) + ": " + e.what();
    }
    const std::string problem = check(before, simt::stats());
    if (!problem.empty()) return std::string(kScheds[si].name) + ": " + problem;
    if (results.size() > 1 && !(results[0] == results.back()))
      return std::string(kScheds[si].name) + " differs bit for bit from " + kScheds[0].name;
  }
  return "";
}

// c10 warnings (TORCH_WARN) counted, not printed: the refused-launch cases check theirs.
struct CountingWarnings : c10::WarningHandler {
  int refused = 0, other = 0;
  void process(const c10::Warning& w) override {
    if (w.msg().find("refused the cooperative launch") != std::string::npos) ++refused;
    else ++other;
  }
};
CountingWarnings g_warnings;

struct Selection {
  std::string filter;
  bool list = false;
  int ran = 0, failures = 0;
  uint64_t seed = 7;
};

// For each case the filter selects: `body(case, seed)` returns "" or the failure; one line each.
template <typename C, typename Body>
void for_cases(const std::vector<C>& cases, Selection& sel, Body body) {
  for (const C& c : cases) {
    ++sel.seed;
    const std::string name = c.name();
    if (!sel.filter.empty() && name.find(sel.filter) == std::string::npos) continue;
    if (sel.list) {
      std::printf("%s\n", name.c_str());
      continue;
    }
    ++sel.ran;
    const std::string err = body(c, sel.seed);
    if (!err.empty()) ++sel.failures;
    std::printf("%s %s%s%s\n", err.empty() ? "ok  " : "FAIL", name.c_str(), err.empty() ? "" : ": ", err.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, list = false;
  int nsched = 4;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--list") list = true;
    else if (a == "--schedules" && i + 1 < argc) nsched = std::atoi(argv[++i]);
    else if (a == "--filter" && i + 1 < argc) filter = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--schedules N] [--filter SUBSTRING] [--list]\n", argv[0]);
      return 2;
    }
  }
  nsched = std::max(1, std::min(nsched, kNumScheds));
  c10::WarningUtils::set_warning_handler(&g_warnings);
  Selection sel;
  sel.filter = filter;
  sel.list = list;
  auto no_check = [](const simt::Stats&, const simt::Stats&) { return std::string(); };
  for_cases(make_cases(quick), sel, [&](const Case& c, uint64_t seed) {
    setenv("RNNFUSED_KERNEL", c.kernel, 1);
    rt::set_device_props(rt::device_preset(c.device));
    rt::limit_sms(c.sms);
    rt::cap_occupancy(c.occ_cap);
    rt::reset_driver_stats();
    const int warned_before = g_warnings.refused;
    const Inputs in(c, seed);
    // The case must run the kernel it names, with a CTA group where the device forces one.
    const bool group = std::strcmp(c.kernel, "persistent") == 0 && std::strcmp(c.device, "tiny") == 0;
    const bool refused = c.sms > 0, unplanned = c.occ_cap == 0;
    auto check = [&](const simt::Stats& before, const simt::Stats& after) {
      if (unplanned && after.cooperative_launches != before.cooperative_launches)
        return std::string("a cooperative launch ran where the driver's occupancy is 0");
      if (group && after.cooperative_launches == before.cooperative_launches)
        return std::string("expected a cooperative launch (G > 1) on the tiny device");
      if (refused && after.cooperative_launches != before.cooperative_launches)
        return std::string("a cooperative launch ran where the driver grants too few SMs");
      if (refused && after.launches == before.launches)
        return std::string("no kernel ran after the refused cooperative launch");
      return std::string();
    };
    std::vector<Result> results;
    std::string err = under_schedules(nsched, [&] { return run(c, in); }, check, results);
    if (!err.empty()) return err;
    // One refused launch per pass (forward, backward), in the first run only: the refusal is
    // remembered, and later runs go to the stepwise kernel without asking the driver again.
    const rt::DriverStats ds = rt::driver_stats();
    if (refused && (ds.cooperative_refused != 2 || ds.cooperative_attempts != 2))
      return "expected the driver to refuse 2 cooperative launches (forward, backward) once, got " +
             std::to_string(ds.cooperative_refused) + " refused of " + std::to_string(ds.cooperative_attempts) +
             " over " + std::to_string(results.size()) + " runs";
    if (refused && g_warnings.refused - warned_before != 1)
      return "expected one warning for the refused launches (one reason, one device), got " +
             std::to_string(g_warnings.refused - warned_before);
    if (unplanned && ds.cooperative_attempts != 0)
      return "the plan ignored the driver's occupancy (0 CTAs per SM): " +
             std::to_string(ds.cooperative_attempts) + " cooperative launches attempted";
    const Result& r = results[0];
    const Ref f = reference(c, in, r.out);
    compare(c, "output", r.out, f.out, &err) || compare(c, "h_n", r.hn, f.hn, &err) ||
        compare(c, "dz", r.dz, f.dz, &err) || compare(c, "dz_first", r.dz_first, f.dz_first, &err) ||
        compare(c, "grad_h0", r.gh0, f.gh0, &err);
    return err;
  });
  for_cases(make_cell_cases(quick), sel, [&](const CellCase& c, uint64_t seed) {
    rt::set_device_props(rt::device_preset("h100"));
    CellInputs in(c, seed);
    std::vector<CellResult> results;
    const std::string err = under_schedules(nsched, [&] { return run_cell(c, in); }, no_check, results);
    return err.empty() ? check_cell(c, in, results[0]) : err;
  });
  if (list) return 0;
  const simt::Stats s = simt::stats();
  std::printf("%d case(s), %d failed; %lld launches (%lld cooperative), %lld threads, %lld switches, %lld stale reads\n",
              sel.ran, sel.failures, s.launches, s.cooperative_launches, s.threads, s.switches, s.stale_reads);
  return sel.failures ? 1 : (sel.ran ? 0 : 3);
}
