// BLAS plumbing of the CPU route: the per-step recurrent GEMM in the own micro-kernel (float) or
// straight into the Fortran sgemm_/dgemm_ that libtorch exports (else at::mm), and MKL's packed
// GEMM for a large W_hh.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "microgemm.h"

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
// MKL's packed GEMM (the weight matrix is packed once per call of the layer, not per step).
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
int MKL_Set_Num_Threads_Local(int n) __attribute__((weak));  // C API: thread-local MKL threads
}

namespace lstmlab {

using at::Tensor;

inline int g_blas_mode = -1;  // -1 unchecked, 0 at::mm_out, 1 Fortran BLAS from libtorch
inline int g_pack_mode = -1;  // -1 unchecked, 0 off, 1 MKL packed GEMM for large W_hh (float), 2 always
constexpr int64_t kPackMinElems = 1 << 18;  // W_hh elements from which packing pays for its ~8 MB buffer
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

template <typename T>
struct Blas;
template <>
struct Blas<float> {
  static bool avail() { return sgemm_ != nullptr; }
  static void gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* al,
                   const float* a, const int* lda, const float* b, const int* ldb, const float* be, float* c,
                   const int* ldc) {
    sgemm_(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
  }
};
template <>
struct Blas<double> {
  static bool avail() { return dgemm_ != nullptr; }
  static void gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* al,
                   const double* a, const int* lda, const double* b, const int* ldb, const double* be,
                   double* c, const int* ldc) {
    dgemm_(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
  }
};

// Column-major C(m x n) = op(A) op(B) via the Fortran symbol; returns false when unusable.
template <typename T>
bool fgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
           int64_t ldb, T beta, T* c, int64_t ldc) {
  if (g_blas_mode != 1 || !Blas<T>::avail()) return false;
  for (int64_t v : {m, n, k, lda, ldb, ldc})
    if (v > INT_MAX) return false;
  const int mi = int(m), ni = int(n), ki = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
  const T one = T(1);
  Blas<T>::gemm(&ta, &tb, &mi, &ni, &ki, &one, a, &la, b, &lb, &beta, c, &lc);
  return true;
}

template <typename T>
bool blas_selfcheck() {
  if (!Blas<T>::avail()) return false;
  // row-major (2x3) = (2x2)(2x3): C = A @ B
  const T A[4] = {1, 2, 3, 4};
  const T Bm[6] = {1, -1, 2, 0.5, 3, -2};
  T C[6] = {0, 0, 0, 0, 0, 0};
  const char n = 'N';
  const int m2 = 3, n2 = 2, k2 = 2, la = 3, lb = 2, lc = 3;
  const T one = 1, zero = 0;
  Blas<T>::gemm(&n, &n, &m2, &n2, &k2, &one, Bm, &la, A, &lb, &zero, C, &lc);
  const T want[6] = {2, 5, -2, 5, 9, -2};
  for (int i = 0; i < 6; ++i)
    if (C[i] != want[i]) return false;
  return true;
}

inline bool pack_avail() {
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr;
}

inline bool pack_selfcheck() {
  if (!pack_avail()) return false;
  // row-major C(2x3) = A(2x2) @ W^T, W (3x2)
  const float A[4] = {1, 2, 3, 4};
  const float W[6] = {1, 0.5f, -1, 3, 2, -2};
  float C[6] = {0, 0, 0, 0, 0, 0};
  const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, 2, 3, 2);
  std::vector<float> buf(bytes / sizeof(float) + 16);
  cblas_sgemm_pack(kRowMajor, kBMatrix, kTrans, 2, 3, 2, 1.0f, W, 2, buf.data());
  cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, 2, 3, 2, A, 2, buf.data(), 2, 0.0f, C, 3);
  const float want[6] = {2, 5, -2, 5, 9, -2};
  for (int i = 0; i < 6; ++i)
    if (C[i] != want[i]) return false;
  return true;
}

inline void ensure_blas() {
  if (g_blas_mode == -1) g_blas_mode = (blas_selfcheck<float>() && blas_selfcheck<double>()) ? 1 : 0;
  if (g_pack_mode == -1) g_pack_mode = pack_selfcheck() ? 1 : 0;
}

template <typename T>
at::TensorOptions opts_of() {
  return at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
}

// Row-major C[M,N] = A[M,K] @ B[N,K]^T  (+ beta C), leading dimensions given.
template <typename T>
void mm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
           int64_t ldc) {
  if (fgemm<T>('T', 'N', N, M, K, B, ldb, A, lda, beta, C, ldc)) return;
  auto o = opts_of<T>();
  Tensor a = at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, o);
  Tensor b = at::from_blob(const_cast<T*>(B), {N, K}, {ldb, 1}, o);
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, o);
  if (beta == T(0)) {
    c.copy_(at::mm(a, b.t()));
  } else {
    c.addmm_(a, b.t(), beta, 1);
  }
}

// Row-major C[M,N] = A[M,K] @ B[K,N].
template <typename T>
void mm_nn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
           int64_t ldc) {
  if (fgemm<T>('N', 'N', N, M, K, B, ldb, A, lda, T(0), C, ldc)) return;
  auto o = opts_of<T>();
  Tensor a = at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, o);
  Tensor b = at::from_blob(const_cast<T*>(B), {K, N}, {ldb, 1}, o);
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, o);
  c.copy_(at::mm(a, b));
}

// The per-step recurrent product of one slot (a slice of hidden units) with a fixed matrix W:
//   trans_w: C[M,N] = A[M,K] @ W^T, W (N, K) row-major, leading dim ldw   (forward)
//   else:    C[M,N] = A[M,K] @ W,   W (K, N) row-major, leading dim ldw   (backward)
// float: the own micro-kernel (microgemm.h, W in its panels) by the fixed rule; else BLAS, with a
// large float W packed once per layer call for MKL's packed GEMM (mode 3: whichever timed faster).
template <typename T>
struct RecGemm {
  const T* W = nullptr;
  int64_t ldw = 0, M = 0, N = 0, K = 0;
  bool trans_w = true, own = false;
  Tensor packed, wt;  // wt: W as (K, N) in the own kernel's column panels (pack_panels)
  void init(const T* W_, int64_t ldw_, int64_t M_, int64_t N_, int64_t K_, bool trans_w_, int64_t full) {
    W = W_;
    ldw = ldw_;
    M = M_;
    N = N_;
    K = K_;
    trans_w = trans_w_;
    if constexpr (std::is_same<T, float>::value) {
      if (own_by_rule()) {  // the own kernel by the fixed rule: no BLAS packing needed
        wt = panels();
        own = true;
        return;
      }
      const bool want = g_pack_mode == 2 || (g_pack_mode == 1 && full >= kPackMinElems);
      if (want && std::max({M, N, K, ldw}) <= INT_MAX / 4) {
        const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, int(M), int(N), int(K));
        packed = at::empty({int64_t(bytes / sizeof(float)) + 16}, at::kFloat);
        cblas_sgemm_pack(kRowMajor, kBMatrix, trans_w ? kTrans : kNoTrans, int(M), int(N), int(K), 1.0f, W,
                         int(ldw), packed.data_ptr<float>());
      }
      init_own();
    }
  }
  // The own kernel on B = W^T already in panels (the forward packs its slot's rows of W_hh itself).
  void init_packed(Tensor p, int64_t M_, int64_t N_, int64_t K_) {
    M = M_;
    N = N_;
    K = K_;
    wt = std::move(p);
    own = true;
  }
  void run(const T* A, int64_t lda, T* C, int64_t ldc) const {
    if constexpr (std::is_same<T, float>::value) {
      if (own) {
        micro_gemm(M, N, K, A, lda, wt.data_ptr<float>(), C, ldc);
        return;
      }
    }
    run_blas(A, lda, C, ldc);
  }

 private:
  void init_own() {  // mode 3: the own kernel where it timed faster than BLAS
    if (g_small_mode != 3) return;
    if constexpr (std::is_same<T, float>::value) {
      wt = panels();
      own = choose_small(M, N, K, wt.data_ptr<float>(), int(trans_w) * 2 + int(packed.defined()),
                         [this](const T* a, int64_t lda, T* c, int64_t ldc) { run_blas(a, lda, c, ldc); });
      if (!own) wt = Tensor();
    }
  }
  Tensor panels() const {  // B = W^T (forward) or W (backward) in the own kernel's panels
    if constexpr (std::is_same<T, float>::value) {
      return trans_w ? pack_panels_t(K, N, [&](int64_t j) { return W + j * ldw; }) : pack_panels(K, N, W, ldw);
    }
    return Tensor();
  }
  void run_blas(const T* A, int64_t lda, T* C, int64_t ldc) const {
    if constexpr (std::is_same<T, float>::value) {
      if (packed.defined() && lda <= INT_MAX && ldc <= INT_MAX) {
        cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, int(M), int(N), int(K), A, int(lda),
                            packed.data_ptr<float>(), int(N), 0.0f, C, int(ldc));
        return;
      }
    }
    if (trans_w) {
      mm_nt<T>(M, N, K, A, lda, W, ldw, T(0), C, ldc);
    } else {
      mm_nn<T>(M, N, K, A, lda, W, ldw, C, ldc);
    }
  }
};

}  // namespace lstmlab
