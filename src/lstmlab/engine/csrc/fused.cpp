// lstmlab fused engine: LSTM / GRU / SimpleRNN forward and hand-derived BPTT backward.
//
// Layout (everything batch-major, matching x (B, T, I) and out (B, T, H)):
//   xw    (B*T, G)  input projection of all steps, ONE matrix product, biases folded in
//   A     (B, T, G) saved gate activations (LSTM i,f,g,o; GRU r,z,n, W_hn h + b_hn)
//   C     (B, T, H) LSTM cell states (carried through padded steps)
//   S     (B, T, H) hidden states (carried); aliases `out` when there are no padded steps
//   dG    (B, T, G) pre-activation gradients of all steps -> dW_ih, dW_hh, db, dx are a few
//                   big matrix products after the time loop.
// Per step: one GEMM (h_{t-1} @ W_hh^T forward, dG_t @ W_hh backward) straight into BLAS
// (Fortran sgemm_/dgemm_ exported by libtorch, else at::mm_out), then a fused elementwise
// loop over the batch rows (AVX2 when compiled with it) that also computes the taps.
//
// A second, device-generic route (per-step at:: ops) implements the same contract for CUDA
// tensors; it can be forced on the CPU (`generic=True`) so that it is tested everywhere.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <climits>
#include <cstring>
#include <vector>

#include "simd.h"

using at::Tensor;

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
namespace {

int64_t g_par_threshold = 16384;  // B * gate-width per step from which batch rows run in parallel
int g_blas_mode = -1;             // -1 unchecked, 0 at::mm_out, 1 Fortran BLAS from libtorch
int g_pack_mode = -1;  // -1 unchecked, 0 off, 1 MKL packed GEMM for large W_hh (float), 2 always
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

bool pack_avail() {
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr;
}

bool pack_selfcheck() {
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

void ensure_blas() {
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

struct Shape {
  int64_t B, T, I, H, G;
  std::vector<int64_t> len;  // per example, T when no lengths
  bool has_len;               // some sequence is shorter than T
  Tensor mask;                // (B, T) bool on x's device, generic route only
};

Shape make_shape(const Tensor& x, const Tensor& w_hh, int64_t gates, const std::optional<Tensor>& lengths) {
  TORCH_CHECK(x.dim() == 3, "fused: x must be (B, T, I)");
  Shape s;
  s.B = x.size(0);
  s.T = x.size(1);
  s.I = x.size(2);
  s.G = w_hh.size(0);
  s.H = s.G / gates;
  TORCH_CHECK(s.T >= 1 && s.B >= 1, "fused: empty batch or sequence");
  TORCH_CHECK(w_hh.size(1) == s.H && s.H * gates == s.G, "fused: w_hh has the wrong shape");
  s.len.assign(s.B, s.T);
  s.has_len = false;
  if (lengths.has_value() && lengths->defined()) {
    Tensor l = lengths->to(at::kCPU, at::kLong).contiguous();
    TORCH_CHECK(l.numel() == s.B, "fused: lengths must be (B,)");
    const int64_t* lp = l.data_ptr<int64_t>();
    for (int64_t b = 0; b < s.B; ++b) {
      TORCH_CHECK(lp[b] >= 1 && lp[b] <= s.T, "fused: lengths must lie in [1, T]");
      s.len[b] = lp[b];
      s.has_len |= lp[b] < s.T;
    }
    if (s.has_len) s.mask = (at::arange(s.T, l.options()).unsqueeze(0) < l.unsqueeze(1)).to(x.device());
  }
  return s;
}

Tensor opt(const std::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}
Tensor none() { return at::empty({0}); }
Tensor or_none(const Tensor& t) { return t.defined() ? t : none(); }

// Previous states for dW_hh: row (b, t) holds (h_{t-1} * rmask), h_{-1} = h0.
Tensor prev_states(const Tensor& h0, const Tensor& S, const Tensor& rmask, int64_t T) {
  Tensor hp = T > 1 ? at::cat({h0.unsqueeze(1), S.narrow(1, 0, T - 1)}, 1) : h0.unsqueeze(1).contiguous();
  if (rmask.defined()) hp.mul_(rmask.unsqueeze(1));
  return hp;
}

// dx, dW_ih, dW_hh, db from the gradients of all steps: a few big matrix products.
void lstm_like_tail(const Tensor& dG, const Tensor& x, const Tensor& h0, const Tensor& S, const Tensor& rmask,
                    const Tensor& w_ih, const Shape& s, bool need_dx, Tensor& dx, Tensor& dw_ih, Tensor& dw_hh,
                    Tensor& db) {
  Tensor dGf = dG.view({s.B * s.T, s.G});
  db = dGf.sum(0);
  dw_ih = dGf.t().mm(x.reshape({s.B * s.T, s.I}));
  dx = need_dx ? dGf.mm(w_ih).view({s.B, s.T, s.I}) : none();
  dw_hh = dGf.t().mm(prev_states(h0, S, rmask, s.T).view({s.B * s.T, s.H}));
}

// ---------------------------------------------------------------------------------------------
// CPU route
// ---------------------------------------------------------------------------------------------

// The per-step recurrent product of one slot (a slice of hidden units) with a fixed matrix W:
//   trans_w: C[M,N] = A[M,K] @ W^T, W (N, K) row-major, leading dim ldw   (forward)
//   else:    C[M,N] = A[M,K] @ W,   W (K, N) row-major, leading dim ldw   (backward)
// float + MKL: W is packed once per layer call and every step calls the packed kernel.
template <typename T>
struct RecGemm {
  const T* W = nullptr;
  int64_t ldw = 0, M = 0, N = 0, K = 0;
  bool trans_w = true;
  Tensor packed;
  void init(const T* W_, int64_t ldw_, int64_t M_, int64_t N_, int64_t K_, bool trans_w_, int64_t full) {
    W = W_;
    ldw = ldw_;
    M = M_;
    N = N_;
    K = K_;
    trans_w = trans_w_;
    if constexpr (std::is_same<T, float>::value) {
      const bool want = g_pack_mode == 2 || (g_pack_mode == 1 && full >= kPackMinElems);
      if (want && std::max({M, N, K, ldw}) <= INT_MAX / 4) {
        const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, int(M), int(N), int(K));
        packed = at::empty({int64_t(bytes / sizeof(float)) + 16}, at::kFloat);
        cblas_sgemm_pack(kRowMajor, kBMatrix, trans_w ? kTrans : kNoTrans, int(M), int(N), int(K), 1.0f, W,
                         int(ldw), packed.data_ptr<float>());
      }
    }
  }
  void run(const T* A, int64_t lda, T* C, int64_t ldc) const {
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

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Centralised spin barrier for the threads of one layer call (yields after a while: the
// machine may be shared).
struct SpinBarrier {
  std::atomic<int> count{0};
  std::atomic<int> gen{0};
  int n = 1;
  void wait() {
    if (n <= 1) return;
    const int g = gen.load(std::memory_order_acquire);
    if (count.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      count.store(0, std::memory_order_relaxed);
      gen.fetch_add(1, std::memory_order_acq_rel);
    } else {
      int spins = 0;
      while (gen.load(std::memory_order_acquire) == g) {
        if (++spins < 20000) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
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

Plan make_plan(int64_t B, int64_t H, int64_t G) {
  Plan p;
  int64_t S = 1;
#if AT_PARALLEL_OPENMP
  const int64_t nt = at::get_num_threads();
  if (nt > 1 && !at::in_parallel_region() && B * G >= g_par_threshold && H >= 32) {
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
      while (chunk.load(std::memory_order_acquire) == 0) cpu_relax();
    }
    const int prev = MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0;
    body(k0, k1, bar);
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(prev);
  });
}

Tensor reduce_slots(const Tensor& t, const Plan& p) { return p.S == 1 ? t.select(0, 0) : t.sum(0); }

// Where state row (b, t) lives: base + b * bs + t * ts, or a two-slot ping-pong buffer
// (base + (t & 1) * pp + b * bs) for the in-place states of inference.
template <typename T>
struct Rows {
  T* p;
  int64_t bs, ts, pp;
  inline T* at(int64_t b, int64_t t) const { return p + b * bs + (pp ? (t & 1) * pp : t * ts); }
};

template <typename T>
Rows<T> state_rows(const Shape& s, bool save, const Tensor& Hs, T* outp) {
  const int64_t B = s.B, T_ = s.T, H = s.H;
  if (!s.has_len) return Rows<T>{outp, T_ * H, H, 0};
  if (save) return Rows<T>{Hs.data_ptr<T>(), T_ * H, H, 0};
  return Rows<T>{Hs.data_ptr<T>(), H, 0, B * H};
}

template <typename T>
Tensor state_buffer(const Shape& s, bool save, const at::TensorOptions& o) {
  if (!s.has_len) return Tensor();
  return save ? at::empty({s.B, s.T, s.H}, o) : at::empty({2, s.B, s.H}, o);
}

Tensor final_state(const Shape& s, bool save, const Tensor& Hs, const Tensor& out) {
  if (!s.has_len) return out.select(1, s.T - 1).clone();
  return save ? Hs.select(1, s.T - 1).clone() : Hs.select(0, (s.T - 1) & 1).clone();
}

// Recurrent-dropout state h_t * rmask, ping-pong over t; slot 1 holds h0 * rmask (t = -1).
template <typename T>
Tensor rmask_buffer(const Tensor& h0, const Tensor& rmask) {
  if (!rmask.defined()) return Tensor();
  Tensor hr = at::empty({2, h0.size(0), h0.size(1)}, h0.options());
  hr.select(0, 1).copy_(h0 * rmask);
  return hr;
}

// Weights of slot k for the forward GEMM: the rows of W_hh of all `gates` gates for its units.
Tensor slot_weights(const Tensor& w_hh, const Plan& p, int64_t k, int64_t gates) {
  const int64_t H = w_hh.size(1), Hk = p.u[k + 1] - p.u[k];
  if (p.S == 1 || gates == 1) return w_hh;
  return w_hh.view({gates, H, H}).narrow(1, p.u[k], Hk).reshape({gates * Hk, H}).contiguous();
}

template <typename T>
std::vector<Tensor> lstm_fwd_cpu(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                 const Tensor& w_hh, const Tensor& bias, const Tensor& rmask, const Shape& s,
                                 bool save, bool taps) {
  const int64_t B = s.B, T_ = s.T, I = s.I, H = s.H, G = s.G;
  auto o = x.options();
  Tensor xw = at::addmm(bias, x.reshape({B * T_, I}), w_ih.t());  // becomes A (activations) in place
  Tensor out = at::empty({B, T_, H}, o);
  Tensor Hs = state_buffer<T>(s, save, o);
  Tensor C = save ? at::empty({B, T_, H}, o) : at::empty({B, H}, o);
  Tensor hr = rmask_buffer<T>(h0, rmask);
  const Plan p = make_plan(B, H, G);
  Tensor scr = at::empty({B, G}, o);
  Tensor sat = taps ? at::zeros({p.S, 4, T_, B}, o.dtype(at::kFloat)) : Tensor();
  std::vector<Tensor> wk(p.S);
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) {
    wk[k] = slot_weights(w_hh, p, k, 4);
    rec[k].init(wk[k].data_ptr<T>(), H, B, 4 * (p.u[k + 1] - p.u[k]), H, true, G * H);
  }

  T* xwp = xw.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* c0p = c0.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* outp = out.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* hrp = hr.defined() ? hr.data_ptr<T>() : nullptr;
  float* satp = taps ? sat.data_ptr<float>() : nullptr;
  const Rows<T> S = state_rows<T>(s, save, Hs, outp);
  const Rows<T> Cr{C.data_ptr<T>(), save ? T_ * H : H, save ? H : 0, 0};
  const bool sep_state = s.has_len;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = 0; t < T_; ++t) {
      bar.wait();  // h_{t-1} complete
      const T* hin = hrp ? hrp + ((t - 1) & 1) * B * H : (t == 0 ? h0p : S.at(0, t - 1));
      const int64_t ldin = (hrp || t == 0) ? H : S.bs;
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        rec[k].run(hin, ldin, scrp + 4 * u0, G);
        for (int64_t b = 0; b < B; ++b) {
          T* cc = Cr.at(b, t) + u0;
          const T* cp = (t == 0 ? c0p + b * H : Cr.at(b, t - 1)) + u0;
          T* hc = S.at(b, t) + u0;
          const T* hp = (t == 0 ? h0p + b * H : S.at(b, t - 1)) + u0;
          T* orow = outp + (b * T_ + t) * H + u0;
          T* hrc = hrp ? hrp + (t & 1) * B * H + b * H + u0 : nullptr;
          if (t >= len[b]) {  // padded: carry the state, zero output
            if (cc != cp) std::memcpy(cc, cp, sizeof(T) * Hk);
            if (hc != hp) std::memcpy(hc, hp, sizeof(T) * Hk);
            if (hrc) std::memcpy(hrc, hrp + ((t - 1) & 1) * B * H + b * H + u0, sizeof(T) * Hk);
            std::memset(orow, 0, sizeof(T) * Hk);
            continue;
          }
          T* xr = xwp + (b * T_ + t) * G + u0;  // gate stride H; activations overwrite it
          const T* sr = scrp + b * G + 4 * u0;   // gate stride Hk
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          int ni = 0, nf = 0, ng = 0, no = 0;
          for_lanes<T>(Hk, [&](auto tag, int64_t j) {
            using V = decltype(tag);
            V i = vsigmoid(V::load(xr + j) + V::load(sr + j));
            V f = vsigmoid(V::load(xr + H + j) + V::load(sr + Hk + j));
            V g = vtanh(V::load(xr + 2 * H + j) + V::load(sr + 2 * Hk + j));
            V og = vsigmoid(V::load(xr + 3 * H + j) + V::load(sr + 3 * Hk + j));
            V c = f * V::load(cp + j) + i * g;
            V h = og * vtanh(c);
            c.store(cc + j);
            h.store(orow + j);
            if (sep_state) h.store(hc + j);
            if (hrc) (h * V::load(rmr + j)).store(hrc + j);
            if (save) {
              i.store(xr + j);
              f.store(xr + H + j);
              g.store(xr + 2 * H + j);
              og.store(xr + 3 * H + j);
            }
            if (satp) {
              ni += vcount_sig(i);
              nf += vcount_sig(f);
              ng += vcount_tanh(g);
              no += vcount_sig(og);
            }
          });
          if (satp) {
            float* sk = satp + k * 4 * T_ * B + t * B + b;
            sk[0] = float(ni);
            sk[T_ * B] = float(nf);
            sk[2 * T_ * B] = float(ng);
            sk[3 * T_ * B] = float(no);
          }
        }
      }
    }
  });
  Tensor c_n = save ? C.select(1, T_ - 1).clone() : C;
  return {out, final_state(s, save, Hs, out), c_n, save ? xw.view({B, T_, G}) : none(), save ? C : none(),
          (s.has_len && save) ? Hs : none(), taps ? reduce_slots(sat, p) : none()};
}

// Gradient w.r.t. the state h_t entering the elementwise step: carried part + rmask * (dG_{t+1} W_hh)
// + output gradient (valid steps only).
template <typename V, typename T>
inline V grad_h(const T* ghr, const T* sr, const T* rmr, const T* dor, int64_t j) {
  V gh = V::load(ghr + j) + (rmr ? V::load(rmr + j) * V::load(sr + j) : V::load(sr + j));
  if (dor) gh = gh + V::load(dor + j);
  return gh;
}

template <typename T>
std::vector<Tensor> lstm_bwd_cpu(const Tensor& gout, const Tensor& ghn, const Tensor& gcn, const Tensor& x,
                                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                 const Tensor& rmask, const Tensor& A, const Tensor& C, const Tensor& S,
                                 const Shape& s, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  const Plan p = make_plan(B, H, G);
  Tensor dG = at::empty({B, T_, G}, o);
  Tensor ghb = ghn.defined() ? ghn.contiguous().clone() : at::zeros({B, H}, o);
  Tensor gcb = gcn.defined() ? gcn.contiguous().clone() : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({p.S, T_, B}, o) : Tensor();
  Tensor gcsq = taps ? at::zeros({p.S, T_, B}, o) : Tensor();
  const T* whh = w_hh.data_ptr<T>();
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) rec[k].init(whh + p.u[k], H, B, p.u[k + 1] - p.u[k], G, false, G * H);

  const T* doutp = gout.defined() ? gout.data_ptr<T>() : nullptr;
  const T* Ap = A.data_ptr<T>();
  const T* Cp = C.data_ptr<T>();
  const T* c0p = c0.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* dGp = dG.data_ptr<T>();
  T* ghbp = ghb.data_ptr<T>();
  T* gcbp = gcb.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* ghsqp = taps ? ghsq.data_ptr<T>() : nullptr;
  T* gcsqp = taps ? gcsq.data_ptr<T>() : nullptr;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = T_ - 1; t >= 0; --t) {
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        for (int64_t b = 0; b < B; ++b) {
          T* ghr = ghbp + b * H + u0;
          T* gcr = gcbp + b * H + u0;
          const T* sr = scrp + b * H + u0;
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          T* dg = dGp + (b * T_ + t) * G + u0;  // gate stride H
          SqAcc<T> ah, ac;
          if (t >= len[b]) {
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              V gh = grad_h<V>(ghr, sr, rmr, static_cast<const T*>(nullptr), j);
              gh.store(ghr + j);
              if (ghsqp) {
                ah.add(gh);
                ac.add(V::load(gcr + j));
              }
            });
            for (int g = 0; g < 4; ++g) std::memset(dg + g * H, 0, sizeof(T) * Hk);
          } else {
            const T* dor = doutp ? doutp + (b * T_ + t) * H + u0 : nullptr;
            const T* a = Ap + (b * T_ + t) * G + u0;
            const T* cr = Cp + (b * T_ + t) * H + u0;
            const T* cp = (t == 0 ? c0p + b * H : Cp + (b * T_ + t - 1) * H) + u0;
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              const V one = V::set(T(1));
              V gh = grad_h<V>(ghr, sr, rmr, dor, j);
              V i = V::load(a + j), f = V::load(a + H + j), g = V::load(a + 2 * H + j);
              V og = V::load(a + 3 * H + j);
              V tc = vtanh(V::load(cr + j));
              V dc = V::load(gcr + j) + gh * og * (one - tc * tc);
              (dc * g * i * (one - i)).store(dg + j);
              (dc * V::load(cp + j) * f * (one - f)).store(dg + H + j);
              (dc * i * (one - g * g)).store(dg + 2 * H + j);
              (gh * tc * og * (one - og)).store(dg + 3 * H + j);
              (dc * f).store(gcr + j);
              V::zero().store(ghr + j);
              if (ghsqp) {
                ah.add(gh);
                ac.add(dc);
              }
            });
          }
          if (ghsqp) {
            ghsqp[(k * T_ + t) * B + b] = ah.total();
            gcsqp[(k * T_ + t) * B + b] = ac.total();
          }
        }
      }
      bar.wait();  // dG_t complete
      for (int64_t k = s0; k < s1; ++k) rec[k].run(dGp + t * G, T_ * G, scrp + p.u[k], H);
    }
  });
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db;
  lstm_like_tail(dG, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db);
  return {dx, dh0, gcb, dw_ih, dw_hh, db, taps ? reduce_slots(ghsq, p) : none(),
          taps ? reduce_slots(gcsq, p) : none()};
}

template <typename T>
std::vector<Tensor> gru_fwd_cpu(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                const Tensor& bias, const Tensor& bhn, const Tensor& rmask, const Shape& s,
                                bool save, bool taps) {
  const int64_t B = s.B, T_ = s.T, I = s.I, H = s.H, G = s.G;
  auto o = x.options();
  // Input projection into rows of width XS: 4H when saving, so the row becomes A = (r, z, n, W_hn h + b_hn).
  const int64_t XS = save ? 4 * H : G;
  Tensor xw = at::empty({B * T_, XS}, o);
  xw.narrow(1, 0, G).copy_(bias.expand({B * T_, G}));
  mm_nt<T>(B * T_, G, I, x.data_ptr<T>(), I, w_ih.data_ptr<T>(), I, T(1), xw.data_ptr<T>(), XS);
  Tensor out = at::empty({B, T_, H}, o);
  Tensor Hs = state_buffer<T>(s, save, o);
  Tensor hr = rmask_buffer<T>(h0, rmask);
  const Plan p = make_plan(B, H, G);
  Tensor scr = at::empty({B, G}, o);
  Tensor sat = taps ? at::zeros({p.S, 3, T_, B}, o.dtype(at::kFloat)) : Tensor();
  std::vector<Tensor> wk(p.S);
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) {
    wk[k] = slot_weights(w_hh, p, k, 3);
    rec[k].init(wk[k].data_ptr<T>(), H, B, 3 * (p.u[k + 1] - p.u[k]), H, true, G * H);
  }

  T* xwp = xw.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* bhnp = bhn.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* outp = out.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* hrp = hr.defined() ? hr.data_ptr<T>() : nullptr;
  float* satp = taps ? sat.data_ptr<float>() : nullptr;
  const Rows<T> S = state_rows<T>(s, save, Hs, outp);
  const bool sep_state = s.has_len;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = 0; t < T_; ++t) {
      bar.wait();
      const T* hin = hrp ? hrp + ((t - 1) & 1) * B * H : (t == 0 ? h0p : S.at(0, t - 1));
      const int64_t ldin = (hrp || t == 0) ? H : S.bs;
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        rec[k].run(hin, ldin, scrp + 3 * u0, G);
        for (int64_t b = 0; b < B; ++b) {
          T* hc = S.at(b, t) + u0;
          const T* hp = (t == 0 ? h0p + b * H : S.at(b, t - 1)) + u0;
          T* orow = outp + (b * T_ + t) * H + u0;
          T* hrc = hrp ? hrp + (t & 1) * B * H + b * H + u0 : nullptr;
          if (t >= len[b]) {
            if (hc != hp) std::memcpy(hc, hp, sizeof(T) * Hk);
            if (hrc) std::memcpy(hrc, hrp + ((t - 1) & 1) * B * H + b * H + u0, sizeof(T) * Hk);
            std::memset(orow, 0, sizeof(T) * Hk);
            continue;
          }
          T* xr = xwp + (b * T_ + t) * XS + u0;  // gate stride H
          const T* sr = scrp + b * G + 3 * u0;    // gate stride Hk
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          const T* bh = bhnp + u0;
          int nr = 0, nz = 0, nn = 0;
          for_lanes<T>(Hk, [&](auto tag, int64_t j) {
            using V = decltype(tag);
            const V one = V::set(T(1));
            V r = vsigmoid(V::load(xr + j) + V::load(sr + j));
            V z = vsigmoid(V::load(xr + H + j) + V::load(sr + Hk + j));
            V hn = V::load(sr + 2 * Hk + j) + V::load(bh + j);
            V n = vtanh(V::load(xr + 2 * H + j) + r * hn);
            V h = (one - z) * n + z * V::load(hp + j);
            h.store(orow + j);
            if (sep_state) h.store(hc + j);
            if (hrc) (h * V::load(rmr + j)).store(hrc + j);
            if (save) {
              r.store(xr + j);
              z.store(xr + H + j);
              n.store(xr + 2 * H + j);
              hn.store(xr + 3 * H + j);
            }
            if (satp) {
              nr += vcount_sig(r);
              nz += vcount_sig(z);
              nn += vcount_tanh(n);
            }
          });
          if (satp) {
            float* sk = satp + k * 3 * T_ * B + t * B + b;
            sk[0] = float(nr);
            sk[T_ * B] = float(nz);
            sk[2 * T_ * B] = float(nn);
          }
        }
      }
    }
  });
  return {out, final_state(s, save, Hs, out), save ? xw.view({B, T_, 4 * H}) : none(),
          (s.has_len && save) ? Hs : none(), taps ? reduce_slots(sat, p) : none()};
}

void gru_tail(const Tensor& dR, const Tensor& dXn, const Tensor& x, const Tensor& h0, const Tensor& S,
              const Tensor& rmask, const Tensor& w_ih, const Shape& s, bool need_dx, Tensor& dx, Tensor& dw_ih,
              Tensor& dw_hh, Tensor& db_ih, Tensor& db_hh) {
  const int64_t BT = s.B * s.T, H = s.H;
  Tensor dRf = dR.view({BT, 3 * H});
  Tensor dXf = dXn.view({BT, H});
  Tensor dRrz = dRf.narrow(1, 0, 2 * H);
  Tensor xf = x.reshape({BT, s.I});
  db_hh = dRf.sum(0);
  db_ih = at::cat({dRrz.sum(0), dXf.sum(0)});
  dw_ih = at::cat({dRrz.t().mm(xf), dXf.t().mm(xf)});
  dx = need_dx ? dXf.mm(w_ih.narrow(0, 2 * H, H)).addmm_(dRrz, w_ih.narrow(0, 0, 2 * H)).view({s.B, s.T, s.I})
               : none();
  dw_hh = dRf.t().mm(prev_states(h0, S, rmask, s.T).view({BT, H}));
}

template <typename T>
std::vector<Tensor> gru_bwd_cpu(const Tensor& gout, const Tensor& ghn, const Tensor& x, const Tensor& h0,
                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& rmask, const Tensor& A,
                                const Tensor& S, const Shape& s, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  const Plan p = make_plan(B, H, G);
  Tensor dR = at::empty({B, T_, G}, o);
  Tensor dXn = at::empty({B, T_, H}, o);
  Tensor ghb = ghn.defined() ? ghn.contiguous().clone() : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({p.S, T_, B}, o) : Tensor();
  const T* whh = w_hh.data_ptr<T>();
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) rec[k].init(whh + p.u[k], H, B, p.u[k + 1] - p.u[k], G, false, G * H);

  const T* doutp = gout.defined() ? gout.data_ptr<T>() : nullptr;
  const T* Ap = A.data_ptr<T>();
  const T* Sp = S.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* dRp = dR.data_ptr<T>();
  T* dXp = dXn.data_ptr<T>();
  T* ghbp = ghb.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* ghsqp = taps ? ghsq.data_ptr<T>() : nullptr;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = T_ - 1; t >= 0; --t) {
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        for (int64_t b = 0; b < B; ++b) {
          T* ghr = ghbp + b * H + u0;
          const T* sr = scrp + b * H + u0;
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          T* dr = dRp + (b * T_ + t) * G + u0;  // gate stride H
          T* dxn = dXp + (b * T_ + t) * H + u0;
          SqAcc<T> ah;
          if (t >= len[b]) {
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              V gh = grad_h<V>(ghr, sr, rmr, static_cast<const T*>(nullptr), j);
              gh.store(ghr + j);
              if (ghsqp) ah.add(gh);
            });
            for (int g = 0; g < 3; ++g) std::memset(dr + g * H, 0, sizeof(T) * Hk);
            std::memset(dxn, 0, sizeof(T) * Hk);
          } else {
            const T* dor = doutp ? doutp + (b * T_ + t) * H + u0 : nullptr;
            const T* a = Ap + (b * T_ + t) * 4 * H + u0;
            const T* hp = (t == 0 ? h0p + b * H : Sp + (b * T_ + t - 1) * H) + u0;
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              const V one = V::set(T(1));
              V gh = grad_h<V>(ghr, sr, rmr, dor, j);
              V r = V::load(a + j), z = V::load(a + H + j), n = V::load(a + 2 * H + j);
              V hn = V::load(a + 3 * H + j);
              V dz = gh * (V::load(hp + j) - n);
              V dnp = gh * (one - z) * (one - n * n);
              (dnp * hn * r * (one - r)).store(dr + j);
              (dz * z * (one - z)).store(dr + H + j);
              (dnp * r).store(dr + 2 * H + j);
              dnp.store(dxn + j);
              (gh * z).store(ghr + j);
              if (ghsqp) ah.add(gh);
            });
          }
          if (ghsqp) ghsqp[(k * T_ + t) * B + b] = ah.total();
        }
      }
      bar.wait();
      for (int64_t k = s0; k < s1; ++k) rec[k].run(dRp + t * G, T_ * G, scrp + p.u[k], H);
    }
  });
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db_ih, db_hh;
  gru_tail(dR, dXn, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db_ih, db_hh);
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh, taps ? reduce_slots(ghsq, p) : none()};
}

template <typename T>
std::vector<Tensor> rnn_fwd_cpu(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                const Tensor& bias, const Tensor& rmask, const Shape& s, bool relu, bool save,
                                bool taps) {
  const int64_t B = s.B, T_ = s.T, I = s.I, H = s.H;
  auto o = x.options();
  Tensor xw = at::addmm(bias, x.reshape({B * T_, I}), w_ih.t());
  Tensor out = at::empty({B, T_, H}, o);
  Tensor Hs = state_buffer<T>(s, save, o);
  Tensor hr = rmask_buffer<T>(h0, rmask);
  const Plan p = make_plan(B, H, H);
  Tensor scr = at::empty({B, H}, o);
  Tensor sat = taps ? at::zeros({p.S, 1, T_, B}, o.dtype(at::kFloat)) : Tensor();
  const T* whh = w_hh.data_ptr<T>();
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) rec[k].init(whh + p.u[k] * H, H, B, p.u[k + 1] - p.u[k], H, true, H * H);

  const T* xwp = xw.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* outp = out.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* hrp = hr.defined() ? hr.data_ptr<T>() : nullptr;
  float* satp = taps ? sat.data_ptr<float>() : nullptr;
  const Rows<T> S = state_rows<T>(s, save, Hs, outp);
  const bool sep_state = s.has_len;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = 0; t < T_; ++t) {
      bar.wait();
      const T* hin = hrp ? hrp + ((t - 1) & 1) * B * H : (t == 0 ? h0p : S.at(0, t - 1));
      const int64_t ldin = (hrp || t == 0) ? H : S.bs;
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        rec[k].run(hin, ldin, scrp + u0, H);
        for (int64_t b = 0; b < B; ++b) {
          T* hc = S.at(b, t) + u0;
          const T* hp = (t == 0 ? h0p + b * H : S.at(b, t - 1)) + u0;
          T* orow = outp + (b * T_ + t) * H + u0;
          T* hrc = hrp ? hrp + (t & 1) * B * H + b * H + u0 : nullptr;
          if (t >= len[b]) {
            if (hc != hp) std::memcpy(hc, hp, sizeof(T) * Hk);
            if (hrc) std::memcpy(hrc, hrp + ((t - 1) & 1) * B * H + b * H + u0, sizeof(T) * Hk);
            std::memset(orow, 0, sizeof(T) * Hk);
            continue;
          }
          const T* xr = xwp + (b * T_ + t) * H + u0;
          const T* sr = scrp + b * H + u0;
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          int nh = 0;
          for_lanes<T>(Hk, [&](auto tag, int64_t j) {
            using V = decltype(tag);
            V pre = V::load(xr + j) + V::load(sr + j);
            V h = relu ? vrelu(pre) : vtanh(pre);
            h.store(orow + j);
            if (sep_state) h.store(hc + j);
            if (hrc) (h * V::load(rmr + j)).store(hrc + j);
            if (satp) nh += relu ? vcount_zero(h) : vcount_tanh(h);
          });
          if (satp) satp[(k * T_ + t) * B + b] = float(nh);
        }
      }
    }
  });
  return {out, final_state(s, save, Hs, out), (s.has_len && save) ? Hs : none(),
          taps ? reduce_slots(sat, p) : none()};
}

template <typename T>
std::vector<Tensor> rnn_bwd_cpu(const Tensor& gout, const Tensor& ghn, const Tensor& x, const Tensor& h0,
                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& rmask, const Tensor& out,
                                const Tensor& S, const Shape& s, bool relu, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H;
  auto o = x.options();
  const Plan p = make_plan(B, H, H);
  Tensor dG = at::empty({B, T_, H}, o);
  Tensor ghb = ghn.defined() ? ghn.contiguous().clone() : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({p.S, T_, B}, o) : Tensor();
  const T* whh = w_hh.data_ptr<T>();
  std::vector<RecGemm<T>> rec(p.S);
  for (int64_t k = 0; k < p.S; ++k) rec[k].init(whh + p.u[k], H, B, p.u[k + 1] - p.u[k], H, false, H * H);

  const T* doutp = gout.defined() ? gout.data_ptr<T>() : nullptr;
  const T* outp = out.data_ptr<T>();
  const T* rmp = rmask.defined() ? rmask.data_ptr<T>() : nullptr;
  T* dGp = dG.data_ptr<T>();
  T* ghbp = ghb.data_ptr<T>();
  T* scrp = scr.data_ptr<T>();
  T* ghsqp = taps ? ghsq.data_ptr<T>() : nullptr;
  const int64_t* len = s.len.data();

  run_slots(p, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
    for (int64_t t = T_ - 1; t >= 0; --t) {
      for (int64_t k = s0; k < s1; ++k) {
        const int64_t u0 = p.u[k], Hk = p.u[k + 1] - u0;
        for (int64_t b = 0; b < B; ++b) {
          T* ghr = ghbp + b * H + u0;
          const T* sr = scrp + b * H + u0;
          const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
          T* dg = dGp + (b * T_ + t) * H + u0;
          SqAcc<T> ah;
          if (t >= len[b]) {
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              V gh = grad_h<V>(ghr, sr, rmr, static_cast<const T*>(nullptr), j);
              gh.store(ghr + j);
              if (ghsqp) ah.add(gh);
            });
            std::memset(dg, 0, sizeof(T) * Hk);
          } else {
            const T* dor = doutp ? doutp + (b * T_ + t) * H + u0 : nullptr;
            const T* hrow = outp + (b * T_ + t) * H + u0;  // valid step: output == new state
            for_lanes<T>(Hk, [&](auto tag, int64_t j) {
              using V = decltype(tag);
              V gh = grad_h<V>(ghr, sr, rmr, dor, j);
              V h = V::load(hrow + j);
              V d = relu ? vpos_select(h, gh) : gh * (V::set(T(1)) - h * h);
              d.store(dg + j);
              V::zero().store(ghr + j);
              if (ghsqp) ah.add(gh);
            });
          }
          if (ghsqp) ghsqp[(k * T_ + t) * B + b] = ah.total();
        }
      }
      bar.wait();
      for (int64_t k = s0; k < s1; ++k) rec[k].run(dGp + t * H, T_ * H, scrp + p.u[k], H);
    }
  });
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db;
  lstm_like_tail(dG, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db);
  return {dx, dh0, dw_ih, dw_hh, db, taps ? reduce_slots(ghsq, p) : none()};
}

// ---------------------------------------------------------------------------------------------
// Device-generic route: per-step at:: ops (CUDA tensors; forced on the CPU in tests)
// ---------------------------------------------------------------------------------------------

Tensor sig_sat(const Tensor& v) { return ((v < kSigLow) | (v > kSigHigh)).sum(-1); }
Tensor tanh_sat(const Tensor& v) { return (v.abs() > kTanhLimit).sum(-1); }

// counts (B, T, k) -> masked float (k, T, B)
Tensor finish_sat(const Tensor& counts, const Shape& s) {
  Tensor c = counts.to(at::kFloat);
  if (s.has_len) c = c * s.mask.unsqueeze(-1).to(at::kFloat);
  return c.permute({2, 1, 0}).contiguous();
}

struct StepMask {
  Tensor b, f;  // (B, 1) bool and float (x's dtype) masks of step t
};
StepMask step_mask(const Shape& s, int64_t t, const at::TensorOptions& o) {
  if (!s.has_len) return {};
  Tensor m = s.mask.select(1, t).unsqueeze(1);
  return {m, m.to(o.dtype())};
}

std::vector<Tensor> lstm_fwd_generic(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                     const Tensor& w_hh, const Tensor& bias, const Tensor& rmask, const Shape& s,
                                     bool save, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  Tensor xw = at::addmm(bias, x.reshape({B * T_, s.I}), w_ih.t()).view({B, T_, G});
  Tensor out = at::empty({B, T_, H}, o);
  Tensor A = (save || taps) ? xw : Tensor();  // activations overwrite the consumed input projection
  Tensor C = save ? at::empty({B, T_, H}, o) : Tensor();
  Tensor Hs = (save && s.has_len) ? at::empty({B, T_, H}, o) : Tensor();
  Tensor h = h0, c = c0, whh_t = w_hh.t();
  for (int64_t t = 0; t < T_; ++t) {
    Tensor gates = at::addmm(xw.select(1, t), rmask.defined() ? h * rmask : h, whh_t);
    auto ch = gates.chunk(4, 1);
    ch[0].sigmoid_();
    ch[1].sigmoid_();
    ch[2].tanh_();
    ch[3].sigmoid_();
    if (A.defined()) A.select(1, t).copy_(gates);
    Tensor cn = ch[1] * c + ch[0] * ch[2];
    Tensor hn = ch[3] * cn.tanh();
    StepMask m = step_mask(s, t, o);
    if (s.has_len) {
      c = at::where(m.b, cn, c);
      h = at::where(m.b, hn, h);
      out.select(1, t).copy_(hn * m.f);
    } else {
      c = cn;
      h = hn;
      out.select(1, t).copy_(hn);
    }
    if (save) C.select(1, t).copy_(c);
    if (Hs.defined()) Hs.select(1, t).copy_(h);
  }
  Tensor sat;
  if (taps) {
    Tensor Av = A.view({B, T_, 4, H});
    Tensor cnt = sig_sat(Av);
    cnt.select(2, 2).copy_(tanh_sat(Av.select(2, 2)));
    sat = finish_sat(cnt, s);
  }
  return {out, h.contiguous(), c.contiguous(), save ? A : none(), or_none(C), or_none(Hs), or_none(sat)};
}

std::vector<Tensor> lstm_bwd_generic(const Tensor& gout, const Tensor& ghn, const Tensor& gcn, const Tensor& x,
                                     const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                     const Tensor& rmask, const Tensor& A, const Tensor& C, const Tensor& S,
                                     const Shape& s, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  Tensor dG = at::empty({B, T_, G}, o);
  Tensor ghb = ghn.defined() ? ghn : at::zeros({B, H}, o);
  Tensor gcb = gcn.defined() ? gcn : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({T_, B}, o) : Tensor();
  Tensor gcsq = taps ? at::zeros({T_, B}, o) : Tensor();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    StepMask m = step_mask(s, t, o);
    Tensor gh = ghb + (rmask.defined() ? rmask * scr : scr);
    if (gout.defined()) gh = gh + (s.has_len ? gout.select(1, t) * m.f : gout.select(1, t));
    auto a = A.select(1, t).chunk(4, 1);
    const Tensor &i = a[0], &f = a[1], &g = a[2], &og = a[3];
    Tensor cp = t == 0 ? c0 : C.select(1, t - 1);
    Tensor tc = C.select(1, t).tanh();
    Tensor dc = gcb + gh * og * (1 - tc * tc);
    Tensor dpre = at::cat({dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g * g),
                           gh * tc * og * (1 - og)}, 1);
    Tensor gct;
    if (s.has_len) {
      dpre = at::where(m.b, dpre, at::zeros({}, o));
      gct = at::where(m.b, dc, gcb);
      gcb = at::where(m.b, dc * f, gcb);
      ghb = at::where(m.b, at::zeros({}, o), gh);
    } else {
      gct = dc;
      gcb = dc * f;
      ghb = at::zeros_like(gh);
    }
    dG.select(1, t).copy_(dpre);
    scr = dpre.mm(w_hh);
    if (taps) {
      ghsq.select(0, t).copy_((gh * gh).sum(1));
      gcsq.select(0, t).copy_((gct * gct).sum(1));
    }
  }
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db;
  lstm_like_tail(dG, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db);
  return {dx, dh0, gcb.contiguous(), dw_ih, dw_hh, db, or_none(ghsq), or_none(gcsq)};
}

std::vector<Tensor> gru_fwd_generic(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                    const Tensor& bias, const Tensor& bhn, const Tensor& rmask, const Shape& s,
                                    bool save, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  Tensor xw = at::addmm(bias, x.reshape({B * T_, s.I}), w_ih.t()).view({B, T_, G});
  Tensor out = at::empty({B, T_, H}, o);
  Tensor A = (save || taps) ? at::empty({B, T_, 4 * H}, o) : Tensor();
  Tensor Hs = (save && s.has_len) ? at::empty({B, T_, H}, o) : Tensor();
  Tensor h = h0, whh_t = w_hh.t();
  for (int64_t t = 0; t < T_; ++t) {
    Tensor rec = (rmask.defined() ? h * rmask : h).mm(whh_t);
    auto rc = rec.chunk(3, 1);
    auto xc = xw.select(1, t).chunk(3, 1);
    Tensor r = (xc[0] + rc[0]).sigmoid();
    Tensor z = (xc[1] + rc[1]).sigmoid();
    Tensor hn = rc[2] + bhn;
    Tensor n = (xc[2] + r * hn).tanh();
    Tensor hnew = (1 - z) * n + z * h;
    if (A.defined()) A.select(1, t).copy_(at::cat({r, z, n, hn}, 1));
    StepMask m = step_mask(s, t, o);
    if (s.has_len) {
      h = at::where(m.b, hnew, h);
      out.select(1, t).copy_(hnew * m.f);
    } else {
      h = hnew;
      out.select(1, t).copy_(hnew);
    }
    if (Hs.defined()) Hs.select(1, t).copy_(h);
  }
  Tensor sat;
  if (taps) {
    Tensor Av = A.view({B, T_, 4, H}).narrow(2, 0, 3);
    Tensor cnt = sig_sat(Av);
    cnt.select(2, 2).copy_(tanh_sat(Av.select(2, 2)));
    sat = finish_sat(cnt, s);
  }
  return {out, h.contiguous(), save ? A : none(), or_none(Hs), or_none(sat)};
}

std::vector<Tensor> gru_bwd_generic(const Tensor& gout, const Tensor& ghn, const Tensor& x, const Tensor& h0,
                                    const Tensor& w_ih, const Tensor& w_hh, const Tensor& rmask, const Tensor& A,
                                    const Tensor& S, const Shape& s, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  auto o = x.options();
  Tensor dR = at::empty({B, T_, G}, o);
  Tensor dXn = at::empty({B, T_, H}, o);
  Tensor ghb = ghn.defined() ? ghn : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({T_, B}, o) : Tensor();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    StepMask m = step_mask(s, t, o);
    Tensor gh = ghb + (rmask.defined() ? rmask * scr : scr);
    if (gout.defined()) gh = gh + (s.has_len ? gout.select(1, t) * m.f : gout.select(1, t));
    auto a = A.select(1, t).chunk(4, 1);
    const Tensor &r = a[0], &z = a[1], &n = a[2], &hn = a[3];
    Tensor hp = t == 0 ? h0 : S.select(1, t - 1);
    Tensor dz = gh * (hp - n);
    Tensor dnp = gh * (1 - z) * (1 - n * n);
    Tensor dRt = at::cat({dnp * hn * r * (1 - r), dz * z * (1 - z), dnp * r}, 1);
    if (s.has_len) {
      dRt = at::where(m.b, dRt, at::zeros({}, o));
      dnp = at::where(m.b, dnp, at::zeros({}, o));
      ghb = at::where(m.b, gh * z, gh);
    } else {
      ghb = gh * z;
    }
    dR.select(1, t).copy_(dRt);
    dXn.select(1, t).copy_(dnp);
    scr = dRt.mm(w_hh);
    if (taps) ghsq.select(0, t).copy_((gh * gh).sum(1));
  }
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db_ih, db_hh;
  gru_tail(dR, dXn, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db_ih, db_hh);
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh, or_none(ghsq)};
}

std::vector<Tensor> rnn_fwd_generic(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                    const Tensor& bias, const Tensor& rmask, const Shape& s, bool relu, bool save,
                                    bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H;
  auto o = x.options();
  Tensor xw = at::addmm(bias, x.reshape({B * T_, s.I}), w_ih.t()).view({B, T_, H});
  Tensor out = at::empty({B, T_, H}, o);
  Tensor Hs = (save && s.has_len) ? at::empty({B, T_, H}, o) : Tensor();
  Tensor act = taps ? at::empty({B, T_, H}, o) : Tensor();
  Tensor h = h0, whh_t = w_hh.t();
  for (int64_t t = 0; t < T_; ++t) {
    Tensor pre = at::addmm(xw.select(1, t), rmask.defined() ? h * rmask : h, whh_t);
    Tensor hnew = relu ? pre.relu() : pre.tanh();
    if (act.defined()) act.select(1, t).copy_(hnew);
    StepMask m = step_mask(s, t, o);
    if (s.has_len) {
      h = at::where(m.b, hnew, h);
      out.select(1, t).copy_(hnew * m.f);
    } else {
      h = hnew;
      out.select(1, t).copy_(hnew);
    }
    if (Hs.defined()) Hs.select(1, t).copy_(h);
  }
  Tensor sat;
  if (taps) sat = finish_sat((relu ? (act == 0).sum(-1) : tanh_sat(act)).unsqueeze(-1), s);
  return {out, h.contiguous(), or_none(Hs), or_none(sat)};
}

std::vector<Tensor> rnn_bwd_generic(const Tensor& gout, const Tensor& ghn, const Tensor& x, const Tensor& h0,
                                    const Tensor& w_ih, const Tensor& w_hh, const Tensor& rmask, const Tensor& out,
                                    const Tensor& S, const Shape& s, bool relu, bool need_dx, bool taps) {
  const int64_t B = s.B, T_ = s.T, H = s.H;
  auto o = x.options();
  Tensor dG = at::empty({B, T_, H}, o);
  Tensor ghb = ghn.defined() ? ghn : at::zeros({B, H}, o);
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({T_, B}, o) : Tensor();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    StepMask m = step_mask(s, t, o);
    Tensor gh = ghb + (rmask.defined() ? rmask * scr : scr);
    if (gout.defined()) gh = gh + (s.has_len ? gout.select(1, t) * m.f : gout.select(1, t));
    Tensor h = out.select(1, t);
    Tensor d = relu ? gh * (h > 0).to(o.dtype()) : gh * (1 - h * h);
    if (s.has_len) {
      d = at::where(m.b, d, at::zeros({}, o));
      ghb = at::where(m.b, at::zeros({}, o), gh);
    } else {
      ghb = at::zeros_like(gh);
    }
    dG.select(1, t).copy_(d);
    scr = d.mm(w_hh);
    if (taps) ghsq.select(0, t).copy_((gh * gh).sum(1));
  }
  Tensor dh0 = rmask.defined() ? ghb + rmask * scr : ghb + scr;
  Tensor dx, dw_ih, dw_hh, db;
  lstm_like_tail(dG, x, h0, S, rmask, w_ih, s, need_dx, dx, dw_ih, dw_hh, db);
  return {dx, dh0, dw_ih, dw_hh, db, or_none(ghsq)};
}

// ---------------------------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------------------------

bool use_cpu(const Tensor& x, bool generic) {
  if (generic || !x.is_cpu()) return false;
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fused: CPU route supports float32 and float64 only");
  ensure_blas();
  return true;
}

std::vector<Tensor> lstm_fwd(const Tensor& x_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_ih_,
                             const Tensor& w_hh_, const Tensor& b_ih, const Tensor& b_hh,
                             const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask_, bool save,
                             bool taps, bool generic) {
  Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), rmask = opt(rmask_);
  Shape s = make_shape(x, w_hh, 4, lengths);
  Tensor bias = b_ih + b_hh;
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_fwd", [&] {
      r = lstm_fwd_cpu<scalar_t>(x, h0, c0, w_ih, w_hh, bias, rmask, s, save, taps);
    });
    return r;
  }
  return lstm_fwd_generic(x, h0, c0, w_ih, w_hh, bias, rmask, s, save, taps);
}

std::vector<Tensor> lstm_bwd(const std::optional<Tensor>& gout, const std::optional<Tensor>& ghn,
                             const std::optional<Tensor>& gcn, const Tensor& x_, const Tensor& h0_, const Tensor& c0_,
                             const Tensor& w_ih_, const Tensor& w_hh_, const std::optional<Tensor>& lengths,
                             const std::optional<Tensor>& rmask_, const Tensor& A, const Tensor& C, const Tensor& S,
                             bool need_dx, bool taps, bool generic) {
  Tensor x = x_.contiguous(), rmask = opt(rmask_), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  Shape s = make_shape(x, w_hh, 4, lengths);
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_bwd", [&] {
      r = lstm_bwd_cpu<scalar_t>(opt(gout), opt(ghn), opt(gcn), x, h0, c0, w_ih, w_hh, rmask, A, C, S, s,
                                 need_dx, taps);
    });
    return r;
  }
  return lstm_bwd_generic(opt(gout), opt(ghn), opt(gcn), x, h0, c0, w_ih, w_hh, rmask, A, C, S, s, need_dx, taps);
}

std::vector<Tensor> gru_fwd(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
                            const Tensor& b_ih, const Tensor& b_hh, const std::optional<Tensor>& lengths,
                            const std::optional<Tensor>& rmask_, bool save, bool taps, bool generic) {
  Tensor x = x_.contiguous(), h0 = h0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), rmask = opt(rmask_);
  Shape s = make_shape(x, w_hh, 3, lengths);
  const int64_t H = s.H;
  Tensor bias = b_ih.clone();
  bias.narrow(0, 0, 2 * H).add_(b_hh.narrow(0, 0, 2 * H));
  Tensor bhn = b_hh.narrow(0, 2 * H, H).contiguous();
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_fwd", [&] {
      r = gru_fwd_cpu<scalar_t>(x, h0, w_ih, w_hh, bias, bhn, rmask, s, save, taps);
    });
    return r;
  }
  return gru_fwd_generic(x, h0, w_ih, w_hh, bias, bhn, rmask, s, save, taps);
}

std::vector<Tensor> gru_bwd(const std::optional<Tensor>& gout, const std::optional<Tensor>& ghn, const Tensor& x_,
                            const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
                            const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask_,
                            const Tensor& A, const Tensor& S, bool need_dx, bool taps, bool generic) {
  Tensor x = x_.contiguous(), rmask = opt(rmask_), h0 = h0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  Shape s = make_shape(x, w_hh, 3, lengths);
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_bwd", [&] {
      r = gru_bwd_cpu<scalar_t>(opt(gout), opt(ghn), x, h0, w_ih, w_hh, rmask, A, S, s, need_dx, taps);
    });
    return r;
  }
  return gru_bwd_generic(opt(gout), opt(ghn), x, h0, w_ih, w_hh, rmask, A, S, s, need_dx, taps);
}

std::vector<Tensor> rnn_fwd(const Tensor& x_, const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
                            const Tensor& b_ih, const Tensor& b_hh, const std::optional<Tensor>& lengths,
                            const std::optional<Tensor>& rmask_, bool relu, bool save, bool taps, bool generic) {
  Tensor x = x_.contiguous(), h0 = h0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous(), rmask = opt(rmask_);
  Shape s = make_shape(x, w_hh, 1, lengths);
  Tensor bias = b_ih + b_hh;
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_fwd", [&] {
      r = rnn_fwd_cpu<scalar_t>(x, h0, w_ih, w_hh, bias, rmask, s, relu, save, taps);
    });
    return r;
  }
  return rnn_fwd_generic(x, h0, w_ih, w_hh, bias, rmask, s, relu, save, taps);
}

std::vector<Tensor> rnn_bwd(const std::optional<Tensor>& gout, const std::optional<Tensor>& ghn, const Tensor& x_,
                            const Tensor& h0_, const Tensor& w_ih_, const Tensor& w_hh_,
                            const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask_,
                            const Tensor& out, const Tensor& S, bool relu, bool need_dx, bool taps, bool generic) {
  Tensor x = x_.contiguous(), rmask = opt(rmask_), h0 = h0_.contiguous();
  Tensor w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  Shape s = make_shape(x, w_hh, 1, lengths);
  if (use_cpu(x, generic)) {
    std::vector<Tensor> r;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_bwd", [&] {
      r = rnn_bwd_cpu<scalar_t>(opt(gout), opt(ghn), x, h0, w_ih, w_hh, rmask, out, S, s, relu, need_dx, taps);
    });
    return r;
  }
  return rnn_bwd_generic(opt(gout), opt(ghn), x, h0, w_ih, w_hh, rmask, out, S, s, relu, need_dx, taps);
}

// [simd lanes, blas mode, parallel threshold, packed gemm]; negative arguments leave a setting unchanged.
std::vector<int64_t> configure(int64_t par_threshold, int64_t blas_mode, int64_t pack_mode) {
  ensure_blas();
  if (par_threshold >= 0) g_par_threshold = par_threshold;
  if (blas_mode == 0) g_blas_mode = 0;
  if (blas_mode == 1) g_blas_mode = (blas_selfcheck<float>() && blas_selfcheck<double>()) ? 1 : 0;
  if (pack_mode == 0) g_pack_mode = 0;
  if (pack_mode >= 1) g_pack_mode = pack_selfcheck() ? int(std::min<int64_t>(pack_mode, 2)) : 0;
#if defined(LSTMLAB_HAVE_V16)
  const int64_t lanes = 16;
#elif defined(LSTMLAB_HAVE_V8)
  const int64_t lanes = 8;
#else
  const int64_t lanes = 1;
#endif
  return {lanes, g_blas_mode, g_par_threshold, g_pack_mode};
}

}  // namespace
}  // namespace lstmlab

TORCH_LIBRARY(lstmlab_fused, m) {
  m.def("lstm_fwd(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor b_ih, Tensor b_hh, "
        "Tensor? lengths, Tensor? rmask, bool save, bool taps, bool generic) -> Tensor[]");
  m.def("lstm_bwd(Tensor? gout, Tensor? ghn, Tensor? gcn, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, "
        "Tensor w_hh, Tensor? lengths, Tensor? rmask, Tensor A, Tensor C, Tensor S, bool need_dx, bool taps, "
        "bool generic) -> Tensor[]");
  m.def("gru_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor b_ih, Tensor b_hh, Tensor? lengths, "
        "Tensor? rmask, bool save, bool taps, bool generic) -> Tensor[]");
  m.def("gru_bwd(Tensor? gout, Tensor? ghn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
        "Tensor? rmask, Tensor A, Tensor S, bool need_dx, bool taps, bool generic) -> Tensor[]");
  m.def("rnn_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor b_ih, Tensor b_hh, Tensor? lengths, "
        "Tensor? rmask, bool relu, bool save, bool taps, bool generic) -> Tensor[]");
  m.def("rnn_bwd(Tensor? gout, Tensor? ghn, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
        "Tensor? rmask, Tensor out, Tensor S, bool relu, bool need_dx, bool taps, bool generic) -> Tensor[]");
  m.def("configure(int par_threshold, int blas_mode, int pack_mode) -> int[]", &lstmlab::configure);
}

TORCH_LIBRARY_IMPL(lstmlab_fused, CompositeExplicitAutograd, m) {
  m.impl("lstm_fwd", &lstmlab::lstm_fwd);
  m.impl("lstm_bwd", &lstmlab::lstm_bwd);
  m.impl("gru_fwd", &lstmlab::gru_fwd);
  m.impl("gru_bwd", &lstmlab::gru_bwd);
  m.impl("rnn_fwd", &lstmlab::rnn_fwd);
  m.impl("rnn_bwd", &lstmlab::rnn_bwd);
}
