// One layer call, whatever the route: its shape, its inputs as the loops want them, and the
// work after the backward time loop (weight and input gradients: a few big matrix products).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "hugepages.h"

namespace lstmlab {

using at::Tensor;

struct Shape {
  int64_t B, T, I, H, G;
  std::vector<int64_t> len;  // per example, T when no lengths
  bool has_len;               // lengths were given: steps may be padded, the states S are kept apart
  Tensor mask;                // (B, T) bool on x's device, generic route only
};

inline Shape make_shape(const Tensor& x, const Tensor& w_hh, int64_t gates, const std::optional<Tensor>& lengths) {
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
  // Known from the arguments alone (not from the values), so that the output shapes are too.
  s.has_len = lengths.has_value() && lengths->defined();
  if (s.has_len) {
    Tensor l = lengths->to(at::kCPU, at::kLong).contiguous();
    TORCH_CHECK(l.numel() == s.B, "fused: lengths must be (B,)");
    const int64_t* lp = l.data_ptr<int64_t>();
    for (int64_t b = 0; b < s.B; ++b) {
      TORCH_CHECK(lp[b] >= 1 && lp[b] <= s.T, "fused: lengths must lie in [1, T]");
      s.len[b] = lp[b];
    }
    s.mask = (at::arange(s.T, l.options()).unsqueeze(0) < l.unsqueeze(1)).to(x.device());
  }
  return s;
}

inline Tensor opt(const std::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}
// The placeholder for an output that this call does not produce.
inline Tensor none(const at::TensorOptions& o) { return at::empty({0}, o); }
inline Tensor or_none(const Tensor& t, const at::TensorOptions& o) { return t.defined() ? t : none(o); }

// The tensors of one layer call, contiguous; `bias` (forward only) folds b_ih + b_hh, except the
// recurrent bias of a split cell's last gate, `bhn`, which the step adds inside the gate.
struct Args {
  Tensor x, h0, c0, w_ih, w_hh, bias, bhn, rmask;
  Shape s;
};

template <class Cell>
Args make_args(const Tensor& x, const Tensor& h0, const std::optional<Tensor>& c0, const Tensor& w_ih,
               const Tensor& w_hh, const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask) {
  Args a;
  a.x = x.contiguous();
  a.h0 = h0.contiguous();
  if constexpr (Cell::kCellState) {
    TORCH_CHECK(c0.has_value() && c0->defined(), "fused: this cell needs c0");
    a.c0 = c0->contiguous();
  }
  a.w_ih = w_ih.contiguous();
  a.w_hh = w_hh.contiguous();
  a.rmask = opt(rmask);
  a.s = make_shape(a.x, a.w_hh, Cell::kGates, lengths);
  return a;
}

template <class Cell>
void fold_bias(Args& a, const Tensor& b_ih, const Tensor& b_hh) {
  if constexpr (Cell::kSplit) {
    const int64_t k = a.s.G - a.s.H;
    a.bias = b_ih.clone();
    a.bias.narrow(0, 0, k).add_(b_hh.narrow(0, 0, k));
    a.bhn = b_hh.narrow(0, k, a.s.H).contiguous();
  } else {
    a.bias = b_ih + b_hh;
  }
}

// Previous states for dW_hh: row (b, t) holds (h_{t-1} * rmask), h_{-1} = h0.
inline Tensor prev_states(const Tensor& h0, const Tensor& S, const Tensor& rmask, int64_t T) {
  Tensor hp = big_empty({h0.size(0), T, h0.size(1)}, h0.options());
  hp.select(1, 0).copy_(h0);
  if (T > 1) hp.narrow(1, 1, T - 1).copy_(S.narrow(1, 0, T - 1));
  if (rmask.defined()) hp.mul_(rmask.unsqueeze(1));
  return hp;
}

// dW_ih = dG^T @ x over all (B*T) rows.  With few input features (I < 16) MKL is far slower in
// this orientation than for (x^T @ dG)^T (EPYC, 2 threads: 8000 rows, G 128, I 8: 0.75 vs 0.17 ms;
// G 1024: 51.7 vs 6.7 ms; I 16 and up: equal or worse), so those take the transposed product.
inline Tensor input_weight_grad(const Tensor& dG, const Tensor& x) {
  if (x.is_cpu() && x.size(1) < 16) return x.t().mm(dG).t().contiguous();
  return dG.t().mm(x);
}

// What the backward op returns: [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh_sq, gc_sq].
// dG (B, T, G) holds dL/d(pre-activation) of every step (for a split gate: of its recurrent
// part; dIn (B, T, H) then holds that of its input part).
template <class Cell>
std::vector<Tensor> gradients(const Args& a, const Tensor& dG, const Tensor& dIn, const Tensor& S,
                              const Tensor& dh0, const Tensor& dc0, const Tensor& gh_sq, const Tensor& gc_sq,
                              bool need_dx) {
  const Shape& s = a.s;
  const int64_t BT = s.B * s.T, k = s.G - s.H;
  const auto o = a.x.options();
  Tensor dGf = dG.view({BT, s.G});
  Tensor xf = a.x.reshape({BT, s.I});
  Tensor dw_hh = big_empty({s.G, s.H}, o);
  at::mm_out(dw_hh, dGf.t(), prev_states(a.h0, S, a.rmask, s.T).view({BT, s.H}));
  Tensor dx, dw_ih, db_ih, db_hh;
  if constexpr (Cell::kSplit) {
    Tensor dXf = dIn.view({BT, s.H});
    Tensor dGk = dGf.narrow(1, 0, k);
    db_hh = dGf.sum(0);
    db_ih = at::cat({dGk.sum(0), dXf.sum(0)});
    dw_ih = at::cat({input_weight_grad(dGk, xf), input_weight_grad(dXf, xf)});
    if (need_dx) dx = dXf.mm(a.w_ih.narrow(0, k, s.H)).addmm_(dGk, a.w_ih.narrow(0, 0, k)).view({s.B, s.T, s.I});
  } else {
    db_ih = dGf.sum(0);
    db_hh = db_ih.clone();
    dw_ih = input_weight_grad(dGf, xf);
    if (need_dx) {
      Tensor dxf = big_empty({BT, s.I}, o);
      dx = at::mm_out(dxf, dGf, a.w_ih).view({s.B, s.T, s.I});
    }
  }
  return {or_none(dx, o), dh0, or_none(dc0, o), dw_ih, dw_hh, db_ih, db_hh, or_none(gh_sq, o), or_none(gc_sq, o)};
}

}  // namespace lstmlab
