// The device-generic route: one time loop per direction, for every cell, in per-step at:: ops
// (all batch rows at once), so that it runs on any device (CUDA); it can be forced on the CPU
// (`generic=True`) so that it is tested everywhere.  Same contract and layout as loop_cpu.h.
#pragma once

#include <vector>

#include "cells.h"
#include "layer.h"

namespace lstmlab {

// The cell's inputs at one step, all batch rows.
struct GenStepIn {
  std::vector<Tensor> pre_, x_, rec_;  // per gate; split cells get x_ and rec_, the others pre_
  Tensor bhn, h, c;
  const Tensor& pre(int q) const { return pre_[q]; }
  const Tensor& x(int q) const { return x_[q]; }
  const Tensor& rec(int q) const { return rec_[q]; }
  const Tensor& rec_bias() const { return bhn; }
  const Tensor& h_prev() const { return h; }
  const Tensor& c_prev() const { return c; }
};

struct GenGradIn {
  std::vector<Tensor> a;  // the activations of step t
  const Tensor &C, &c0, &S, &h0, &gcb;
  int64_t t;
  const Tensor& act(int q) const { return a[q]; }
  Tensor c() const { return C.select(1, t); }
  Tensor c_prev() const { return t == 0 ? c0 : C.select(1, t - 1); }
  Tensor h_prev() const { return t == 0 ? h0 : S.select(1, t - 1); }
  const Tensor& gc() const { return gcb; }
};

struct StepMask {
  Tensor b, f;  // (B, 1) bool and float (x's dtype) masks of step t
};
inline StepMask step_mask(const Shape& s, int64_t t, const at::TensorOptions& o) {
  if (!s.has_len) return {};
  Tensor m = s.mask.select(1, t).unsqueeze(1);
  return {m, m.to(o.dtype())};
}

inline Tensor join(const Tensor* v, int n) { return n == 1 ? v[0] : at::cat(std::vector<Tensor>(v, v + n), 1); }

// Saturation counts from the activations A (B, T, kActs * H) -> masked float (gates, T, B).
template <class Cell>
Tensor saturation(const Cell& cell, const Tensor& A, const Shape& s, const Thresholds& th) {
  Tensor Av = A.view({s.B, s.T, Cell::kActs, s.H});
  std::vector<Tensor> counts;
  for (int q = 0; q < Cell::kGates; ++q) counts.push_back(count_saturated(cell.kind(q), Av.select(2, q), th));
  Tensor c = at::stack(counts, -1).to(at::kFloat);
  if (s.has_len) c = c * s.mask.unsqueeze(-1).to(at::kFloat);
  return c.permute({2, 1, 0}).contiguous();
}

// [out, h_n, c_n, A, C, S, saturation counts (gates, T, B)]
template <class Cell>
std::vector<Tensor> forward_generic(const Cell& cell, const Args& a, const Thresholds& th, bool save, bool taps) {
  const Shape& s = a.s;
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  const auto o = a.x.options();
  const bool keep = save && Cell::kKeepActs;
  Tensor xw = at::addmm(a.bias, a.x.reshape({B * T_, s.I}), a.w_ih.t()).view({B, T_, G});
  Tensor out = at::empty({B, T_, H}, o);
  // the activations overwrite the consumed input projection when they fit in it
  Tensor A = (keep || taps) ? (Cell::kActs == Cell::kGates ? xw : at::empty({B, T_, Cell::kActs * H}, o)) : Tensor();
  Tensor C = (save && Cell::kCellState) ? at::empty({B, T_, H}, o) : Tensor();
  Tensor Hs = (save && s.has_len) ? at::empty({B, T_, H}, o) : Tensor();
  Tensor h = a.h0, c = a.c0, whh_t = a.w_hh.t();
  for (int64_t t = 0; t < T_; ++t) {
    GenStepIn in{{}, {}, {}, a.bhn, h, c};
    Tensor hin = a.rmask.defined() ? h * a.rmask : h;
    if constexpr (Cell::kSplit) {
      in.x_ = xw.select(1, t).chunk(Cell::kGates, 1);
      in.rec_ = hin.mm(whh_t).chunk(Cell::kGates, 1);
    } else {
      in.pre_ = at::addmm(xw.select(1, t), hin, whh_t).chunk(Cell::kGates, 1);
    }
    const StepOut<Tensor> st = cell.template forward<Tensor>(in);
    if (A.defined()) A.select(1, t).copy_(join(st.a, Cell::kActs));
    StepMask m = step_mask(s, t, o);
    if (s.has_len) {
      if constexpr (Cell::kCellState) c = at::where(m.b, st.c, c);
      h = at::where(m.b, st.h, h);
      out.select(1, t).copy_(st.h * m.f);
    } else {
      c = st.c;
      h = st.h;
      out.select(1, t).copy_(st.h);
    }
    if (C.defined()) C.select(1, t).copy_(c);
    if (Hs.defined()) Hs.select(1, t).copy_(h);
  }
  Tensor sat = taps ? saturation(cell, A, s, th) : Tensor();
  return {out, h.contiguous(), Cell::kCellState ? c.contiguous() : none(o), keep ? A : none(o), or_none(C, o),
          or_none(Hs, o), or_none(sat, o)};
}

// [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh_sq, gc_sq]; A, C, S as in CpuBackward.
template <class Cell>
std::vector<Tensor> backward_generic(const Cell& cell, const Args& a, const Tensor& gout, const Tensor& ghn,
                                     const Tensor& gcn, const Tensor& A, const Tensor& C, const Tensor& S,
                                     bool need_dx, bool taps) {
  const Shape& s = a.s;
  const int64_t B = s.B, T_ = s.T, H = s.H, G = s.G;
  const auto o = a.x.options();
  const Tensor zero = at::zeros({}, o);
  Tensor dG = at::empty({B, T_, G}, o);
  Tensor dIn = Cell::kSplit ? at::empty({B, T_, H}, o) : Tensor();
  Tensor ghb = ghn.defined() ? ghn : at::zeros({B, H}, o);
  Tensor gcb = Cell::kCellState ? (gcn.defined() ? gcn : at::zeros({B, H}, o)) : Tensor();
  Tensor scr = at::zeros({B, H}, o);
  Tensor ghsq = taps ? at::zeros({T_, B}, o) : Tensor();
  Tensor gcsq = (taps && Cell::kCellState) ? at::zeros({T_, B}, o) : Tensor();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    StepMask m = step_mask(s, t, o);
    Tensor gh = ghb + (a.rmask.defined() ? a.rmask * scr : scr);
    if (gout.defined()) gh = gh + (s.has_len ? gout.select(1, t) * m.f : gout.select(1, t));
    const GenGradIn in{A.select(1, t).chunk(Cell::kActs, 1), C, a.c0, S, a.h0, gcb, t};
    GradOut<Tensor> d = cell.template backward<Tensor>(in, gh);
    Tensor dg = join(d.dg, Cell::kGates), gct = d.dc;
    if (s.has_len) {  // padded steps: no gate gradients, the states' gradients pass through
      dg = at::where(m.b, dg, zero);
      if constexpr (Cell::kSplit) d.din = at::where(m.b, d.din, zero);
      if constexpr (Cell::kCellState) {
        gct = at::where(m.b, d.dc, gcb);
        gcb = at::where(m.b, d.gc, gcb);
      }
      ghb = Cell::kCarryH ? at::where(m.b, d.gh, gh) : at::where(m.b, zero, gh);
    } else {
      gcb = d.gc;
      ghb = Cell::kCarryH ? d.gh : at::zeros_like(gh);
    }
    dG.select(1, t).copy_(dg);
    if constexpr (Cell::kSplit) dIn.select(1, t).copy_(d.din);
    scr = dg.mm(a.w_hh);
    if (taps) ghsq.select(0, t).copy_((gh * gh).sum(1));
    if (gcsq.defined()) gcsq.select(0, t).copy_((gct * gct).sum(1));
  }
  Tensor dh0 = a.rmask.defined() ? ghb + a.rmask * scr : ghb + scr;
  return gradients<Cell>(a, dG, dIn, S, dh0, Cell::kCellState ? gcb.contiguous() : Tensor(), ghsq, gcsq, need_dx);
}

}  // namespace lstmlab
