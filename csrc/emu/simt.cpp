// rnnfused SIMT emulator: the scheduler, the CUDA threads as fibers, and the checks (simt.h).
//
// One launch runs on the calling host thread. Every CUDA thread is a fiber with a stack of its
// own; the scheduler (on the host thread's own stack) resumes one fiber at a time, and a fiber
// runs until it blocks (a barrier, a shuffle), spins (an acquire load) or, under the random
// schedule, is preempted at one of the primitives. Nothing runs concurrently, so the emulator's
// own bookkeeping needs no locks; concurrency between CUDA threads is what the schedules vary.
//
// Build-time switches: SIMT_WITH_TSAN=1 when the kernels are built with -fsanitize=thread (this
// file is then built WITHOUT it and annotates fibers and synchronisation for ThreadSanitizer);
// AddressSanitizer is detected (fiber stack switches are annotated).
#define SIMT_IMPLEMENTATION
#include "simt.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#ifdef SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#define TSAN_ACQUIRE(a) __tsan_acquire((void*)(a))
#define TSAN_RELEASE(a) __tsan_release((void*)(a))
static constexpr bool kTsan = true;
extern "C" {
void AnnotateIgnoreReadsBegin(const char* f, int l);
void AnnotateIgnoreReadsEnd(const char* f, int l);
void AnnotateIgnoreWritesBegin(const char* f, int l);
void AnnotateIgnoreWritesEnd(const char* f, int l);
}
// The emulator's own bookkeeping (its containers, the poison fills) is shared by all fibers
// without any happens-before that ThreadSanitizer could see; only the kernels' accesses matter.
// Each entry point from a fiber ignores its own accesses (library calls such as memmove are
// intercepted even in this uninstrumented file).
struct TsanIgnore {
  TsanIgnore() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~TsanIgnore() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
};
#define SIMT_TSAN_IGNORE TsanIgnore tsan_ignore_
#else
#define SIMT_TSAN_IGNORE ((void)0)
#define TSAN_ACQUIRE(a) ((void)0)
#define TSAN_RELEASE(a) ((void)0)
static constexpr bool kTsan = false;
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// ------------------------------------------------------------------------------------------------
// Context switch (x86-64 System V): callee-saved registers, MXCSR and the x87 control word are
// saved on the old stack, the stack pointer is swapped, and the new context's are restored.
#if defined(__x86_64__)
extern "C" void simt_ctx_switch(void** save_sp, void* load_sp);
extern "C" void simt_ctx_start();
asm(R"(
    .pushsection .text
    .globl simt_ctx_switch
    .type simt_ctx_switch,@function
simt_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size simt_ctx_switch,.-simt_ctx_switch

    .globl simt_ctx_start
    .type simt_ctx_start,@function
simt_ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size simt_ctx_start,.-simt_ctx_start
    .popsection
)");
#endif

namespace simt {

// ------------------------------------------------------------------------------------------------
// Half conversions (IEEE binary16, round to nearest even, as CUDA's __float2half_rn).

float half_bits_to_float(unsigned short h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    if (m == 0) {
      u = sign;
    } else {  // subnormal: m * 2^-24, exact in float
      float f = std::ldexp(static_cast<float>(m), -24);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

unsigned short float_to_half_bits_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fffu;                       // NaN: CUDA's canonical half NaN
  if (ax >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // >= 65520: inf
  uint32_t q, rem, half;
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (or zero), in units of 2^-24
    const uint32_t e = ax >> 23;
    if (e < 102) return static_cast<unsigned short>(sign);  // below 2^-25: rounds to zero
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e;
    q = mant >> shift;
    rem = mant & ((1u << shift) - 1);
    half = 1u << (shift - 1);
  } else {
    q = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
    rem = ax & 0x1fffu;
    half = 0x1000u;
  }
  if (rem > half || (rem == half && (q & 1u))) ++q;  // a carry into the exponent is right
  return static_cast<unsigned short>(sign | q);
}

namespace {

// ------------------------------------------------------------------------------------------------
// Options and statistics.

std::mutex g_opt_mu;
Options g_opt;

struct AtomicStats {
  std::atomic<long long> launches{0}, cooperative_launches{0}, blocks{0}, threads{0},
      switches{0}, barriers{0}, shuffles{0}, stale_reads{0}, sleeps{0};
} g_stats;
std::mutex g_names_mu;
std::unordered_map<std::string, long long> g_launches_by_name;

struct Abort {};  // unwinds a fiber once the launch has failed

struct Block;
struct Launch;

enum class St { kNew, kRunnable, kBarrier, kShuffle, kDone };

struct Fiber {
  void* sp = nullptr;
  char* map = nullptr;  // the mapping (guard page first)
  size_t map_bytes = 0;
  char* lo = nullptr;   // usable stack [lo, lo + size)
  size_t size = 0;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
  ThreadVars vars{};
  Block* block = nullptr;
  int tid = 0, lane = 0, warp = 0;
  St st = St::kNew;
  long long barriers_passed = 0;
  bool fenced = false;
  uint64_t shfl_result = 0;
  void* tsan_fiber = nullptr;
  void* asan_fake = nullptr;
};

struct Warp {
  unsigned arrived = 0;  // lanes arrived at the pending shuffle
  unsigned mask = 0;
  int lane_mask = 0, width = 32;
  const char* file = nullptr;
  int line = 0;
  uint64_t vals[32] = {};
  Fiber* lanes[32] = {};
  unsigned exists = 0;  // lanes that are threads of the block
};

struct Block {
  long long index = 0;
  uint3 idx{};
  std::vector<Fiber*> fibers;
  std::vector<Warp> warps;
  int live = 0;
  int arrived = 0;
  const char* bar_file = nullptr;
  int bar_line = 0;
  int bar_first_tid = 0;
  std::vector<Fiber*> waiting;
  unsigned char* dyn = nullptr;
  size_t dyn_bytes = 0;
  std::vector<std::pair<const void*, void*>> statics;
  char tsan_obj = 0;
};

struct Pending {  // a __stcg store not yet visible to other blocks
  uint64_t old = 0;
  const Block* owner = nullptr;
  const Fiber* storer = nullptr;
  long long gen = 0;
};

struct Launch {
  LaunchConfig cfg;
  const std::function<void()>* body = nullptr;
  Options opt;
  uint64_t rng = 0;
  long long nblocks = 0;
  int nthreads = 0;
  std::vector<long long> order;
  size_t next_block = 0;
  size_t window = 1;
  std::vector<std::unique_ptr<Block>> resident;
  std::vector<Fiber*> all;  // fibers of the resident blocks, in scheduling order
  size_t cursor = 0;
  std::string error;
  bool aborting = false;
  long long idle_spins = 0;
  long long live_fibers = 0;
  void* main_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t main_uc;
#endif
  void* tsan_main = nullptr;
  void* main_fake = nullptr;
  const void* main_bottom = nullptr;
  size_t main_size = 0;
  char tsan_start = 0, tsan_end = 0;
  std::unordered_map<uintptr_t, Pending> pending;
  std::vector<Fiber*> pool;  // finished fibers whose stacks can be reused
};

thread_local Launch* tl_launch = nullptr;
thread_local Fiber* tl_fiber = nullptr;
thread_local std::vector<Fiber*> tl_stack_pool;  // across launches of this host thread

uint64_t next_rand(Launch& L) {  // xorshift64*
  L.rng ^= L.rng >> 12;
  L.rng ^= L.rng << 25;
  L.rng ^= L.rng >> 27;
  return L.rng * 2685821657736338717ull;
}
double rand01(Launch& L) { return double(next_rand(L) >> 11) * (1.0 / 9007199254740992.0); }

std::string where(const Fiber* f) {
  std::ostringstream s;
  s << "thread (" << f->vars.threadIdx.x << "," << f->vars.threadIdx.y << "," << f->vars.threadIdx.z
    << ") of block (" << f->vars.blockIdx.x << "," << f->vars.blockIdx.y << "," << f->vars.blockIdx.z
    << ")";
  return s.str();
}

const char* base_name(const char* file) {
  const char* s = std::strrchr(file, '/');
  return s ? s + 1 : file;
}

// Records the first error of the launch and starts aborting it.
void record_error(Launch& L, const std::string& msg) {
  if (L.error.empty()) L.error = msg;
  L.aborting = true;
}

[[noreturn]] void fail(const std::string& msg) {
  Launch* L = tl_launch;
  if (L == nullptr) throw std::logic_error("simt: " + msg);
  record_error(*L, msg);
  throw Abort{};
}

Fiber& cur() {
  if (tl_fiber == nullptr) throw std::logic_error("simt: a CUDA built-in was used outside a kernel");
  return *tl_fiber;
}

// ------------------------------------------------------------------------------------------------
// Fibers.

size_t stack_bytes(const Options& o) {
  if (o.stack_bytes) return o.stack_bytes;
#if defined(SIMT_ASAN) || (defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN)
  return size_t(256) << 10;
#else
  return size_t(64) << 10;
#endif
}

Fiber* new_fiber(size_t bytes) {
  if (!tl_stack_pool.empty()) {
    Fiber* f = tl_stack_pool.back();
    if (f->size == bytes) {
      tl_stack_pool.pop_back();
      return f;
    }
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto* f = new Fiber();
  f->map_bytes = bytes + page;
  void* m = mmap(nullptr, f->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    delete f;
    throw std::runtime_error("simt: cannot map a fiber stack");
  }
  mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
  f->map = static_cast<char*>(m);
  f->lo = f->map + page;
  f->size = bytes;
  return f;
}

void recycle(Fiber* f) {
#ifdef SIMT_ASAN
  __asan_unpoison_memory_region(f->lo, f->size);
#endif
  const size_t keep = 4096;  // stacks kept per host thread
  if (tl_stack_pool.size() < keep) {
    void* lo = f->lo;
    char* map = f->map;
    const size_t mb = f->map_bytes, sz = f->size;
    *f = Fiber();
    f->lo = static_cast<char*>(lo);
    f->map = map;
    f->map_bytes = mb;
    f->size = sz;
    tl_stack_pool.push_back(f);
  } else {
    munmap(f->map, f->map_bytes);
    delete f;
  }
}

extern "C" void simt_fiber_entry(void* arg);

#if !defined(__x86_64__)
void uc_entry(unsigned lo, unsigned hi) {
  simt_fiber_entry(reinterpret_cast<void*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

void init_context(Fiber* f) {
#if defined(__x86_64__)
  uintptr_t top = reinterpret_cast<uintptr_t>(f->lo + f->size) & ~uintptr_t(15);
  uint64_t* s = reinterpret_cast<uint64_t*>(top);
  s[-1] = reinterpret_cast<uint64_t>(&simt_ctx_start);   // return address of the first switch
  s[-2] = 0;                                               // rbp
  s[-3] = 0;                                               // rbx
  s[-4] = reinterpret_cast<uint64_t>(f);                   // r12: the argument
  s[-5] = reinterpret_cast<uint64_t>(&simt_fiber_entry);  // r13: the entry point
  s[-6] = 0;                                               // r14
  s[-7] = 0;                                               // r15
  // The host thread's floating-point control state (rounding, flush-to-zero) carries over.
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  s[-8] = 0;
  std::memcpy(reinterpret_cast<char*>(&s[-8]), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(&s[-8]) + 4, &fcw, 2);
  f->sp = &s[-8];
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->lo;
  f->uc.uc_stack.ss_size = f->size;
  f->uc.uc_link = nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->uc, reinterpret_cast<void (*)()>(&uc_entry), 2, unsigned(a), unsigned(a >> 32));
#endif
}

// Scheduler -> fiber.
void resume(Launch& L, Fiber* f) {
  tl_fiber = f;
  ++g_stats.switches;
#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
  __tsan_switch_to_fiber(f->tsan_fiber, 1 /* no synchronisation */);
#endif
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(&L.main_fake, f->lo, f->size);
#endif
#if defined(__x86_64__)
  simt_ctx_switch(&L.main_sp, f->sp);
#else
  swapcontext(&L.main_uc, &f->uc);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(L.main_fake, nullptr, nullptr);
#endif
  tl_fiber = nullptr;
}

// Fiber -> scheduler. `last`: the fiber has finished and never runs again.
void to_scheduler(Launch& L, Fiber* f, bool last) {
#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
  __tsan_switch_to_fiber(L.tsan_main, 1);
#endif
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(last ? nullptr : &f->asan_fake, L.main_bottom, L.main_size);
#endif
  (void)last;
#if defined(__x86_64__)
  simt_ctx_switch(&f->sp, L.main_sp);
#else
  swapcontext(&f->uc, &L.main_uc);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(f->asan_fake, &L.main_bottom, &L.main_size);
#endif
}

// Gives the CPU back to the scheduler; throws Abort if the launch failed meanwhile.
void yield(Launch& L, Fiber& f) {
  to_scheduler(L, &f, false);
  if (L.aborting) throw Abort{};
}

void progress(Launch& L) { L.idle_spins = 0; }

}  // namespace

extern "C" void simt_fiber_entry(void* arg) {
  Fiber* f = static_cast<Fiber*>(arg);
  Launch& L = *tl_launch;
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &L.main_bottom, &L.main_size);
#endif
  TSAN_ACQUIRE(&L.tsan_start);
  TSAN_ACQUIRE(&f->block->tsan_obj);
  TSAN_ACQUIRE(f->lo);
  try {
    if (!L.aborting) (*L.body)();
  } catch (const Abort&) {
  } catch (const std::exception& e) {
    record_error(L, where(f) + " threw: " + e.what());
  } catch (...) {
    record_error(L, where(f) + " threw an unknown exception");
  }
  f->st = St::kDone;
  TSAN_RELEASE(&L.tsan_end);
  TSAN_RELEASE(f->lo);
  to_scheduler(L, f, true);
  __builtin_trap();  // a finished fiber is never resumed
}

namespace {

// ------------------------------------------------------------------------------------------------
// Blocks.

void admit_block(Launch& L, long long index) {
  auto b = std::make_unique<Block>();
  const dim3 g = L.cfg.grid, bd = L.cfg.block;
  b->index = index;
  b->idx = uint3{unsigned(index % g.x), unsigned((index / g.x) % g.y), unsigned(index / (long long)g.x / g.y)};
  const int n = L.nthreads;
  b->live = n;
  b->warps.resize((n + 31) / 32);
  for (int i = 0; i < n; ++i) b->warps[i / 32].exists |= 1u << (i % 32);
  // Dynamic shared memory: its own allocation of exactly the launch's size (AddressSanitizer
  // sees any access past it), poisoned with 0xFF bytes (NaN in every float type).
  const size_t dyn = L.cfg.dynamic_smem;
  void* mem = nullptr;
  if (posix_memalign(&mem, 128, dyn ? dyn : 1) != 0) throw std::bad_alloc();
  std::memset(mem, 0xFF, dyn ? dyn : 1);
  b->dyn = static_cast<unsigned char*>(mem);
  b->dyn_bytes = dyn;
  TSAN_RELEASE(&b->tsan_obj);
  const size_t sb = stack_bytes(L.opt);
  for (int i = 0; i < n; ++i) {
    Fiber* f = new_fiber(sb);
    f->block = b.get();
    f->tid = i;
    f->lane = i % 32;
    f->warp = i / 32;
    f->vars.threadIdx = uint3{unsigned(i % bd.x), unsigned((i / bd.x) % bd.y), unsigned(i / (bd.x * bd.y))};
    f->vars.blockIdx = b->idx;
    f->vars.blockDim = bd;
    f->vars.gridDim = g;
    f->st = St::kNew;
    b->fibers.push_back(f);
  }
  ++g_stats.blocks;
  g_stats.threads += n;
  L.live_fibers += n;
  L.resident.push_back(std::move(b));
}

void rebuild_order(Launch& L) {
  L.all.clear();
  for (auto& b : L.resident)
    for (Fiber* f : b->fibers) L.all.push_back(f);
  if (L.opt.schedule == Schedule::kReverse) std::reverse(L.all.begin(), L.all.end());
  L.cursor = 0;
}

void retire_finished_blocks(Launch& L) {
  bool changed = false;
  for (size_t i = 0; i < L.resident.size();) {
    Block* b = L.resident[i].get();
    if (b->live > 0) { ++i; continue; }
    for (Fiber* f : b->fibers) {
#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
      if (f->tsan_fiber) __tsan_destroy_fiber(f->tsan_fiber);
#endif
      recycle(f);
    }
    for (auto& s : b->statics) std::free(s.second);
    std::free(b->dyn);
    L.resident.erase(L.resident.begin() + i);
    changed = true;
  }
  while (!L.aborting && L.resident.size() < L.window && L.next_block < L.order.size()) {
    admit_block(L, L.order[L.next_block++]);
    changed = true;
  }
  if (changed) rebuild_order(L);
}

bool runnable(const Fiber* f) { return f->st == St::kNew || f->st == St::kRunnable; }

Fiber* pick(Launch& L) {
  const size_t n = L.all.size();
  if (n == 0) return nullptr;
  if (L.aborting) {  // unwind every fiber that has started; drop the ones that have not
    for (Fiber* f : L.all) {
      if (f->st == St::kDone) continue;
      if (f->st == St::kNew) {
        f->st = St::kDone;
        f->block->live--;
        L.live_fibers--;
        continue;
      }
      return f;
    }
    return nullptr;
  }
  size_t start = L.cursor;
  if (L.opt.schedule == Schedule::kRandom) start = static_cast<size_t>(next_rand(L) % n);
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    if (runnable(L.all[i])) {
      L.cursor = (i + 1) % n;
      return L.all[i];
    }
  }
  return nullptr;
}

std::string describe_waits(const Launch& L) {
  std::ostringstream s;
  int shown = 0;
  for (const auto& b : L.resident) {
    if (b->arrived > 0) {
      s << "\n  block " << b->index << ": " << b->arrived << " of " << b->live
        << " live threads wait at __syncthreads " << base_name(b->bar_file) << ":" << b->bar_line;
      if (++shown > 8) break;
    }
    for (size_t w = 0; w < b->warps.size(); ++w)
      if (b->warps[w].arrived)
        s << "\n  block " << b->index << " warp " << w << ": lanes 0x" << std::hex
          << b->warps[w].arrived << std::dec << " wait at a shuffle with mask 0x" << std::hex
          << b->warps[w].mask << std::dec << " " << base_name(b->warps[w].file) << ":"
          << b->warps[w].line;
  }
  return s.str();
}

void fiber_finished(Launch& L, Fiber* f) {
  Block* b = f->block;
  b->live--;
  L.live_fibers--;
  progress(L);
  if (L.aborting) return;
  Warp& w = b->warps[f->warp];
  if (w.arrived && (w.mask >> f->lane & 1u))
    record_error(L, where(f) + " exited while lanes of its warp wait for it at the shuffle at " +
                        base_name(w.file) + ":" + std::to_string(w.line));
  else if (b->arrived > 0)
    record_error(L, where(f) + " exited while " + std::to_string(b->arrived) +
                        " threads of its block wait at __syncthreads " + base_name(b->bar_file) +
                        ":" + std::to_string(b->bar_line) + " (a barrier in divergent code)");
}

void run(Launch& L) {
  retire_finished_blocks(L);  // admits the first window
  while (!L.resident.empty()) {
    Fiber* f = pick(L);
    if (f == nullptr) {
      if (L.aborting) {  // nothing left to unwind
        for (auto& b : L.resident) b->live = 0;
      } else {
        record_error(L, "deadlock: no thread of the " + std::to_string(L.resident.size()) +
                            " resident block(s) can make progress" + describe_waits(L));
      }
      retire_finished_blocks(L);
      continue;
    }
    if (f->st == St::kNew) {
#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
      f->tsan_fiber = __tsan_create_fiber(0);
#endif
      init_context(f);
      f->st = St::kRunnable;
    }
    resume(L, f);
    if (f->st == St::kDone) {
      fiber_finished(L, f);
      if (f->block->live == 0) retire_finished_blocks(L);
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Public interface.

Options get_options() {
  std::lock_guard<std::mutex> g(g_opt_mu);
  return g_opt;
}

void set_options(const Options& o) {
  std::lock_guard<std::mutex> g(g_opt_mu);
  g_opt = o;
}

Stats stats() {
  Stats s;
  s.launches = g_stats.launches;
  s.cooperative_launches = g_stats.cooperative_launches;
  s.blocks = g_stats.blocks;
  s.threads = g_stats.threads;
  s.switches = g_stats.switches;
  s.barriers = g_stats.barriers;
  s.shuffles = g_stats.shuffles;
  s.stale_reads = g_stats.stale_reads;
  s.sleeps = g_stats.sleeps;
  return s;
}

long long launches_of(const std::string& name) {
  std::lock_guard<std::mutex> g(g_names_mu);
  auto it = g_launches_by_name.find(name);
  return it == g_launches_by_name.end() ? 0 : it->second;
}

void reset_stats() {
  {
    std::lock_guard<std::mutex> g(g_names_mu);
    g_launches_by_name.clear();
  }
  g_stats.launches = 0;
  g_stats.cooperative_launches = 0;
  g_stats.blocks = 0;
  g_stats.threads = 0;
  g_stats.switches = 0;
  g_stats.barriers = 0;
  g_stats.shuffles = 0;
  g_stats.stale_reads = 0;
  g_stats.sleeps = 0;
}

void launch(const LaunchConfig& cfg, const std::function<void()>& body) {
  SIMT_TSAN_IGNORE;
  if (tl_launch != nullptr) throw std::logic_error("simt: a kernel launched from inside a kernel");
  const long long nblocks = (long long)cfg.grid.x * cfg.grid.y * cfg.grid.z;
  const long long nthreads = (long long)cfg.block.x * cfg.block.y * cfg.block.z;
  auto bad = [&](const std::string& why) {
    throw std::runtime_error(std::string("simt: invalid launch of ") + cfg.name + ": " + why);
  };
  if (nblocks <= 0) bad("empty grid");
  if (nthreads <= 0 || nthreads > 1024) bad("block of " + std::to_string(nthreads) + " threads (1 to 1024)");
  if (cfg.grid.y > 65535 || cfg.grid.z > 65535) bad("grid y/z above 65535");
  if (cfg.cooperative && cfg.max_coresident_blocks > 0 && nblocks > cfg.max_coresident_blocks)
    bad("cooperative grid of " + std::to_string(nblocks) + " blocks, but only " +
        std::to_string(cfg.max_coresident_blocks) + " can be co-resident on the device");

  Launch L;
  L.cfg = cfg;
  L.body = &body;
  L.opt = get_options();
  if (kTsan) L.opt.memory_model = false;  // ThreadSanitizer checks the ordering instead
  L.rng = L.opt.seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  if (L.rng == 0) L.rng = 1;
  L.nblocks = nblocks;
  L.nthreads = static_cast<int>(nthreads);
  L.order.resize(nblocks);
  for (long long i = 0; i < nblocks; ++i) L.order[i] = i;
  if (L.opt.schedule == Schedule::kReverse) std::reverse(L.order.begin(), L.order.end());
  if (L.opt.schedule == Schedule::kRandom)
    for (long long i = nblocks - 1; i > 0; --i) std::swap(L.order[i], L.order[next_rand(L) % (i + 1)]);
  if (cfg.cooperative) L.window = static_cast<size_t>(nblocks);
  else if (L.opt.schedule == Schedule::kRandom) L.window = std::max(1, L.opt.random_resident_blocks);
  else L.window = 1;
  ++g_stats.launches;
  if (cfg.cooperative) ++g_stats.cooperative_launches;
  {
    std::lock_guard<std::mutex> g(g_names_mu);
    ++g_launches_by_name[cfg.name];
  }

#if defined(SIMT_WITH_TSAN) && SIMT_WITH_TSAN
  L.tsan_main = __tsan_get_current_fiber();
#endif
  TSAN_RELEASE(&L.tsan_start);
  tl_launch = &L;
  try {
    run(L);
  } catch (...) {
    tl_launch = nullptr;
    throw;
  }
  tl_launch = nullptr;
  TSAN_ACQUIRE(&L.tsan_end);
  L.pending.clear();  // the end of a kernel makes every store visible
  if (!L.error.empty()) throw std::runtime_error(std::string("simt: ") + cfg.name + ": " + L.error);
}

const ThreadVars& vars() { return cur().vars; }

void syncthreads(const char* file, int line) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  Block& b = *f.block;
  ++g_stats.barriers;
  TSAN_RELEASE(&b.tsan_obj);
  if (b.live != static_cast<int>(b.fibers.size()))
    fail("__syncthreads at " + std::string(base_name(file)) + ":" + std::to_string(line) + " by " +
         where(&f) + " after " + std::to_string(b.fibers.size() - b.live) +
         " threads of its block exited (a barrier in divergent code)");
  if (b.arrived == 0) {
    b.bar_file = file;
    b.bar_line = line;
    b.bar_first_tid = f.tid;
  } else if (b.bar_line != line || std::strcmp(b.bar_file, file) != 0) {
    const Fiber* first = b.fibers[b.bar_first_tid];
    fail("divergent __syncthreads: " + where(&f) + " is at " + base_name(file) + ":" +
         std::to_string(line) + " while " + where(first) + " waits at " + base_name(b.bar_file) +
         ":" + std::to_string(b.bar_line));
  }
  if (++b.arrived == b.live) {
    b.arrived = 0;
    for (Fiber* w : b.waiting) {
      w->st = St::kRunnable;
      w->barriers_passed++;
    }
    b.waiting.clear();
    f.barriers_passed++;
    progress(L);
  } else {
    f.st = St::kBarrier;
    b.waiting.push_back(&f);
    yield(L, f);
  }
  TSAN_ACQUIRE(&b.tsan_obj);
}

void preempt_point() {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  if (L.aborting) throw Abort{};
  if (L.opt.schedule != Schedule::kRandom) return;
  if (L.opt.memory_model && !L.pending.empty() && rand01(L) < 0.002) L.pending.clear();  // drained
  if (rand01(L) < L.opt.preempt_prob) {
    f.st = St::kRunnable;
    yield(L, f);
  }
}

void nanosleep(unsigned) {
  SIMT_TSAN_IGNORE;
  cur();  // only inside a kernel
  ++g_stats.sleeps;
  preempt_point();
}

void trap(const std::string& msg) {
  SIMT_TSAN_IGNORE;
  fail("__trap: " + msg);
}

void threadfence() {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  preempt_point();
  f.fenced = true;
  if (!L.opt.memory_model || L.pending.empty()) return;
  // Release, cumulative over the block: the stores of this thread, and those of its block that
  // a barrier it has passed since ordered before it, become visible to every block.
  for (auto it = L.pending.begin(); it != L.pending.end();) {
    const Pending& p = it->second;
    if (p.owner == f.block && (p.storer == &f || p.gen < f.barriers_passed)) it = L.pending.erase(it);
    else ++it;
  }
}

unsigned atomic_add(unsigned* p, unsigned v) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  preempt_point();
  if (f.fenced) TSAN_RELEASE(p);  // fence + relaxed atomic = release
  const unsigned old = *p;
  *p = old + v;
  progress(L);
  return old;
}

namespace {
unsigned spin_load(const unsigned* p, bool acquire) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  preempt_point();
  const unsigned v = *p;
  if (acquire) TSAN_ACQUIRE(p);
  // Spinning: let the other threads run. Too many spins with no progress anywhere is a deadlock.
  if (++L.idle_spins > 16 * L.live_fibers + 4096)
    fail("deadlock: " + where(&f) + " spins on an acquire load that no thread will satisfy" +
         describe_waits(L));
  f.st = St::kRunnable;
  yield(L, f);
  return v;
}
}  // namespace

unsigned ld_acquire(const unsigned* p) { return spin_load(p, true); }
unsigned ld_relaxed(const unsigned* p) { return spin_load(p, false); }

void* dynamic_shared(size_t align) {
  SIMT_TSAN_IGNORE;
  Fiber& f = cur();
  if (align > 128 || (align & (align - 1)) != 0) fail("dynamic shared memory alignment " + std::to_string(align));
  TSAN_ACQUIRE(&f.block->tsan_obj);
  return f.block->dyn;
}

void* static_shared(const void* site, size_t bytes) {
  SIMT_TSAN_IGNORE;
  Fiber& f = cur();
  Block& b = *f.block;
  for (auto& s : b.statics) {
    if (s.first == site) {
      TSAN_ACQUIRE(&b.tsan_obj);
      return s.second;
    }
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, 16, bytes ? bytes : 1) != 0) throw std::bad_alloc();
  std::memset(mem, 0xFF, bytes ? bytes : 1);
  b.statics.emplace_back(site, mem);
  TSAN_RELEASE(&b.tsan_obj);
  return mem;
}

uint64_t shfl_xor_bits(unsigned mask, uint64_t bits, int lane_mask, int width, const char* file, int line) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  preempt_point();
  ++g_stats.shuffles;
  Block& b = *f.block;
  Warp& w = b.warps[f.warp];
  const int lane = f.lane;
  auto at = [&] { return std::string(base_name(file)) + ":" + std::to_string(line); };
  if (!(mask >> lane & 1u))
    fail("__shfl_xor_sync at " + at() + " by " + where(&f) + ", whose lane " + std::to_string(lane) +
         " is not in the mask 0x" + [&] { std::ostringstream s; s << std::hex << mask; return s.str(); }());
  if (mask & ~w.exists) fail("__shfl_xor_sync at " + at() + ": the mask names lanes that are not threads of the block");
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("__shfl_xor_sync at " + at() + ": width " + std::to_string(width));
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1u)) continue;
    const Fiber* other = b.fibers[f.warp * 32 + l];
    if (other->st == St::kDone)
      fail("__shfl_xor_sync at " + at() + " by " + where(&f) + ": lane " + std::to_string(l) +
           " of the mask has exited");
  }
  if (w.arrived == 0) {
    w.mask = mask;
    w.lane_mask = lane_mask;
    w.width = width;
    w.file = file;
    w.line = line;
  } else if (w.mask != mask || w.lane_mask != lane_mask || w.width != width || w.line != line ||
             std::strcmp(w.file, file) != 0) {
    fail("divergent shuffle: " + where(&f) + " is at " + at() + " while other lanes of its warp wait at " +
         base_name(w.file) + ":" + std::to_string(w.line) + " (mask, offset or call site differ)");
  }
  w.vals[lane] = bits;
  w.lanes[lane] = &f;
  w.arrived |= 1u << lane;
  TSAN_RELEASE(&w);
  if (w.arrived == mask) {
    for (int l = 0; l < 32; ++l) {
      if (!(mask >> l & 1u)) continue;
      const int seg = l & ~(width - 1);
      int src = l ^ lane_mask;
      if (src >= seg + width) src = l;  // beyond its segment: a lane reads its own value
      if (!(mask >> src & 1u))
        fail("__shfl_xor_sync at " + at() + ": lane " + std::to_string(l) + " reads lane " +
             std::to_string(src) + ", which is not in the mask");
      w.lanes[l]->shfl_result = w.vals[src];
      if (w.lanes[l] != &f) w.lanes[l]->st = St::kRunnable;
    }
    w.arrived = 0;
    progress(L);
  } else {
    f.st = St::kShuffle;
    yield(L, f);
  }
  TSAN_ACQUIRE(&w);
  return f.shfl_result;
}

const void* read_source(const void* p, size_t bytes) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  if (!L.opt.memory_model || L.pending.empty()) return p;
  auto it = L.pending.find(reinterpret_cast<uintptr_t>(p));
  if (it == L.pending.end() || it->second.owner == cur().block) return p;
  (void)bytes;
  ++g_stats.stale_reads;
  return &it->second.old;  // the value before another block's store that is not yet released
}

void before_store(void* p, size_t bytes) {
  SIMT_TSAN_IGNORE;
  Launch& L = *tl_launch;
  Fiber& f = cur();
  progress(L);
  if (!L.opt.memory_model) return;
  if (bytes > 8) fail("memory model: a store of more than 8 bytes");
  auto [it, fresh] = L.pending.try_emplace(reinterpret_cast<uintptr_t>(p));
  Pending& e = it->second;
  if (fresh) std::memcpy(&e.old, p, bytes);
  e.owner = f.block;
  e.storer = &f;
  e.gen = f.barriers_passed;
}

}  // namespace simt
