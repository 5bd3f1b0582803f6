// Threads of the CPU route: the hidden units are split into slots, one per thread, and the
// threads of one layer call meet at a spin barrier once per step.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "blas.h"

namespace lstmlab {

// B * gate-width per step from which the hidden units are split across threads.  16384 until
// 2026-11-30; with the futex barrier and the own kernel, small steps gain from two threads on a
// quiet 2-core EPYC (2 threads, medians of two runs: (16,8,32,500) 0.79-0.88 -> 0.63-0.64x torch,
// (32,8,48,200) 1.11-1.13 -> 0.89-0.96x, (16,1,64,400) 1.06-1.13 -> 0.84-0.90x) and lose ~25%
// under contention while staying ahead of torch
// (contention.py, (16,8,32,500), native in the background: 17.3 -> 21.9 ms against torch's 31.6-38).
inline int64_t g_par_threshold = 2048;
constexpr int64_t kParMacs = int64_t(1) << 21;  // ... or recurrent multiply-adds per step (B * G * H)

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Centralised barrier for the threads of one layer call.  A waiter spins for a bounded while
// (a step of a small layer takes microseconds), then sleeps on a futex: when the machine is
// oversubscribed (other processes on the cores), a preempted partner does not make the others
// burn its time slice spinning or yielding.  Without futexes (not Linux): spin, then yield.
constexpr int kSpinsBeforeSleep = 20000;  // as long as the old barrier spun before yielding
inline int g_barrier_mode = 1;  // 1: spin, then futex; 0: spin longer, then yield (the old barrier, for A/B)

inline void futex_wait(std::atomic<int>* addr, int expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<int*>(addr), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  (void)addr;
  (void)expected;
  std::this_thread::yield();
#endif
}

inline void futex_wake_all(std::atomic<int>* addr) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<int*>(addr), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)addr;
#endif
}

struct SpinBarrier {
  std::atomic<int> count{0};
  std::atomic<int> gen{0};
  std::atomic<int> sleepers{0};
  int n = 1;
  void wait() {
    if (n <= 1) return;
    const int g = gen.load(std::memory_order_acquire);
    if (count.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      count.store(0, std::memory_order_relaxed);
      gen.fetch_add(1, std::memory_order_seq_cst);
      if (sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&gen);
      return;
    }
    const int spin_limit = kSpinsBeforeSleep;
    for (int spins = 0; spins < spin_limit; ++spins) {
      if (gen.load(std::memory_order_acquire) != g) return;
      cpu_relax();
    }
    if (g_barrier_mode == 0) {
      while (gen.load(std::memory_order_acquire) == g) std::this_thread::yield();
      return;
    }
    // seq_cst pairs with the releaser: either it sees a sleeper and wakes, or we see the new gen
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    while (gen.load(std::memory_order_seq_cst) == g) futex_wait(&gen, g);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
  }
};

// Work split: S slots, each a contiguous slice [u[k], u[k+1]) of the hidden units (all gates of
// those units, all batch rows).  Each thread runs the per-step GEMM of its slots (single-threaded
// BLAS) and then their elementwise loop, so there is one barrier per step and each thread's
// data stays in its own cache.
struct Plan {
  int64_t S = 1;
  std::vector<int64_t> u{0, 0};
};

inline Plan make_plan(int64_t B, int64_t H, int64_t G) {
  Plan p;
  int64_t S = 1;
#if AT_PARALLEL_OPENMP
  const int64_t nt = at::get_num_threads();
  // Parallel when the step has enough elements (B * G) or enough recurrent GEMM work (B * G * H
  // multiply-adds): a small batch with a wide layer, e.g. B 4, H 384, is GEMM-bound (measured at 2
  // threads: (4,64,384,100) training 18.1 -> 14.6 ms, (2,32,512,100) 35.7 -> 26.3 ms).
  const bool enough = B * G >= g_par_threshold || B * G * H >= kParMacs;
  if (nt > 1 && !at::in_parallel_region() && enough && H >= 32) {
    S = std::min<int64_t>(nt, H / 16);
  }
#endif
  p.S = S;
  p.u.assign(S + 1, H);
  for (int64_t k = 0; k < S; ++k) p.u[k] = (H * k / S) / 16 * 16;
  return p;
}

// body(s0, s1, barrier): run slots [s0, s1) on the calling thread.
template <typename F>
void run_slots(const Plan& p, const F& body) {
  SpinBarrier bar;
  if (p.S == 1) {
    body(int64_t(0), int64_t(1), bar);
    return;
  }
  std::atomic<int64_t> chunk{0};
  at::parallel_for(0, p.S, 1, [&](int64_t k0, int64_t k1) {
    // The team may be smaller than S (e.g. nested parallelism): count the participants.
    if (k0 == 0) {
      bar.n = int((p.S + (k1 - k0) - 1) / (k1 - k0));
      chunk.store(k1 - k0, std::memory_order_release);
    } else {
      for (int spins = 0; chunk.load(std::memory_order_acquire) == 0; ++spins) {
        if (spins < kSpinsBeforeSleep) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
    const int prev = MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0;
    body(k0, k1, bar);
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(prev);
  });
}

inline Tensor reduce_slots(const Tensor& t, const Plan& p) { return p.S == 1 ? t.select(0, 0) : t.sum(0); }

// Weights of slot k for the forward GEMM: the rows of W_hh of all `gates` gates for its units.
inline Tensor slot_weights(const Tensor& w_hh, const Plan& p, int64_t k, int64_t gates) {
  const int64_t H = w_hh.size(1), Hk = p.u[k + 1] - p.u[k];
  if (p.S == 1) return w_hh;
  if (gates == 1) return w_hh.narrow(0, p.u[k], Hk);  // contiguous rows: no copy
  return w_hh.view({gates, H, H}).narrow(1, p.u[k], Hk).reshape({gates * Hk, H}).contiguous();
}

}  // namespace lstmlab
