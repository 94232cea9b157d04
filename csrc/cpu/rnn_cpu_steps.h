// rnnfused CPU: a sequence of steps split across the intra-op threads, with one light meeting
// per step instead of a fork/join per step.
//
// run_steps(nsteps, nshares, f) calls f(s, share) for every step s and share, such that f(s, ·)
// starts only after f(s-1, every share) has finished. One at::parallel_for over the shares for
// the whole sequence: each thread owns its shares ("home": the same columns every step, so its
// slice of W_hh stays in its own caches) and, between steps, waits on one shared counter.
//
// Progress never depends on another thread being scheduled: a thread that has waited a while
// for a share takes that share's ready step itself (a thread pool may run the parallel_for's
// tasks one after another; the OS may park a thread on a busy machine). Every step of every
// share is claimed exactly once, through a compare-and-swap on that share's step counter.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace rnnfused::cpu {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

// Columns [n0, n1) of share i of n, on 16-element boundaries (a 64-byte line of float), so no
// two threads write the same cache line of a row.
inline std::pair<int64_t, int64_t> share_columns(int64_t H, int64_t n, int64_t i) {
  auto edge = [&](int64_t j) { return j <= 0 ? 0 : j >= n ? H : (H * j / n) / 16 * 16; };
  return {edge(i), edge(i + 1)};
}

template <class F>
void run_steps(int64_t nsteps, int64_t nshares, const F& f) {
  if (nsteps <= 0) return;
  if (nshares <= 1) {
    for (int64_t s = 0; s < nsteps; ++s) f(s, 0);
    return;
  }
  struct alignas(64) Slot {
    std::atomic<int64_t> next{0};  // the first step of this share not yet claimed
  };
  struct alignas(64) Shared {
    std::atomic<int64_t> done{0};  // work items finished, all shares and steps
    std::atomic<bool> failed{false};
  };
  Shared sh;
  std::unique_ptr<Slot[]> slots(new Slot[nshares]);
  const int64_t P = nshares;

  // Claims step s of share b if it is ready (every share finished step s-1) and runs it.
  auto try_run = [&](int64_t b) -> bool {
    int64_t s = slots[b].next.load(std::memory_order_acquire);
    if (s >= nsteps || sh.done.load(std::memory_order_acquire) < s * P) return false;
    if (!slots[b].next.compare_exchange_strong(s, s + 1, std::memory_order_acq_rel)) return false;
    try {
      f(s, b);
    } catch (...) {
      sh.failed.store(true, std::memory_order_release);
      throw;
    }
    sh.done.fetch_add(1, std::memory_order_acq_rel);
    return true;
  };

  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    using clock = std::chrono::steady_clock;
    int64_t idle = 0;
    clock::time_point idle_since;
    for (;;) {
      if (sh.failed.load(std::memory_order_acquire)) return;
      bool home_left = false, ran = false;
      for (int64_t b = p0; b < p1; ++b) {
        if (slots[b].next.load(std::memory_order_acquire) >= nsteps) continue;
        home_left = true;
        ran |= try_run(b);
      }
      if (!home_left) return;
      if (ran) {
        idle = 0;
        continue;
      }
      // Waiting for another share's step. Spin briefly (the usual wait is well under a
      // microsecond), then help: run any other share's ready step; past a millisecond, yield
      // the core between checks.
      if (++idle < 64) {
        cpu_relax();
        continue;
      }
      if (idle == 64) idle_since = clock::now();
      const auto waited = clock::now() - idle_since;
      if (waited > std::chrono::microseconds(20)) {
        for (int64_t b = 0; b < P; ++b)
          if ((b < p0 || b >= p1) && try_run(b)) idle = 0;
      }
      if (waited > std::chrono::milliseconds(1)) std::this_thread::yield();
      else cpu_relax();
    }
  });
}

}  // namespace rnnfused::cpu
