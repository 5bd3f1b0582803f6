// The CPU route: one time loop per direction, for every cell.
//
// Per step, each thread runs the recurrent GEMM of its slots (h_{t-1} @ W_hh^T forward,
// dG_t @ W_hh backward) straight into BLAS, then a fused elementwise loop over the batch rows of
// those slots (SIMD lanes) that runs the cell's step and counts the taps.
// Layout (batch-major, matching x (B, T, I) and out (B, T, H)):
//   xw    (B*T, XS)  input projection of all steps, ONE matrix product, biases folded in; the
//                    forward step overwrites it with the activations A (XS = kActs * H when kept)
//   C     (B, T, H)  LSTM cell states (carried through padded steps)
//   S     (B, T, H)  hidden states (carried); `out` itself when no lengths were given
//   dG    (B, T, G)  pre-activation gradients of all steps -> dW_ih, dW_hh, db, dx after the loop.
#pragma once

#include <cstring>
#include <vector>

#include "cells.h"
#include "layer.h"
#include "slots.h"

namespace lstmlab {

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

inline Tensor state_buffer(const Shape& s, bool save, const at::TensorOptions& o) {
  if (!s.has_len) return Tensor();
  return save ? big_empty({s.B, s.T, s.H}, o) : at::empty({2, s.B, s.H}, o);
}

inline Tensor final_state(const Shape& s, bool save, const Tensor& Hs, const Tensor& out) {
  if (!s.has_len) return out.select(1, s.T - 1).clone();
  return save ? Hs.select(1, s.T - 1).clone() : Hs.select(0, (s.T - 1) & 1).clone();
}

// Recurrent-dropout state h_t * rmask, ping-pong over t; slot 1 holds h0 * rmask (t = -1).
inline Tensor rmask_buffer(const Tensor& h0, const Tensor& rmask) {
  if (!rmask.defined()) return Tensor();
  Tensor hr = at::empty({2, h0.size(0), h0.size(1)}, h0.options());
  hr.select(0, 1).copy_(h0 * rmask);
  return hr;
}

// Input projection of all steps, biases folded in.  A cell that keeps more activation blocks
// than it has gates (GRU: W_hn h + b_hn) gets wider rows when saving, so they become A in place.
template <typename T, class Cell>
Tensor project(const Args& a, bool save) {
  const Shape& s = a.s;
  if constexpr (Cell::kActs > Cell::kGates) {
    const int64_t XS = save ? Cell::kActs * s.H : s.G;
    Tensor xw = big_empty({s.B * s.T, XS}, a.x.options());
    xw.narrow(1, 0, s.G).copy_(a.bias.expand({s.B * s.T, s.G}));
    mm_nt<T>(s.B * s.T, s.G, s.I, a.x.data_ptr<T>(), s.I, a.w_ih.data_ptr<T>(), s.I, T(1), xw.data_ptr<T>(), XS);
    return xw;
  } else {
    Tensor xw = big_empty({s.B * s.T, s.G}, a.x.options());
    return at::addmm_out(xw, a.bias, a.x.reshape({s.B * s.T, s.I}), a.w_ih.t());
  }
}

// The cell's inputs for lanes [j, j + V::W) of one batch row of one slot.
template <class V, typename T>
struct CpuStepIn {
  const T *xr, *sr, *hp, *cp, *bh;  // xr: gate stride H; sr (recurrent product): gate stride Hk
  int64_t H, Hk, j;
  V x(int q) const { return V::load(xr + q * H + j); }
  V rec(int q) const { return V::load(sr + q * Hk + j); }
  V pre(int q) const { return x(q) + rec(q); }
  V rec_bias() const { return V::load(bh + j); }
  V h_prev() const { return V::load(hp + j); }
  V c_prev() const { return V::load(cp + j); }
};

template <class V, typename T>
struct CpuGradIn {
  const T *ar, *cr, *cp, *hp, *gcr;  // ar: gate stride H
  int64_t H, j;
  V act(int q) const { return V::load(ar + q * H + j); }
  V c() const { return V::load(cr + j); }
  V c_prev() const { return V::load(cp + j); }
  V h_prev() const { return V::load(hp + j); }
  V gc() const { return V::load(gcr + j); }
};

// Raw pointer of an optional tensor.
template <typename T>
inline T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T, class Cell>
class CpuForward {
 public:
  CpuForward(const Cell& cell, const Args& a, const Thresholds& th, bool save, bool taps)
      : cell_(cell), a_(a), th_(th), save_(save), p_(make_plan(a.s.B, a.s.H, a.s.G)) {
    const auto o = a.x.options();
    const int64_t B = a_.s.B, T_ = a_.s.T, H = a_.s.H, G = a_.s.G;
    xw_ = project<T, Cell>(a, save);
    XS_ = xw_.size(1);
    out_ = big_empty({B, T_, H}, o);
    Hs_ = state_buffer(a.s, save, o);
    if constexpr (Cell::kCellState) C_ = save ? big_empty({B, T_, H}, o) : at::empty({B, H}, o);
    hr_ = rmask_buffer(a.h0, a.rmask);
    scr_ = at::empty({B, G}, o);
    if (taps) sat_ = at::zeros({p_.S, NG, T_, B}, o.dtype(at::kFloat));
    wk_.resize(p_.S);
    rec_.resize(p_.S);  // set up by each slot's thread (init_slot): in parallel, in its own cache
    S_ = state_rows<T>(a.s, save, Hs_, out_.data_ptr<T>());
    if constexpr (Cell::kCellState) Cr_ = Rows<T>{C_.data_ptr<T>(), save ? T_ * H : H, save ? H : 0, 0};
  }

  // [out, h_n, c_n, A, C, S, saturation counts (gates, T, B)]
  std::vector<Tensor> run() {
    const int64_t B = a_.s.B, T_ = a_.s.T, H = a_.s.H, G = a_.s.G;
    const T* h0p = a_.h0.data_ptr<T>();
    const T* hrp = ptr<T>(hr_);
    T* scrp = scr_.data_ptr<T>();
    run_slots(p_, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
      for (int64_t k = s0; k < s1; ++k) init_slot(k);
      for (int64_t t = 0; t < T_; ++t) {
        bar.wait();  // h_{t-1} complete
        const T* hin = hrp ? hrp + ((t - 1) & 1) * B * H : (t == 0 ? h0p : S_.at(0, t - 1));
        const int64_t ldin = (hrp || t == 0) ? H : S_.bs;
        for (int64_t k = s0; k < s1; ++k) {
          rec_[k].run(hin, ldin, scrp + NG * p_.u[k], G);
          step(t, k);
        }
      }
    });
    const auto o = a_.x.options();
    const bool save = save_;
    Tensor c_n = Cell::kCellState ? (save ? C_.select(1, T_ - 1).clone() : C_) : Tensor();
    return {out_, final_state(a_.s, save, Hs_, out_), or_none(c_n, o),
            (save && Cell::kKeepActs) ? xw_.view({B, T_, XS_}) : none(o), save ? or_none(C_, o) : none(o),
            (a_.s.has_len && save) ? Hs_ : none(o), sat_.defined() ? reduce_slots(sat_, p_) : none(o)};
  }

 private:
  static constexpr int NG = Cell::kGates;

  // The recurrent GEMM of slot k: its rows of W_hh (all gates of its units), copied straight into
  // the own kernel's panels when the fixed rule takes it, else into one matrix for BLAS.
  void init_slot(int64_t k) {
    const int64_t B = a_.s.B, H = a_.s.H, u0 = p_.u[k], Hk = p_.u[k + 1] - u0;
    if constexpr (std::is_same<T, float>::value) {
      if (own_by_rule()) {
        const float* w = a_.w_hh.data_ptr<float>();
        auto row = [&](int64_t j) { return w + ((j / Hk) * H + u0 + j % Hk) * H; };
        rec_[k].init_packed(pack_panels_t(H, NG * Hk, row), B, NG * Hk, H);
        return;
      }
    }
    wk_[k] = slot_weights(a_.w_hh, p_, k, NG);
    rec_[k].init(wk_[k].data_ptr<T>(), H, B, NG * Hk, H, true, a_.s.G * H);
  }

  // Step t of all batch rows for the hidden units of slot k.  Everything the loops read is a
  // local: the SIMD stores may alias any member, locals stay in registers.
  void step(int64_t t, int64_t k) const {
    const int64_t B = a_.s.B, T_ = a_.s.T, H = a_.s.H, G = a_.s.G, XS = XS_, u0 = p_.u[k], Hk = p_.u[k + 1] - u0;
    const int64_t* len = a_.s.len.data();
    T* xwp = xw_.data_ptr<T>();
    T* outp = out_.data_ptr<T>();
    T* hrp = ptr<T>(hr_);
    const T* h0p = a_.h0.data_ptr<T>();
    const T* c0p = ptr<T>(a_.c0);
    const T* scrp = scr_.data_ptr<T>();
    const T* rmp = ptr<T>(a_.rmask);
    const T* bh = a_.bhn.defined() ? a_.bhn.data_ptr<T>() + u0 : nullptr;
    float* satp = ptr<float>(sat_);
    const Rows<T> S = S_, Cr = Cr_;
    const Cell cell = cell_;
    const Thresholds th = th_;
    const bool keep = save_ && Cell::kKeepActs, sep_state = a_.s.has_len;
    for (int64_t b = 0; b < B; ++b) {
      T* hc = S.at(b, t) + u0;
      const T* hp = (t == 0 ? h0p + b * H : S.at(b, t - 1)) + u0;
      T* orow = outp + (b * T_ + t) * H + u0;
      T* hrc = hrp ? hrp + (t & 1) * B * H + b * H + u0 : nullptr;
      T* xr = xwp + (b * T_ + t) * XS + u0;  // gate stride H; the activations overwrite it
      T* cc = nullptr;
      const T* cp = nullptr;
      if constexpr (Cell::kCellState) {
        cc = Cr.at(b, t) + u0;
        cp = (t == 0 ? c0p + b * H : Cr.at(b, t - 1)) + u0;
      }
      if (t >= len[b]) {  // padded: carry the states, zero output
        if (cc != cp) std::memcpy(cc, cp, sizeof(T) * Hk);
        if (hc != hp) std::memcpy(hc, hp, sizeof(T) * Hk);
        if (hrc) std::memcpy(hrc, hrp + ((t - 1) & 1) * B * H + b * H + u0, sizeof(T) * Hk);
        std::memset(orow, 0, sizeof(T) * Hk);
        if (keep)  // A keeps the projection here (never read); zero what it does not cover
          for (int q = NG; q < Cell::kActs; ++q) std::memset(xr + q * H, 0, sizeof(T) * Hk);
        continue;
      }
      const T* sr = scrp + b * G + NG * u0;  // gate stride Hk
      const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
      int n[NG] = {};
      for_lanes<T>(Hk, [&](auto tag, int64_t j) {
        using V = decltype(tag);
        const StepOut<V> o = cell.template forward<V>(CpuStepIn<V, T>{xr, sr, hp, cp, bh, H, Hk, j});
        if constexpr (Cell::kCellState) o.c.store(cc + j);
        o.h.store(orow + j);
        if (sep_state) o.h.store(hc + j);
        if (hrc) (o.h * V::load(rmr + j)).store(hrc + j);
        if (keep)
          for (int q = 0; q < Cell::kActs; ++q) o.a[q].store(xr + q * H + j);
        if (satp)
          for (int q = 0; q < NG; ++q) n[q] += count_saturated(cell.kind(q), o.a[q], th);
      });
      if (satp)
        for (int q = 0; q < NG; ++q) satp[((k * NG + q) * T_ + t) * B + b] = float(n[q]);
    }
  }

  const Cell& cell_;
  const Args& a_;
  const Thresholds th_;
  const bool save_;
  const Plan p_;
  int64_t XS_ = 0;
  Tensor xw_, out_, Hs_, C_, hr_, scr_, sat_;
  std::vector<Tensor> wk_;
  std::vector<RecGemm<T>> rec_;
  Rows<T> S_{}, Cr_{};
};

// Gradient w.r.t. the state h_t entering the elementwise step: carried part + rmask * (dG_{t+1} W_hh)
// + output gradient (valid steps only).
template <typename V, typename T>
inline V grad_h(const T* ghr, const T* sr, const T* rmr, const T* dor, int64_t j) {
  V gh = V::load(ghr + j) + (rmr ? V::load(rmr + j) * V::load(sr + j) : V::load(sr + j));
  if (dor) gh = gh + V::load(dor + j);
  return gh;
}

template <typename T, class Cell>
class CpuBackward {
 public:
  // A: the saved activations (the output for a cell that keeps none), C: cell states, S: states.
  CpuBackward(const Cell& cell, const Args& a, const Tensor& gout, const Tensor& ghn, const Tensor& gcn,
              const Tensor& A, const Tensor& C, const Tensor& S, bool taps)
      : cell_(cell), a_(a), gout_(gout), A_(A), C_(C), S_(S), p_(make_plan(a.s.B, a.s.H, a.s.G)) {
    const auto o = a.x.options();
    const int64_t B = a.s.B, T_ = a.s.T, H = a.s.H, G = a.s.G;
    dG_ = big_empty({B, T_, G}, o);
    if constexpr (Cell::kSplit) dIn_ = big_empty({B, T_, H}, o);
    ghb_ = ghn.defined() ? ghn.contiguous().clone() : at::zeros({B, H}, o);
    if constexpr (Cell::kCellState) gcb_ = gcn.defined() ? gcn.contiguous().clone() : at::zeros({B, H}, o);
    scr_ = at::zeros({B, H}, o);
    if (taps) ghsq_ = at::zeros({p_.S, T_, B}, o);
    if (taps && Cell::kCellState) gcsq_ = at::zeros({p_.S, T_, B}, o);
    rec_.resize(p_.S);  // set up by each slot's thread, as in CpuForward
  }

  // [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh_sq, gc_sq]
  std::vector<Tensor> run(bool need_dx) {
    const int64_t T_ = a_.s.T, H = a_.s.H, G = a_.s.G;
    T* dGp = dG_.data_ptr<T>();
    T* scrp = scr_.data_ptr<T>();
    const T* whh = a_.w_hh.data_ptr<T>();
    run_slots(p_, [&](int64_t s0, int64_t s1, SpinBarrier& bar) {
      for (int64_t k = s0; k < s1; ++k) rec_[k].init(whh + p_.u[k], H, a_.s.B, p_.u[k + 1] - p_.u[k], G, false, G * H);
      for (int64_t t = T_ - 1; t >= 0; --t) {
        for (int64_t k = s0; k < s1; ++k) step(t, k);
        bar.wait();  // dG_t complete
        for (int64_t k = s0; k < s1; ++k) rec_[k].run(dGp + t * G, T_ * G, scrp + p_.u[k], H);
      }
    });
    Tensor dh0 = a_.rmask.defined() ? ghb_ + a_.rmask * scr_ : ghb_ + scr_;
    Tensor gh_sq = ghsq_.defined() ? reduce_slots(ghsq_, p_) : Tensor();
    Tensor gc_sq = gcsq_.defined() ? reduce_slots(gcsq_, p_) : Tensor();
    return gradients<Cell>(a_, dG_, dIn_, S_, dh0, gcb_, gh_sq, gc_sq, need_dx);
  }

 private:
  static constexpr int NG = Cell::kGates;

  // Step t of all batch rows for the hidden units of slot k (locals only, as in CpuForward).
  void step(int64_t t, int64_t k) const {
    const int64_t B = a_.s.B, T_ = a_.s.T, H = a_.s.H, G = a_.s.G, AW = A_.size(2);
    const int64_t u0 = p_.u[k], Hk = p_.u[k + 1] - u0;
    const int64_t* len = a_.s.len.data();
    const T* doutp = ptr<T>(gout_);
    const T* Ap = A_.data_ptr<T>();
    const T* Cp = ptr<T>(C_);
    const T* Sp = S_.data_ptr<T>();
    const T* h0p = a_.h0.data_ptr<T>();
    const T* c0p = ptr<T>(a_.c0);
    const T* rmp = ptr<T>(a_.rmask);
    const T* scrp = scr_.data_ptr<T>();
    T* dGp = dG_.data_ptr<T>();
    T* dInp = ptr<T>(dIn_);
    T* ghbp = ghb_.data_ptr<T>();
    T* gcbp = ptr<T>(gcb_);
    T* ghsqp = ptr<T>(ghsq_);
    T* gcsqp = ptr<T>(gcsq_);
    const Cell cell = cell_;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t bt = b * T_ + t;
      T* ghr = ghbp + b * H + u0;
      T* gcr = gcbp ? gcbp + b * H + u0 : nullptr;
      const T* sr = scrp + b * H + u0;
      const T* rmr = rmp ? rmp + b * H + u0 : nullptr;
      T* dg = dGp + bt * G + u0;  // gate stride H
      T* din = dInp ? dInp + bt * H + u0 : nullptr;
      SqAcc<T> ah, ac;
      if (t >= len[b]) {  // padded: the state's gradient passes through unchanged
        for_lanes<T>(Hk, [&](auto tag, int64_t j) {
          using V = decltype(tag);
          V gh = grad_h<V>(ghr, sr, rmr, static_cast<const T*>(nullptr), j);
          gh.store(ghr + j);
          if (ghsqp) {
            ah.add(gh);
            if constexpr (Cell::kCellState) ac.add(V::load(gcr + j));
          }
        });
        for (int q = 0; q < NG; ++q) std::memset(dg + q * H, 0, sizeof(T) * Hk);
        if (din) std::memset(din, 0, sizeof(T) * Hk);
      } else {
        const T* dor = doutp ? doutp + bt * H + u0 : nullptr;
        const T* ar = Ap + bt * AW + u0;
        const T* hp = (t == 0 ? h0p + b * H : Sp + (bt - 1) * H) + u0;
        const T* cr = Cp ? Cp + bt * H + u0 : nullptr;
        const T* cp = Cp ? (t == 0 ? c0p + b * H : Cp + (bt - 1) * H) + u0 : nullptr;
        for_lanes<T>(Hk, [&](auto tag, int64_t j) {
          using V = decltype(tag);
          const V gh = grad_h<V>(ghr, sr, rmr, dor, j);
          const GradOut<V> d = cell.template backward<V>(CpuGradIn<V, T>{ar, cr, cp, hp, gcr, H, j}, gh);
          for (int q = 0; q < NG; ++q) d.dg[q].store(dg + q * H + j);
          if constexpr (Cell::kSplit) d.din.store(din + j);
          if constexpr (Cell::kCellState) d.gc.store(gcr + j);
          if constexpr (Cell::kCarryH) {
            d.gh.store(ghr + j);
          } else {
            V::zero().store(ghr + j);
          }
          if (ghsqp) {
            ah.add(gh);
            if constexpr (Cell::kCellState) ac.add(d.dc);
          }
        });
      }
      if (ghsqp) ghsqp[(k * T_ + t) * B + b] = ah.total();
      if (gcsqp) gcsqp[(k * T_ + t) * B + b] = ac.total();
    }
  }

  const Cell& cell_;
  const Args& a_;
  const Tensor &gout_, &A_, &C_, &S_;
  const Plan p_;
  Tensor dG_, dIn_, ghb_, gcb_, scr_, ghsq_, gcsq_;
  std::vector<RecGemm<T>> rec_;
};

}  // namespace lstmlab
