// Layer-normalised LSTM (Ba et al. 2016) on the CPU: the time loop and a hand-derived BPTT.
//
//   pre_t = xn_t + LN_hh(hr_{t-1} W_hh^T + b_hh),  c_t = f c_{t-1} + i g,  h_t = o tanh(LN_c(c_t))
// where xn = LN_ih(x W_ih^T + b_ih) of all steps is computed (and differentiated) by torch before
// the loop (it does not depend on the recurrence), and hr = h * rmask (recurrent dropout).  Per
// step: one GEMM into BLAS and, per batch row, a few SIMD passes (the two layer norms reduce over
// a whole row).  Backward: per step the row passes and one GEMM dR_t @ W_hh; dW_hh and the
// normalisation parameters' gradients are big products / reductions after the loop.
// Padded steps (t >= lengths[b]) carry h and c, output 0; their gradients pass through.
// Layout: every (B, T, X) buffer is batch-major, row (b, t) at (b * T + t) * X.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "blas.h"
#include "hugepages.h"
#include "simd.h"

namespace lstmlab {
namespace {

using at::Tensor;

// A sum accumulated across the wide and the one-lane loop of a row (reduced once, at the end).
template <typename T>
struct SumAcc {
  T s = T(0);
  inline void add(Sc<T> a) { s += a.v; }
#ifdef LSTMLAB_HAVE_V8
  V8 w = V8::zero();
  inline void add(V8 a) { w = w + a; }
#ifdef LSTMLAB_HAVE_V16
  V16 w16 = V16::zero();
  inline void add(V16 a) { w16 = w16 + a; }
  inline T total() const { return s + T(vsum(w)) + T(vsum(w16)); }
#else
  inline T total() const { return s + T(vsum(w)); }
#endif
#else
  inline T total() const { return s; }
#endif
};

// sum over j in [0, n) of f(V, j) (a lane group).
template <typename T, class F>
inline T row_sum(int64_t n, const F& f) {
  SumAcc<T> acc;
  for_lanes<T>(n, [&](auto tag, int64_t j) { acc.add(f(tag, j)); });
  return acc.total();
}

// acc[j] += v (lanes j .. j + V::W).
template <class V, typename T>
inline void accumulate(T* acc, int64_t j, V v) {
  (V::load(acc + j) + v).store(acc + j);
}

template <typename T>
inline T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

inline Tensor opt(const std::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

std::vector<int64_t> lengths_of(const Tensor& lengths, int64_t B, int64_t T) {
  std::vector<int64_t> len(B, T);
  if (!lengths.defined()) return len;
  Tensor l = lengths.to(at::kLong).contiguous();
  TORCH_CHECK(l.numel() == B, "lnlstm: lengths must be (B,)");
  for (int64_t b = 0; b < B; ++b) {
    len[b] = l.data_ptr<int64_t>()[b];
    TORCH_CHECK(len[b] >= 1 && len[b] <= T, "lnlstm: lengths must lie in [1, T]");
  }
  return len;
}

// Mean and 1/sqrt(var + eps) of row p[0, n) (biased variance, two passes, as torch's LayerNorm).
template <typename T>
inline void moments(const T* p, int64_t n, double eps, T& mean, T& rstd) {
  mean = row_sum<T>(n, [&](auto tag, int64_t j) { return decltype(tag)::load(p + j); }) / T(n);
  const T m = mean;
  const T var = row_sum<T>(n, [&](auto tag, int64_t j) {
                  using V = decltype(tag);
                  const V d = V::load(p + j) - V::set(m);
                  return d * d;
                }) / T(n);
  rstd = T(1) / std::sqrt(var + T(eps));
}

struct Fwd {
  Tensor out, A, RN, rr, C, CN, rc, S;
};

// One valid step of batch row b: R holds the recurrent product hr W_hh^T of that row.
template <typename T>
void fwd_row(int64_t H, T* R, const T* xn, const T* bh, const T* gh, const T* beh, const T* gc, const T* bec,
             double eps_h, double eps_c, const T* cp, T* a, T* rn, T* rr, T* c, T* cn, T* rc, T* h, T* o) {
  const int64_t G = 4 * H;
  for_lanes<T>(G, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    (V::load(R + j) + V::load(bh + j)).store(R + j);
  });
  T mr, sr, mc, sc;
  moments<T>(R, G, eps_h, mr, sr);
  *rr = sr;
  for_lanes<T>(H, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    V pre[4];
    for (int q = 0; q < 4; ++q) {
      const int64_t k = q * H + j;
      const V n = (V::load(R + k) - V::set(mr)) * V::set(sr);
      n.store(rn + k);
      pre[q] = V::load(xn + k) + n * V::load(gh + k) + V::load(beh + k);
    }
    const V i = vsigmoid(pre[0]), f = vsigmoid(pre[1]), g = vtanh(pre[2]), og = vsigmoid(pre[3]);
    i.store(a + j);
    f.store(a + H + j);
    g.store(a + 2 * H + j);
    og.store(a + 3 * H + j);
    (f * V::load(cp + j) + i * g).store(c + j);
  });
  moments<T>(c, H, eps_c, mc, sc);
  *rc = sc;
  for_lanes<T>(H, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    const V n = (V::load(c + j) - V::set(mc)) * V::set(sc);
    n.store(cn + j);
    const V hv = V::load(a + 3 * H + j) * vtanh(n * V::load(gc + j) + V::load(bec + j));
    hv.store(h + j);
    hv.store(o + j);
  });
}

template <typename T>
Fwd forward_loop(const Tensor& xn, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const Tensor& b_hh,
                 const Tensor& g_hh, const Tensor& be_hh, const Tensor& g_c, const Tensor& be_c, double eps_h,
                 double eps_c, const std::vector<int64_t>& len, const Tensor& rmask) {
  const int64_t B = xn.size(0), T_ = xn.size(1), G = xn.size(2), H = G / 4;
  const auto o = xn.options();
  Fwd f{Tensor(), big_empty({B, T_, G}, o), big_empty({B, T_, G}, o), at::empty({B, T_}, o),
        big_empty({B, T_, H}, o), big_empty({B, T_, H}, o), at::empty({B, T_}, o), big_empty({B, T_, H}, o)};
  const bool padded = std::any_of(len.begin(), len.end(), [&](int64_t l) { return l < T_; });
  f.out = padded ? big_empty({B, T_, H}, o) : f.S;  // no padding: the output is the state sequence
  Tensor R = at::empty({B, G}, o), hr = at::empty({B, H}, o);
  T *Rp = R.data_ptr<T>(), *hrp = hr.data_ptr<T>(), *Sp = f.S.data_ptr<T>(), *Cp = f.C.data_ptr<T>();
  const T *h0p = h0.data_ptr<T>(), *c0p = c0.data_ptr<T>(), *rmp = ptr<T>(rmask), *whh = w_hh.data_ptr<T>();
  const T *xnp = xn.data_ptr<T>(), *bh = b_hh.data_ptr<T>(), *gh = g_hh.data_ptr<T>(), *beh = be_hh.data_ptr<T>();
  const T *gc = g_c.data_ptr<T>(), *bec = be_c.data_ptr<T>();
  T *Ap = f.A.data_ptr<T>(), *RNp = f.RN.data_ptr<T>(), *rrp = f.rr.data_ptr<T>(), *CNp = f.CN.data_ptr<T>();
  T *rcp = f.rc.data_ptr<T>(), *outp = f.out.data_ptr<T>();
  for (int64_t t = 0; t < T_; ++t) {
    const T* hin = t == 0 ? h0p : Sp + (t - 1) * H;
    int64_t ld = t == 0 ? H : T_ * H;
    if (rmp) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) hrp[b * H + j] = hin[b * ld + j] * rmp[b * H + j];
      hin = hrp;
      ld = H;
    }
    mm_nt<T>(B, G, H, hin, ld, whh, H, T(0), Rp, G);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t bt = b * T_ + t;
      const T* hp = t == 0 ? h0p + b * H : Sp + (bt - 1) * H;
      const T* cp = t == 0 ? c0p + b * H : Cp + (bt - 1) * H;
      if (t >= len[b]) {  // padded: carry the states, zero output and A (for the masked taps); RN, CN unread
        std::memcpy(Sp + bt * H, hp, sizeof(T) * H);
        std::memcpy(Cp + bt * H, cp, sizeof(T) * H);
        std::memset(outp + bt * H, 0, sizeof(T) * H);
        std::memset(Ap + bt * G, 0, sizeof(T) * G);
        continue;
      }
      fwd_row<T>(H, Rp + b * G, xnp + bt * G, bh, gh, beh, gc, bec, eps_h, eps_c, cp, Ap + bt * G, RNp + bt * G,
                 rrp + bt, Cp + bt * H, CNp + bt * H, rcp + bt, Sp + bt * H, outp + bt * H);
    }
  }
  return f;
}

std::vector<Tensor> forward(const Tensor& xn_, const Tensor& h0_, const Tensor& c0_, const Tensor& w_hh_,
                            const Tensor& b_hh, const Tensor& g_hh, const Tensor& be_hh, const Tensor& g_c,
                            const Tensor& be_c, double eps_h, double eps_c, const std::optional<Tensor>& lengths,
                            const std::optional<Tensor>& rmask) {
  ensure_blas();
  const Tensor xn = xn_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous(), w_hh = w_hh_.contiguous();
  TORCH_CHECK(xn.dim() == 3 && xn.size(2) == w_hh.size(0) && w_hh.size(0) == 4 * w_hh.size(1),
              "lnlstm: xn must be (B, T, 4H) and w_hh (4H, H)");
  const auto len = lengths_of(opt(lengths), xn.size(0), xn.size(1));
  const Tensor rm = opt(rmask);
  auto args = std::make_tuple(b_hh.contiguous(), g_hh.contiguous(), be_hh.contiguous(), g_c.contiguous(),
                              be_c.contiguous());
  Fwd f;
  AT_DISPATCH_FLOATING_TYPES(xn.scalar_type(), "lnlstm_forward", [&] {
    f = forward_loop<scalar_t>(xn, h0, c0, w_hh, std::get<0>(args), std::get<1>(args), std::get<2>(args),
                               std::get<3>(args), std::get<4>(args), eps_h, eps_c, len, rm);
  });
  const int64_t T_ = xn.size(1);
  return {f.out, f.S.select(1, T_ - 1).clone(), f.C.select(1, T_ - 1).clone(), f.A, f.RN, f.rr, f.C, f.CN, f.rc,
          f.S};
}

// Saved forward tensors and parameters the backward rows read.
template <typename T>
struct BwdIn {
  const T *A, *RN, *rr, *C, *CN, *rc, *c0, *gh, *gc, *bec, *gout, *rm;
  int64_t T_, H;
};

// The parameters' gradients, summed over rows and steps as the loop goes: b_hh, LN_hh weight and
// bias (4H each), LN_c weight and bias (H each), contiguous.
template <typename T>
struct ParamAcc {
  T *db_hh, *dg_hh, *dbe_hh, *dg_c, *dbe_c;
  explicit ParamAcc(T* p, int64_t H)
      : db_hh(p), dg_hh(p + 4 * H), dbe_hh(p + 8 * H), dg_c(p + 12 * H), dbe_c(p + 13 * H) {}
};

// One valid step of row b.  gh: total dL/dh_t (in ghr), gcr: carried dL/dc_t (becomes dL/dc_{t-1}).
// Writes dL/dxn_t (dx) and dL/dr_t (dr), adds to the parameters' gradients (acc); dl: scratch (H).
// Returns |dL/dc_t|^2.
template <typename T>
T bwd_row(const BwdIn<T>& in, int64_t b, int64_t t, const T* ghr, T* gcr, T* dx, T* dr, T* dl,
          const ParamAcc<T>& acc) {
  const int64_t H = in.H, G = 4 * H, bt = b * in.T_ + t;
  const T *a = in.A + bt * G, *rn = in.RN + bt * G, *cn = in.CN + bt * H;
  const T* cp = t == 0 ? in.c0 + b * H : in.C + (bt - 1) * H;
  const T *ghh = in.gh, *gc = in.gc, *bec = in.bec;
  const auto one = [](auto tag) { return decltype(tag)::set(T(1)); };
  SumAcc<T> m1, m2;  // sums of dL/dcn and dL/dcn * cn
  for_lanes<T>(H, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    const V g = V::load(ghr + j), og = V::load(a + 3 * H + j), n = V::load(cn + j);
    const V tc = vtanh(n * V::load(gc + j) + V::load(bec + j));
    const V d = g * og * (one(tag) - tc * tc);
    d.store(dl + j);
    accumulate(acc.dg_c, j, d * n);
    accumulate(acc.dbe_c, j, d);
    const V dn = d * V::load(gc + j);
    m1.add(dn);
    m2.add(dn * n);
    (g * tc * og * (one(tag) - og)).store(dx + 3 * H + j);
  });
  const T rc = in.rc[bt], k1 = m1.total() / T(H), k2 = m2.total() / T(H);
  SqAcc<T> sq;
  for_lanes<T>(H, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    const V n = V::load(cn + j), dn = V::load(dl + j) * V::load(gc + j);
    const V dc = V::load(gcr + j) + V::set(rc) * (dn - V::set(k1) - n * V::set(k2));
    sq.add(dc);
    const V i = V::load(a + j), f = V::load(a + H + j), g = V::load(a + 2 * H + j);
    (dc * g * i * (one(tag) - i)).store(dx + j);
    (dc * V::load(cp + j) * f * (one(tag) - f)).store(dx + H + j);
    (dc * i * (one(tag) - g * g)).store(dx + 2 * H + j);
    (dc * f).store(gcr + j);
  });
  SumAcc<T> s1, s2;  // sums of dL/drn and dL/drn * rn
  for_lanes<T>(G, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    const V d = V::load(dx + j), n = V::load(rn + j), dn = d * V::load(ghh + j);
    accumulate(acc.dg_hh, j, d * n);
    accumulate(acc.dbe_hh, j, d);
    s1.add(dn);
    s2.add(dn * n);
  });
  const T rr = in.rr[bt], q1 = s1.total() / T(G), q2 = s2.total() / T(G);
  for_lanes<T>(G, [&](auto tag, int64_t j) {
    using V = decltype(tag);
    const V dn = V::load(dx + j) * V::load(ghh + j);
    const V d = V::set(rr) * (dn - V::set(q1) - V::load(rn + j) * V::set(q2));
    d.store(dr + j);
    accumulate(acc.db_hh, j, d);
  });
  return sq.total();
}

struct Bwd {
  Tensor dX, dR, dP, ghb, gcb, scr, ghsq, gcsq;  // dP: the parameters' gradients (ParamAcc)
};

template <typename T>
void backward_loop(Bwd& w, const BwdIn<T>& in, const Tensor& w_hh, int64_t B, const std::vector<int64_t>& len) {
  const int64_t T_ = in.T_, H = in.H, G = 4 * H;
  T *dXp = w.dX.data_ptr<T>(), *dRp = w.dR.data_ptr<T>();
  const ParamAcc<T> acc(w.dP.data_ptr<T>(), H);
  std::vector<T> dl(H);
  T *ghb = w.ghb.data_ptr<T>(), *gcb = w.gcb.data_ptr<T>(), *scr = w.scr.data_ptr<T>();
  T *ghsq = ptr<T>(w.ghsq), *gcsq = ptr<T>(w.gcsq);
  const T* whh = w_hh.data_ptr<T>();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t bt = b * T_ + t;
      T *ghr = ghb + b * H, *gcr = gcb + b * H;
      const T *sr = scr + b * H, *rmr = in.rm ? in.rm + b * H : nullptr;
      const T* dor = (in.gout && t < len[b]) ? in.gout + bt * H : nullptr;
      SqAcc<T> sq;
      for_lanes<T>(H, [&](auto tag, int64_t j) {  // total dL/dh_t
        using V = decltype(tag);
        V g = V::load(ghr + j) + (rmr ? V::load(rmr + j) * V::load(sr + j) : V::load(sr + j));
        if (dor) g = g + V::load(dor + j);
        g.store(ghr + j);
        sq.add(g);
      });
      if (ghsq) ghsq[t * B + b] = sq.total();
      if (t >= len[b]) {  // padded: both gradients pass through unchanged
        std::memset(dRp + bt * G, 0, sizeof(T) * G);
        std::memset(dXp + bt * G, 0, sizeof(T) * G);
        if (gcsq) {
          SqAcc<T> c;
          for_lanes<T>(H, [&](auto tag, int64_t j) { c.add(decltype(tag)::load(gcr + j)); });
          gcsq[t * B + b] = c.total();
        }
        continue;
      }
      const T dcsq = bwd_row<T>(in, b, t, ghr, gcr, dXp + bt * G, dRp + bt * G, dl.data(), acc);
      if (gcsq) gcsq[t * B + b] = dcsq;
      std::memset(ghr, 0, sizeof(T) * H);
    }
    mm_nn<T>(B, H, G, dRp + t * G, T_ * G, whh, H, scr, H);
  }
}

// [dxn, dh0, dc0, dw_hh, db_hh, dg_hh, dbe_hh, dg_c, dbe_c, gh_sq (T, B), gc_sq (T, B)]
std::vector<Tensor> backward(const std::optional<Tensor>& gout, const std::optional<Tensor>& ghn,
                             const std::optional<Tensor>& gcn, const Tensor& h0_, const Tensor& c0_,
                             const Tensor& w_hh_, const Tensor& g_hh_, const Tensor& g_c_, const Tensor& be_c_,
                             const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask, const Tensor& A,
                             const Tensor& RN, const Tensor& rr, const Tensor& C, const Tensor& CN, const Tensor& rc,
                             const Tensor& S, bool taps) {
  ensure_blas();
  const Tensor h0 = h0_.contiguous(), c0 = c0_.contiguous(), w_hh = w_hh_.contiguous(), g_hh = g_hh_.contiguous();
  const Tensor g_c = g_c_.contiguous(), be_c = be_c_.contiguous(), go = opt(gout), rm = opt(rmask);
  const int64_t B = A.size(0), T_ = A.size(1), G = A.size(2), H = G / 4;
  const auto len = lengths_of(opt(lengths), B, T_);
  const auto o = A.options();
  const Tensor gh = opt(ghn), gc = opt(gcn);
  Bwd w{big_empty({B, T_, G}, o), big_empty({B, T_, G}, o), at::zeros({14 * H}, o),
        gh.defined() ? gh.clone() : at::zeros({B, H}, o), gc.defined() ? gc.clone() : at::zeros({B, H}, o),
        at::zeros({B, H}, o), taps ? at::zeros({T_, B}, o) : Tensor(), taps ? at::zeros({T_, B}, o) : Tensor()};
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lnlstm_backward", [&] {
    using T = scalar_t;
    const BwdIn<T> in{A.data_ptr<T>(), RN.data_ptr<T>(), rr.data_ptr<T>(), C.data_ptr<T>(), CN.data_ptr<T>(),
                      rc.data_ptr<T>(), c0.data_ptr<T>(), g_hh.data_ptr<T>(), g_c.data_ptr<T>(), be_c.data_ptr<T>(),
                      ptr<T>(go), ptr<T>(rm), T_, H};
    backward_loop<T>(w, in, w_hh, B, len);
  });
  const Tensor dh0 = rm.defined() ? w.ghb + rm * w.scr : w.ghb + w.scr;
  Tensor hp = T_ > 1 ? at::cat({h0.unsqueeze(1), S.narrow(1, 0, T_ - 1)}, 1) : h0.unsqueeze(1);
  if (rm.defined()) hp = hp * rm.unsqueeze(1);
  const Tensor dw_hh = w.dR.view({B * T_, G}).t().mm(hp.reshape({B * T_, H}));
  const Tensor none = at::empty({0}, o);
  const auto part = [&](int64_t start, int64_t n) { return w.dP.narrow(0, start * H, n * H); };
  return {w.dX, dh0, w.gcb, dw_hh, part(0, 4), part(4, 4), part(8, 4), part(12, 1), part(13, 1),
          taps ? w.ghsq : none, taps ? w.gcsq : none};
}

}  // namespace
}  // namespace lstmlab

TORCH_LIBRARY(lstmlab_ln, m) {
  m.def("forward(Tensor xn, Tensor h0, Tensor c0, Tensor w_hh, Tensor b_hh, Tensor g_hh, Tensor be_hh, Tensor g_c, "
        "Tensor be_c, float eps_hh, float eps_c, Tensor? lengths, Tensor? rmask) -> Tensor[]");
  m.def("backward(Tensor? gout, Tensor? ghn, Tensor? gcn, Tensor h0, Tensor c0, Tensor w_hh, Tensor g_hh, "
        "Tensor g_c, Tensor be_c, Tensor? lengths, Tensor? rmask, Tensor A, Tensor RN, Tensor rr, Tensor C, "
        "Tensor CN, Tensor rc, Tensor S, bool taps) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(lstmlab_ln, CPU, m) {
  m.impl("forward", &lstmlab::forward);
  m.impl("backward", &lstmlab::backward);
}
