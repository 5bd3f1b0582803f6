// The three cells: each supplies its forward step and its backward step, written once.
//
// A step is a template over the value type V: a SIMD lane group of one batch row (simd.h: the
// CPU route) or an at::Tensor holding all batch rows (the device-generic route).  The layer loops
// (loop_cpu.h, loop_generic.h) own everything else: buffers, padded steps, recurrent dropout,
// the per-step GEMM, threads and taps; a cell sees its inputs through an accessor `in`:
//   forward:  in.pre(q)   pre-activation of gate q (input projection + recurrent product)
//             in.x(q), in.rec(q), in.rec_bias()   its two parts, for split cells (kSplit)
//             in.h_prev(), in.c_prev()            the states entering the step
//   backward: in.act(q)   activation q saved by the forward step; in.c(), in.c_prev(),
//             in.h_prev(); in.gc() the carried dL/dc_t.  `gh` is the total dL/dh_t.
// Gate order is PyTorch's (LSTM i, f, g, o; GRU r, z, n), the row blocks of W_ih / W_hh.
#pragma once

#include <ATen/ATen.h>

#include "simd.h"

namespace lstmlab {

using at::Tensor;

// How a gate's saturation is counted; the thresholds come from the cell table (lstmlab/cells.py).
enum class Sat { Sigmoid, Tanh, Zero };

struct Thresholds {
  double low, high, tanh;  // sigmoid saturated outside (low, high); tanh when |v| > tanh; relu when 0
};

template <class V>
inline int count_saturated(Sat kind, V a, const Thresholds& th) {
  using E = typename V::Elem;
  if (kind == Sat::Sigmoid) return vcount_sig(a, E(th.low), E(th.high));
  if (kind == Sat::Tanh) return vcount_tanh(a, E(th.tanh));
  return vcount_zero(a);
}

// (..., H) -> (...) counts of saturated units.
inline Tensor count_saturated(Sat kind, const Tensor& a, const Thresholds& th) {
  if (kind == Sat::Sigmoid) return ((a < th.low) | (a > th.high)).sum(-1);
  if (kind == Sat::Tanh) return (a.abs() > th.tanh).sum(-1);
  return (a == 0).sum(-1);
}

// The elementwise functions of simd.h, for tensors.
inline Tensor vsigmoid(const Tensor& a) { return a.sigmoid(); }
inline Tensor vtanh(const Tensor& a) { return a.tanh(); }
inline Tensor vrelu(const Tensor& a) { return a.relu(); }
inline Tensor vpos_select(const Tensor& h, const Tensor& g) { return g * (h > 0).to(g.scalar_type()); }

// The constant 1 as a lane group, or as a scalar next to a tensor.
template <class V>
struct Lit {
  static V one() { return V::set(typename V::Elem(1)); }
};
template <>
struct Lit<Tensor> {
  static at::Scalar one() { return 1; }
};

template <class V>
struct StepOut {
  V a[4];  // the activations the backward step reads (and the taps count: the first kGates)
  V h, c;  // the new states
};

template <class V>
struct GradOut {
  V dg[4];  // dL/d(pre-activation) of each gate; for a split gate, of its recurrent part
  V din;    // split cells: dL/d(input part) of the split gate
  V gh;     // kCarryH: the part of dL/dh_{t-1} that does not go through W_hh
  V gc;     // kCellState: dL/dc_{t-1} (carried)
  V dc;     // kCellState: the total dL/dc_t (for the taps)
};

// The fake (meta) kernels in fused.py mirror kActs / kKeepActs / kCellState for the output shapes.
struct Lstm {
  static constexpr int kGates = 4, kActs = 4;  // row blocks of W_hh; activations kept per step
  static constexpr bool kCellState = true;     // carries c
  static constexpr bool kSplit = false;        // reads the input / recurrent parts apart
  static constexpr bool kCarryH = false;       // dL/dh_{t-1} has an elementwise part
  static constexpr bool kKeepActs = true;      // else the output stands in for the activations
  Sat kind(int q) const { return q == 2 ? Sat::Tanh : Sat::Sigmoid; }

  template <class V, class In>
  StepOut<V> forward(const In& in) const {
    StepOut<V> o;
    o.a[0] = vsigmoid(in.pre(0));
    o.a[1] = vsigmoid(in.pre(1));
    o.a[2] = vtanh(in.pre(2));
    o.a[3] = vsigmoid(in.pre(3));
    o.c = o.a[1] * in.c_prev() + o.a[0] * o.a[2];
    o.h = o.a[3] * vtanh(o.c);
    return o;
  }

  template <class V, class In>
  GradOut<V> backward(const In& in, const V& gh) const {
    const auto one = Lit<V>::one();
    const V i = in.act(0), f = in.act(1), g = in.act(2), og = in.act(3);
    const V tc = vtanh(in.c());
    GradOut<V> d;
    d.dc = in.gc() + gh * og * (one - tc * tc);
    d.dg[0] = d.dc * g * i * (one - i);
    d.dg[1] = d.dc * in.c_prev() * f * (one - f);
    d.dg[2] = d.dc * i * (one - g * g);
    d.dg[3] = gh * tc * og * (one - og);
    d.gc = d.dc * f;
    return d;
  }
};

// torch.nn.GRU: n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h; keeps r, z, n, W_hn h + b_hn.
struct Gru {
  static constexpr int kGates = 3, kActs = 4;
  static constexpr bool kCellState = false, kSplit = true, kCarryH = true, kKeepActs = true;
  Sat kind(int q) const { return q == 2 ? Sat::Tanh : Sat::Sigmoid; }

  template <class V, class In>
  StepOut<V> forward(const In& in) const {
    const auto one = Lit<V>::one();
    StepOut<V> o;
    o.a[0] = vsigmoid(in.x(0) + in.rec(0));
    o.a[1] = vsigmoid(in.x(1) + in.rec(1));
    o.a[3] = in.rec(2) + in.rec_bias();
    o.a[2] = vtanh(in.x(2) + o.a[0] * o.a[3]);
    o.h = (one - o.a[1]) * o.a[2] + o.a[1] * in.h_prev();
    return o;
  }

  template <class V, class In>
  GradOut<V> backward(const In& in, const V& gh) const {
    const auto one = Lit<V>::one();
    const V r = in.act(0), z = in.act(1), n = in.act(2), hn = in.act(3);
    const V dz = gh * (in.h_prev() - n);
    GradOut<V> d;
    d.din = gh * (one - z) * (one - n * n);
    d.dg[0] = d.din * hn * r * (one - r);
    d.dg[1] = dz * z * (one - z);
    d.dg[2] = d.din * r;
    d.gh = gh * z;
    return d;
  }
};

// Elman RNN, tanh or relu; its activation is its output, so the backward step reads the output.
struct Rnn {
  static constexpr int kGates = 1, kActs = 1;
  static constexpr bool kCellState = false, kSplit = false, kCarryH = false, kKeepActs = false;
  bool relu = false;
  Sat kind(int) const { return relu ? Sat::Zero : Sat::Tanh; }

  template <class V, class In>
  StepOut<V> forward(const In& in) const {
    StepOut<V> o;
    o.a[0] = relu ? vrelu(in.pre(0)) : vtanh(in.pre(0));
    o.h = o.a[0];
    return o;
  }

  template <class V, class In>
  GradOut<V> backward(const In& in, const V& gh) const {
    const V h = in.act(0);
    GradOut<V> d;
    d.dg[0] = relu ? vpos_select(h, gh) : gh * (Lit<V>::one() - h * h);
    return d;
  }
};

}  // namespace lstmlab
