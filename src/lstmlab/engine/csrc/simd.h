// Tiny SIMD layer for the fused elementwise kernels.
//
// Sc<T> is a one-lane "vector" (exact libm functions: used for double and for the tails);
// V8 is eight floats in an AVX2 register (compiled only with -mavx2 -mfma), with Cephes-style
// exp / tanh (about 1-2 ulp).  NaN propagates through every function (min/max operand order).
// The saturation counters take their thresholds as arguments (from lstmlab/cells.py).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTMLAB_HAVE_V8 1
#if defined(__AVX512F__)
#define LSTMLAB_HAVE_V16 1
#endif
#endif

namespace lstmlab {

template <typename T>
struct Sc {
  using Elem = T;
  static constexpr int W = 1;
  T v;
  static inline Sc load(const T* p) { return {*p}; }
  static inline Sc set(T x) { return {x}; }
  static inline Sc zero() { return {T(0)}; }
  inline void store(T* p) const { *p = v; }
  friend inline Sc operator+(Sc a, Sc b) { return {a.v + b.v}; }
  friend inline Sc operator-(Sc a, Sc b) { return {a.v - b.v}; }
  friend inline Sc operator*(Sc a, Sc b) { return {a.v * b.v}; }
};

template <typename T>
inline Sc<T> vsigmoid(Sc<T> a) { return {T(1) / (T(1) + std::exp(-a.v))}; }
template <typename T>
inline Sc<T> vtanh(Sc<T> a) { return {std::tanh(a.v)}; }
template <typename T>
inline Sc<T> vrelu(Sc<T> a) { return {a.v < T(0) ? T(0) : a.v}; }  // keeps NaN
template <typename T>
inline Sc<T> vpos_select(Sc<T> h, Sc<T> g) { return {h.v > T(0) ? g.v : T(0)}; }  // relu'
template <typename T>
inline int vcount_sig(Sc<T> a, T low, T high) { return (a.v < low) | (a.v > high); }
template <typename T>
inline int vcount_tanh(Sc<T> a, T limit) { return std::abs(a.v) > limit; }
template <typename T>
inline int vcount_zero(Sc<T> a) { return a.v == T(0); }
template <typename T>
inline T vsum(Sc<T> a) { return a.v; }

#ifdef LSTMLAB_HAVE_V8
struct V8 {
  using Elem = float;
  static constexpr int W = 8;
  __m256 v;
  static inline V8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline V8 set(float x) { return {_mm256_set1_ps(x)}; }
  static inline V8 zero() { return {_mm256_setzero_ps()}; }
  inline void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend inline V8 operator+(V8 a, V8 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend inline V8 operator-(V8 a, V8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend inline V8 operator*(V8 a, V8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
};

inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x);
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, z, x);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_cvttps_epi32(fx);
  e = _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(0x7f)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline V8 vsigmoid(V8 a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), a.v));
  return {_mm256_div_ps(one, _mm256_add_ps(one, e))};
}

inline V8 vtanh(V8 a) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 x = a.v;
  __m256 ax = _mm256_andnot_ps(sign, x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  __m256 cl = _mm256_min_ps(_mm256_set1_ps(10.0f), ax);
  __m256 e = exp8(_mm256_add_ps(cl, cl));
  __m256 large = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  large = _mm256_or_ps(large, _mm256_and_ps(x, sign));
  __m256 m = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return {_mm256_blendv_ps(large, small, m)};
}

inline V8 vrelu(V8 a) { return {_mm256_max_ps(_mm256_setzero_ps(), a.v)}; }
inline V8 vpos_select(V8 h, V8 g) {
  return {_mm256_and_ps(_mm256_cmp_ps(h.v, _mm256_setzero_ps(), _CMP_GT_OQ), g.v)};
}
inline int vcount_sig(V8 a, float low, float high) {
  __m256 lo = _mm256_cmp_ps(a.v, _mm256_set1_ps(low), _CMP_LT_OQ);
  __m256 hi = _mm256_cmp_ps(a.v, _mm256_set1_ps(high), _CMP_GT_OQ);
  return __builtin_popcount(_mm256_movemask_ps(_mm256_or_ps(lo, hi)));
}
inline int vcount_tanh(V8 a, float limit) {
  __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v);
  return __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(limit), _CMP_GT_OQ)));
}
inline int vcount_zero(V8 a) {
  return __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(a.v, _mm256_setzero_ps(), _CMP_EQ_OQ)));
}
inline float vsum(V8 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#endif

#ifdef LSTMLAB_HAVE_V16
// Sixteen floats in an AVX-512 register; divisions use rcp14 + one Newton step (about 1 ulp).
struct V16 {
  using Elem = float;
  static constexpr int W = 16;
  __m512 v;
  static inline V16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static inline V16 set(float x) { return {_mm512_set1_ps(x)}; }
  static inline V16 zero() { return {_mm512_setzero_ps()}; }
  inline void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend inline V16 operator+(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend inline V16 operator-(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend inline V16 operator*(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
};

inline __m512 exp16(__m512 x) {
  // upper clamp 88.0 keeps exp finite, so that reciprocals below never see inf
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-88.3762626647949f), x);
  __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
  fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 z = _mm512_mul_ps(x, x);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
  y = _mm512_fmadd_ps(y, z, x);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  __m512i e = _mm512_cvttps_epi32(fx);
  e = _mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(0x7f)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

inline __m512 recip16(__m512 d) {
  __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

inline V16 vsigmoid(V16 a) {
  __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), a.v));
  return {recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), e))};
}

inline V16 vtanh(V16 a) {
  const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
  __m512 x = a.v;
  __m512 ax = _mm512_abs_ps(x);
  __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745E-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954E-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531E-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036E-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422E-1f));
  __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  __m512 cl = _mm512_min_ps(_mm512_set1_ps(10.0f), ax);
  __m512 e = exp16(_mm512_add_ps(cl, cl));
  __m512 large = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), recip16(_mm512_add_ps(e, _mm512_set1_ps(1.0f))),
                                  _mm512_set1_ps(1.0f));
  large = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(large),
                                              _mm512_and_si512(_mm512_castps_si512(x), sign)));
  __mmask16 m = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  return {_mm512_mask_blend_ps(m, large, small)};
}

inline V16 vrelu(V16 a) { return {_mm512_max_ps(_mm512_setzero_ps(), a.v)}; }
inline V16 vpos_select(V16 h, V16 g) {
  return {_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(h.v, _mm512_setzero_ps(), _CMP_GT_OQ), g.v)};
}
inline int vcount_sig(V16 a, float low, float high) {
  __mmask16 lo = _mm512_cmp_ps_mask(a.v, _mm512_set1_ps(low), _CMP_LT_OQ);
  __mmask16 hi = _mm512_cmp_ps_mask(a.v, _mm512_set1_ps(high), _CMP_GT_OQ);
  return __builtin_popcount(unsigned(lo | hi));
}
inline int vcount_tanh(V16 a, float limit) {
  return __builtin_popcount(unsigned(_mm512_cmp_ps_mask(_mm512_abs_ps(a.v), _mm512_set1_ps(limit), _CMP_GT_OQ)));
}
inline int vcount_zero(V16 a) {
  return __builtin_popcount(unsigned(_mm512_cmp_ps_mask(a.v, _mm512_setzero_ps(), _CMP_EQ_OQ)));
}
inline float vsum(V16 a) { return _mm512_reduce_add_ps(a.v); }
#endif

// Sum of squares accumulated across the wide and the one-lane loop of a row.
template <typename T>
struct SqAcc {
  T s = T(0);
#ifdef LSTMLAB_HAVE_V8
  V8 w = V8::zero();
#ifdef LSTMLAB_HAVE_V16
  V16 w16 = V16::zero();
  inline void add(V16 a) { w16 = w16 + a * a; }
#endif
  inline void add(V8 a) { w = w + a * a; }
  inline T total() const {
    if constexpr (std::is_same<T, float>::value) {
#ifdef LSTMLAB_HAVE_V16
      return s + vsum(w) + vsum(w16);
#else
      return s + vsum(w);
#endif
    }
    return s;
  }
#else
  inline T total() const { return s; }
#endif
  inline void add(Sc<T> a) { s += a.v * a.v; }
};

// Run body<V>(j) over j in [0, n): wide vectors first (float + AVX2), then one lane at a time.
template <typename T, typename F>
inline void for_lanes(int64_t n, F&& body) {
  int64_t j = 0;
#ifdef LSTMLAB_HAVE_V8
  if constexpr (std::is_same<T, float>::value) {
#ifdef LSTMLAB_HAVE_V16
    for (; j + 16 <= n; j += 16) body(V16{}, j);
#endif
    for (; j + 8 <= n; j += 8) body(V8{}, j);
  }
#endif
  for (; j < n; ++j) body(Sc<T>{}, j);
}

}  // namespace lstmlab
