// An own float GEMM for the per-step recurrent product: C[M,N] = A[M,K] @ B[K,N] (row-major,
// beta 0), register blocks of 4 rows x 4 SIMD vectors (8 x 2, 8 x 1 for narrow C), B copied once
// per layer call into contiguous column panels and streamed in K blocks that stay in L2.
//
// Why: per step the recurrent GEMM is small (e.g. 16 x 32 @ 32 x 128); a BLAS call then costs more
// in dispatch and operand packing than in arithmetic (MKL's sgemm on an AMD EPYC: ~40% of a small
// LSTM's training time in mkl_blas_def_sgemm_pst / _scopy_* / _kernel_0_zen).  For a large W
// (H = 1024: 16 MB) MKL's packed GEMM was no better: its per-call packing and the slot copy of W
// cost more than the panels (measured at 2 threads, (32,32,1024,20) training 130 -> 94 ms).
// By default the own kernel runs for every float W when the CPU has AVX2 or AVX-512: a fixed
// rule, so that every process on every machine with the same lanes computes the same floats (a
// run killed and resumed in a new process stays bit-exact).  Mode 3 times both once per shape in
// the process instead (then two processes may round differently); never by the CPU's vendor.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>

#include "simd.h"

namespace lstmlab {

inline int g_small_mode = 1;  // 0 never, 1 with SIMD (fixed rule), 2 always (tests), 3 when timed faster

#if defined(LSTMLAB_HAVE_V16)
using VG = V16;
inline V16 fmadd(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
#define LSTMLAB_HAVE_MICROGEMM 1
#elif defined(LSTMLAB_HAVE_V8)
using VG = V8;
inline V8 fmadd(V8 a, V8 b, V8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
#define LSTMLAB_HAVE_MICROGEMM 1
#endif

constexpr int64_t kPanelK = 256;  // K block: a panel block (256 x 4 vectors, 64 KB) stays in L2 across the rows

#ifdef LSTMLAB_HAVE_MICROGEMM
// One MR x (NV * W) block of C over k in [0, K) of a contiguous panel block (row stride NV * W);
// `first`: start from zero, else continue the sums already in C (a float store and reload is
// exact, so blocking K does not change a single rounding).
template <int MR, int NV>
inline void micro_block(int64_t K, const float* A, int64_t lda, const float* B, float* C, int64_t ldc, bool first) {
  constexpr int W = VG::W;
  VG acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = first ? VG::zero() : VG::load(C + i * ldc + j * W);
  for (int64_t k = 0; k < K; ++k) {
    VG b[NV];
    for (int j = 0; j < NV; ++j) b[j] = VG::load(B + k * NV * W + j * W);
    for (int i = 0; i < MR; ++i) {
      const VG a = VG::set(A[i * lda + k]);
      for (int j = 0; j < NV; ++j) acc[i][j] = fmadd(a, b[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j].store(C + i * ldc + j * W);
}

// Rows of C for k in [k0, k0 + kc) of one panel block Pk: blocks of MR rows, then 4, 2, 1.
template <int MR, int NV>
inline void rows_loop(int64_t M, int64_t kc, int64_t k0, const float* A, int64_t lda, const float* Pk, float* C,
                      int64_t ldc, bool first) {
  int64_t m = 0;
  for (; m + MR <= M; m += MR) micro_block<MR, NV>(kc, A + m * lda + k0, lda, Pk, C + m * ldc, ldc, first);
  for (; m + 4 <= M; m += 4) micro_block<4, NV>(kc, A + m * lda + k0, lda, Pk, C + m * ldc, ldc, first);
  for (; m + 2 <= M; m += 2) micro_block<2, NV>(kc, A + m * lda + k0, lda, Pk, C + m * ldc, ldc, first);
  for (; m < M; ++m) micro_block<1, NV>(kc, A + m * lda + k0, lda, Pk, C + m * ldc, ldc, first);
}

template <int NV>
inline void micro_columns(int64_t M, int64_t K, const float* A, int64_t lda, const float* P, float* C, int64_t ldc) {
  for (int64_t k0 = 0; k0 < K; k0 += kPanelK) {
    const int64_t kc = std::min(kPanelK, K - k0);
    const float* Pk = P + k0 * NV * VG::W;
    const bool first = k0 == 0;
    rows_loop<(NV >= 4 ? 4 : 8), NV>(M, kc, k0, A, lda, Pk, C, ldc, first);  // about 16 accumulators
  }
}
#endif

// The widths of the column panels of an N-column B, in order: 4W, ..., 2W, W, then the rest.
template <class F>
inline void for_panels(int64_t N, const F& f) {
  int64_t n = 0;
#ifdef LSTMLAB_HAVE_MICROGEMM
  constexpr int W = VG::W;
  for (; n + 4 * W <= N; n += 4 * W) f(n, int64_t(4 * W));
  for (; n + 2 * W <= N; n += 2 * W) f(n, int64_t(2 * W));
  for (; n + W <= N; n += W) f(n, int64_t(W));
#endif
  if (n < N) f(n, N - n);
}

// B (K x N) copied once per layer call into column panels, each K x width contiguous at offset
// n * K: the kernel then streams B with unit stride (a row stride of N floats touched a new page
// every few rows for a large W).  `col(j)` points to column j of B (stride 1 in k): B = W^T.
template <class Col>
inline at::Tensor pack_panels_t(int64_t K, int64_t N, const Col& col) {
  at::Tensor out = at::empty({K * N}, at::kFloat);
  float* o = out.data_ptr<float>();
  for_panels(N, [&](int64_t n, int64_t w) {
    float* p = o + n * K;
    for (int64_t j = 0; j < w; ++j) {
      const float* c = col(n + j);
      for (int64_t k = 0; k < K; ++k) p[k * w + j] = c[k];
    }
  });
  return out;
}

// The same for a row-major B (K x N, leading dimension ldb).
inline at::Tensor pack_panels(int64_t K, int64_t N, const float* B, int64_t ldb) {
  at::Tensor out = at::empty({K * N}, at::kFloat);
  float* o = out.data_ptr<float>();
  for_panels(N, [&](int64_t n, int64_t w) {
    float* p = o + n * K;
    for (int64_t k = 0; k < K; ++k) std::memcpy(p + k * w, B + k * ldb + n, sizeof(float) * w);
  });
  return out;
}

// Whether the fixed rule (no timing) runs the own kernel.
inline bool own_by_rule() {
#ifdef LSTMLAB_HAVE_MICROGEMM
  return g_small_mode == 1 || g_small_mode == 2;
#else
  return g_small_mode == 2;  // the scalar fallback is for tests only
#endif
}

// C[M,N] = A[M,K] @ B[K,N] with B in the panels of pack_panels.
inline void micro_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bp, float* C,
                       int64_t ldc) {
  for_panels(N, [&](int64_t n, int64_t w) {
    const float* P = Bp + n * K;
#ifdef LSTMLAB_HAVE_MICROGEMM
    constexpr int W = VG::W;
    if (w == 4 * W) return micro_columns<4>(M, K, A, lda, P, C + n, ldc);
    if (w == 2 * W) return micro_columns<2>(M, K, A, lda, P, C + n, ldc);
    if (w == W) return micro_columns<1>(M, K, A, lda, P, C + n, ldc);
#endif
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < w; ++j) {
        float s = 0.f;
        for (int64_t k = 0; k < K; ++k) s += A[m * lda + k] * P[k * w + j];
        C[m * ldc + n + j] = s;
      }
  });
}

// Whether the own kernel should run instead of `blas` (a callable C = A @ B on the same operands)
// for this shape (`variant`: what else distinguishes the BLAS route, e.g. transposed / packed).
// Both are timed on zero operands, interleaved, the minimum of 4 samples each after a warm-up;
// memoised per shape.  The own kernel wins unless BLAS is 10% faster: timed alone, BLAS looks
// better than inside the time loop, where its operand copies evict the step's data (measured:
// 64x128 LSTM, own kernel 0.69x oneDNN in the loop while the isolated timing preferred BLAS).
template <class Blas>
bool choose_small(int64_t M, int64_t N, int64_t K, const float* Bp, int64_t variant, const Blas& blas) {
  if (own_by_rule()) return true;
  if (g_small_mode != 3) return false;
  static std::mutex mu;
  static std::map<std::array<int64_t, 4>, bool> memo;
  const std::array<int64_t, 4> key{M, N, K, variant};
  std::lock_guard<std::mutex> lock(mu);
  auto it = memo.find(key);
  if (it != memo.end()) return it->second;
  at::Tensor a = at::zeros({M, K}, at::kFloat), c = at::empty({M, N}, at::kFloat);
  const float* ap = a.data_ptr<float>();
  float* cp = c.data_ptr<float>();
  const int calls = M * N * K > (int64_t(1) << 24) ? 1 : 4;
  using clk = std::chrono::steady_clock;
  double best_own = 1e30, best_blas = 1e30;
  for (int r = 0; r < 5; ++r) {
    auto t0 = clk::now();
    for (int i = 0; i < calls; ++i) micro_gemm(M, N, K, ap, K, Bp, cp, N);
    auto t1 = clk::now();
    for (int i = 0; i < calls; ++i) blas(ap, K, cp, N);
    auto t2 = clk::now();
    if (r == 0) continue;  // warm-up
    best_own = std::min(best_own, std::chrono::duration<double>(t1 - t0).count());
    best_blas = std::min(best_blas, std::chrono::duration<double>(t2 - t1).count());
  }
  return memo[key] = best_own * 0.9 < best_blas;
}

}  // namespace lstmlab
