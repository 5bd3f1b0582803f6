// lstmlab fused engine: LSTM / GRU / SimpleRNN forward and hand-derived BPTT backward.
//
//   cells.h         the three cells: each one's forward step and backward step, written once
//   loop_cpu.h      the CPU route: one time loop per direction (raw pointers, SIMD, threads)
//   loop_generic.h  the device-generic route (CUDA): one time loop per direction in at:: ops
//   layer.h         shapes, inputs and the weight gradients after the loop, shared by both routes
//   slots.h, blas.h, simd.h   threads, BLAS and SIMD plumbing of the CPU route
// This file registers the operators (torch.ops.lstmlab_fused.*): one forward and one backward
// for every cell, dispatched here to the cell and the route.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "loop_cpu.h"
#include "loop_generic.h"

namespace lstmlab {
namespace {

// f(cell) for the cell named `name`.
template <class F>
std::vector<Tensor> with_cell(const std::string& name, bool relu, const F& f) {
  if (name == "lstm") return f(Lstm{});
  if (name == "gru") return f(Gru{});
  TORCH_CHECK(name == "rnn", "fused: cell must be 'lstm', 'gru' or 'rnn', got '", name, "'");
  Rnn rnn;
  rnn.relu = relu;
  return f(rnn);
}

// cpu(scalar_t{}) on the CPU route (float / double tensors on the CPU), else gen().
template <class Cpu, class Gen>
std::vector<Tensor> with_route(const Tensor& x, bool generic, const Cpu& cpu, const Gen& gen) {
  if (generic || !x.is_cpu()) return gen();
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fused: CPU route supports float32 and float64 only");
  ensure_blas();
  std::vector<Tensor> r;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmlab_fused", [&] { r = cpu(scalar_t{}); });
  return r;
}

std::vector<Tensor> forward(const std::string& cell, const Tensor& x, const Tensor& h0, const std::optional<Tensor>& c0,
                            const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh,
                            const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask, bool relu,
                            c10::ArrayRef<double> thresholds, bool save, bool taps, bool generic) {
  TORCH_CHECK(thresholds.size() == 3, "fused: thresholds must be (sigmoid_low, sigmoid_high, tanh_limit), got ",
              thresholds.size(), " numbers");
  const Thresholds th{thresholds[0], thresholds[1], thresholds[2]};
  return with_cell(cell, relu, [&](const auto& c) {
    using Cell = std::decay_t<decltype(c)>;
    Args a = make_args<Cell>(x, h0, c0, w_ih, w_hh, lengths, rmask);
    fold_bias<Cell>(a, b_ih, b_hh);
    return with_route(
        a.x, generic,
        [&](auto tag) { return CpuForward<decltype(tag), Cell>(c, a, th, save, taps).run(); },
        [&] { return forward_generic(c, a, th, save, taps); });
  });
}

std::vector<Tensor> backward(const std::string& cell, const std::optional<Tensor>& gout,
                             const std::optional<Tensor>& ghn, const std::optional<Tensor>& gcn, const Tensor& x,
                             const Tensor& h0, const std::optional<Tensor>& c0, const Tensor& w_ih, const Tensor& w_hh,
                             const std::optional<Tensor>& lengths, const std::optional<Tensor>& rmask, bool relu,
                             const Tensor& A, const Tensor& C, const Tensor& S, bool need_dx, bool taps, bool generic) {
  return with_cell(cell, relu, [&](const auto& c) {
    using Cell = std::decay_t<decltype(c)>;
    const Args a = make_args<Cell>(x, h0, c0, w_ih, w_hh, lengths, rmask);
    const Tensor go = opt(gout), gh = opt(ghn), gc = opt(gcn);
    return with_route(
        a.x, generic,
        [&](auto tag) { return CpuBackward<decltype(tag), Cell>(c, a, go, gh, gc, A, C, S, taps).run(need_dx); },
        [&] { return backward_generic(c, a, go, gh, gc, A, C, S, need_dx, taps); });
  });
}

// [simd lanes, blas mode, parallel threshold, packed gemm, barrier, own small gemm]; negative arguments leave a setting
// unchanged.
std::vector<int64_t> configure(int64_t par_threshold, int64_t blas_mode, int64_t pack_mode, int64_t barrier,
                               int64_t small) {
  ensure_blas();
  if (small >= 0) g_small_mode = int(std::min<int64_t>(small, 3));
  if (barrier >= 0) g_barrier_mode = barrier > 0 ? 1 : 0;
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
  return {lanes, g_blas_mode, g_par_threshold, g_pack_mode, g_barrier_mode, g_small_mode};
}

}  // namespace
}  // namespace lstmlab

// Every forward returns [out, h_n, c_n, A, C, S, saturation counts]; every backward
// [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh_sq, gc_sq]; an output the call does not
// produce is an empty tensor (fused.py registers the matching shapes for torch.compile).
TORCH_LIBRARY(lstmlab_fused, m) {
  m.def("forward(str cell, Tensor x, Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor b_ih, Tensor b_hh, "
        "Tensor? lengths, Tensor? rmask, bool relu, float[] thresholds, bool save, bool taps, bool generic) "
        "-> Tensor[]");
  m.def("backward(str cell, Tensor? gout, Tensor? ghn, Tensor? gcn, Tensor x, Tensor h0, Tensor? c0, Tensor w_ih, "
        "Tensor w_hh, Tensor? lengths, Tensor? rmask, bool relu, Tensor A, Tensor C, Tensor S, bool need_dx, "
        "bool taps, bool generic) -> Tensor[]");
  m.def("configure(int par_threshold, int blas_mode, int pack_mode, int barrier, int small) -> int[]", &lstmlab::configure);
}

TORCH_LIBRARY_IMPL(lstmlab_fused, CompositeExplicitAutograd, m) {
  m.impl("forward", &lstmlab::forward);
  m.impl("backward", &lstmlab::backward);
}
