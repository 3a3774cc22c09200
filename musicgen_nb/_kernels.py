"""Small C++ kernels for the int8 decode step: attention over an int8 cache, int8 linears.

Three ops (``torch.ops.musicgen_nb.*``), each with a plain-PyTorch reference
that the tests compare it with:

* ``attend_int8``: one step's self-attention over the int8 key/value cache
  (:func:`attend_reference`), described below;
* ``linear_int8``: an int8 linear (:func:`linear_int8_reference`): each input
  row quantized to int8 with its own scale, weights in :func:`pack_int8`'s
  layout, optionally with the layer norm before it and the GELU and residual
  add after it. A batch-1 step reads every weight once, so this is bound by
  memory bandwidth; the layout makes it one sequential read per thread;
* ``attend_cross``: one step's cross-attention to the text
  (:func:`attend_cross_reference`), whose fixed cost in PyTorch's SDPA was
  larger than its work.

A decode step attends with one query per head over every cached position.
PyTorch's CPU attention reads an fp32 cache at ~15-18 GB/s there: the work per
head is small, so it is bound by latency, not by memory bandwidth. In int8
mode the engine keeps the keys and values as int8, one scale per position and
head, and runs this kernel, which for every (row, head):

1. quantizes the new key and value and writes them into the cache;
2. computes the scores ``scale_t * (q . k_t) * scaling`` (the int8 dot
   product first, the scale after it);
3. takes the softmax and the weighted sum of the int8 values.

It reads a quarter of the fp32 cache bytes, once, and replaces ~12 small ops
of a layer (slices, reshapes, cache writes, attention, transposes) by one call.

The C++ source below is compiled once with :mod:`torch.utils.cpp_extension`
into ``<cache>/kernels/<hash>/`` (``MUSICGEN_NB_CACHE``, else
``~/.cache/musicgen_nb``); later processes only load the built library. Where
no compiler (or ninja) exists, :func:`load` returns False and the engine runs
:func:`attend_reference`'s arithmetic in plain PyTorch instead, and the int8
layers use fbgemm (:mod:`musicgen_nb.quantize`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

import torch

__all__ = [
    "load", "status", "attend", "attend_reference", "quantize_kv", "pack_int8", "unpack_int8",
    "linear_int8", "linear_int8_reference", "attend_cross_reference", "GROUP", "quantize_int4",
    "pack_int4", "unpack_int4", "linear_int4_reference",
]  # fmt: skip

# The schema is defined here, in Python, so that TorchScript can compile calls to
# the op whether or not the C++ implementation is loaded (the engine only calls
# it when :func:`load` succeeded).
_SCHEMA = (
    "attend_int8(Tensor q, Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!) k_scale, "
    "Tensor(c!) v_cache, Tensor(d!) v_scale, int pos, float scaling) -> Tensor"
)
_LIB = torch.library.Library("musicgen_nb", "DEF")  # noqa: TOR901 - kept alive for the process
_LIB.define(_SCHEMA)
_LIB.define(
    "linear_int8(Tensor x, Tensor w, Tensor scale, Tensor? bias, bool gelu=False, "
    "Tensor? ln_weight=None, Tensor? ln_bias=None, float eps=1e-05, Tensor? residual=None) -> Tensor"
)
_LIB.define("attend_cross(Tensor q, Tensor k, Tensor v, Tensor? bias, float scaling) -> Tensor")

_SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

namespace {

#ifdef __AVX2__
inline __m256 load8(const int8_t* p) {
  __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// exp(x) for 8 floats: x = n ln2 + r, exp(r) by a degree-6 polynomial (~2 ulp).
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 720.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

// k floats to int8 with one scale, max |x| / 127 (as quantize_kv: x / scale, rounded half to
// even): a new key or value of the cache, or an input row of the int8 linear.
inline float quantize_row(const float* x, int64_t k, int8_t* out) {
  int64_t d = 0;
  float amax = 0.f;
#ifdef __AVX2__
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 mv = _mm256_setzero_ps();
  for (; d + 8 <= k; d += 8) mv = _mm256_max_ps(mv, _mm256_and_ps(_mm256_loadu_ps(x + d), absmask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  amax = _mm_cvtss_f32(m4);
#endif
  for (; d < k; ++d) amax = std::max(amax, std::fabs(x[d]));
  const float scale = std::max(amax / 127.f, 1e-12f);
  d = 0;
#ifdef __AVX2__
  const __m256 sv = _mm256_set1_ps(scale), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto q8 = [&](const float* p) {
    __m256 r = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(p), sv),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, r)));
  };
  for (; d + 32 <= k; d += 32) {
    __m256i ab = _mm256_packs_epi32(q8(x + d), q8(x + d + 8));
    __m256i cd = _mm256_packs_epi32(q8(x + d + 16), q8(x + d + 24));
    __m256i v = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + d), v);
  }
#endif
  for (; d < k; ++d) {
    float r = std::nearbyint(x[d] / scale);
    out[d] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, r)));
  }
  return scale;
}

// One (row, head): scores over positions 0..len-1, softmax, weighted sum of values.
void attend_head(const float* q, const int8_t* kc, const float* ks, const int8_t* vc,
                 const float* vs, int64_t len, int64_t hd, float scaling, float* w, float* out) {
  float m = -INFINITY;
#ifdef __AVX2__
  if (hd % 8 == 0 && hd <= 128) {
    __m256 qv[16];
    const int64_t c = hd / 8;
    for (int64_t j = 0; j < c; ++j) qv[j] = _mm256_loadu_ps(q + 8 * j);
    for (int64_t t = 0; t < len; ++t) {
      const int8_t* k = kc + t * hd;
      __m256 acc = _mm256_mul_ps(qv[0], load8(k));
      for (int64_t j = 1; j < c; ++j) acc = _mm256_fmadd_ps(qv[j], load8(k + 8 * j), acc);
      float s = hsum(acc) * ks[t] * scaling;
      w[t] = s;
      m = std::max(m, s);
    }
    __m256 mv = _mm256_set1_ps(m), sv = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= len; t += 8) {
      __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(w + t), mv));
      sv = _mm256_add_ps(sv, e);
      _mm256_storeu_ps(w + t, _mm256_mul_ps(e, _mm256_loadu_ps(vs + t)));
    }
    float sum = hsum(sv);
    for (; t < len; ++t) {
      float e = std::exp(w[t] - m);
      sum += e;
      w[t] = e * vs[t];
    }
    __m256 acc[16];
    for (int64_t j = 0; j < c; ++j) acc[j] = _mm256_setzero_ps();
    for (t = 0; t < len; ++t) {
      const int8_t* v = vc + t * hd;
      __m256 p = _mm256_set1_ps(w[t]);
      for (int64_t j = 0; j < c; ++j) acc[j] = _mm256_fmadd_ps(p, load8(v + 8 * j), acc[j]);
    }
    __m256 inv = _mm256_set1_ps(1.f / sum);
    for (int64_t j = 0; j < c; ++j) _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(acc[j], inv));
    return;
  }
#endif
  for (int64_t t = 0; t < len; ++t) {
    const int8_t* k = kc + t * hd;
    float s = 0.f;
    for (int64_t d = 0; d < hd; ++d) s += q[d] * static_cast<float>(k[d]);
    w[t] = s * ks[t] * scaling;
    m = std::max(m, w[t]);
  }
  float sum = 0.f;
  for (int64_t t = 0; t < len; ++t) {
    float e = std::exp(w[t] - m);
    sum += e;
    w[t] = e * vs[t];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.f;
  for (int64_t t = 0; t < len; ++t) {
    const int8_t* v = vc + t * hd;
    for (int64_t d = 0; d < hd; ++d) out[d] += w[t] * static_cast<float>(v[d]);
  }
  for (int64_t d = 0; d < hd; ++d) out[d] /= sum;
}

at::Tensor attend_int8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       at::Tensor& k_cache, at::Tensor& k_scale, at::Tensor& v_cache,
                       at::Tensor& v_scale, int64_t pos, double scaling) {
  TORCH_CHECK(q.dim() == 2 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "attend_int8: q, k, v must be [rows, dim] of one shape");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat &&
                  v.scalar_type() == at::kFloat, "attend_int8: q, k, v must be float32");
  TORCH_CHECK(q.stride(1) == 1 && k.stride(1) == 1 && v.stride(1) == 1,
              "attend_int8: q, k, v need contiguous rows");
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                  k_cache.scalar_type() == at::kChar && v_cache.scalar_type() == at::kChar &&
                  v_cache.sizes() == k_cache.sizes(),
              "attend_int8: caches must be contiguous int8 [rows, heads, positions, head_dim]");
  TORCH_CHECK(k_scale.is_contiguous() && v_scale.is_contiguous() &&
                  k_scale.scalar_type() == at::kFloat && v_scale.scalar_type() == at::kFloat &&
                  k_scale.dim() == 3 && k_scale.size(2) == k_cache.size(2) &&
                  v_scale.sizes() == k_scale.sizes(),
              "attend_int8: scales must be contiguous float32 [rows, heads, positions]");
  const int64_t rows = q.size(0), dim = q.size(1);
  const int64_t heads = k_cache.size(1), total = k_cache.size(2), hd = k_cache.size(3);
  TORCH_CHECK(k_cache.size(0) == rows && heads * hd == dim, "attend_int8: cache shape ",
              k_cache.sizes(), " does not fit q ", q.sizes());
  TORCH_CHECK(pos >= 0 && pos < total, "attend_int8: pos ", pos, " outside the cache (", total, ")");
  auto out = at::empty({rows, dim}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  int8_t* kc = k_cache.data_ptr<int8_t>();
  int8_t* vc = v_cache.data_ptr<int8_t>();
  float* ksp = k_scale.data_ptr<float>();
  float* vsp = v_scale.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t qs = q.stride(0), kst = k.stride(0), vst = v.stride(0);
  const float sc = static_cast<float>(scaling);
  // Short caches run on one thread: a parallel region costs more than the work.
  const int64_t grain = std::max<int64_t>(1, 32768 / ((pos + 1) * hd));
  at::parallel_for(0, rows * heads, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> w(pos + 1);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / heads, h = i % heads;
      const int64_t head = i * total;  // (r * heads + h) * total
      ksp[head + pos] = quantize_row(kp + r * kst + h * hd, hd, kc + (head + pos) * hd);
      vsp[head + pos] = quantize_row(vp + r * vst + h * hd, hd, vc + (head + pos) * hd);
      attend_head(qp + r * qs + h * hd, kc + head * hd, ksp + head, vc + head * hd, vsp + head,
                  pos + 1, hd, sc, w.data(), op + r * dim + h * hd);
    }
  });
  return out;
}

// ---- int8 linear: y = (xq . w) * x_scale * w_scale + bias ------------------------------
//
// x is quantized per row (symmetric, max |x| / 127, as quantize_kv), w is int8 with one
// scale per output channel. The AVX2 dot product uses the sign trick: for int8 a, b,
// maddubs(|b|, sign(a, b)) adds pairs of a * b into int16 without saturating (both sides are
// within [-127, 127], so a pair is at most 2 * 127 * 127 = 32258), then madd widens to int32.

#ifdef __AVX2__
inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
#endif

// GELU (exact, with erf) for 8 floats: erf by Abramowitz-Stegun 7.1.26 is too coarse, so
// erf(z) = 1 - erfc(z) with erfc from a rational approximation accurate to ~1e-7
// (Numerical Recipes' erfcc form, |error| < 1.2e-7), enough next to int8 rounding.
#ifdef __AVX2__
inline __m256 gelu8(__m256 x) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 z = _mm256_mul_ps(_mm256_and_ps(x, absmask), _mm256_set1_ps(0.70710678118654752f));
  __m256 t = _mm256_div_ps(_mm256_set1_ps(1.f),
                           _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, _mm256_set1_ps(1.f)));
  static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                              0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
  __m256 p = _mm256_set1_ps(c[9]);
  for (int i = 8; i >= 0; --i) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c[i]));
  // erfc(|z|) = t * exp(-z^2 + p)
  __m256 e = exp8(_mm256_sub_ps(p, _mm256_mul_ps(z, z)));
  __m256 erfc = _mm256_mul_ps(t, e);
  // gelu(x) = x * (1 + erf(x / sqrt 2)) / 2; for x < 0 erf = erfc - 1, else 1 - erfc
  __m256 one = _mm256_set1_ps(1.f);
  __m256 erf_abs = _mm256_sub_ps(one, erfc);
  __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  __m256 erf = _mm256_blendv_ps(erf_abs, _mm256_sub_ps(_mm256_setzero_ps(), erf_abs), neg);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(one, erf));
}
#endif

inline float gelu1(float x) { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }

// How far ahead (bytes) the linears prefetch their weight stream. On a 2-core AVX2 EPYC the
// int8 GEMVs of a musicgen-small step took 13% longer with 2048 than with 1024, 4096 or 8192
// (benchmarks/README.md, fifth round); the 4-bit ones, bound by arithmetic, did not change.
constexpr int64_t kPrefetch = 4096;

// The weights of linear_int8, packed for one sequential read: blocks of 4 output rows, and
// within a block, for each 32 inputs, the 4 rows' 32 bytes back to back
// ([out / 4, in / 32, 4, 32]; pack_int8 pads out to a multiple of 4 and in to 32 with zeros).
// acc[i][j] = x_i . w_j for the MB rows of x and the block's 4 weight rows (int32).
template <int MB>
inline void dot_block(const int8_t* w, const int8_t* x, int64_t ldx, int64_t kp, int32_t acc[2][4]) {
#ifdef __AVX2__
  __m256i sum[MB][4];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) sum[i][j] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t d = 0; d < kp; d += 32, w += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + 64), _MM_HINT_T0);
    for (int i = 0; i < MB; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i * ldx + d));
      const __m256i xa = _mm256_abs_epi8(xv);
      for (int j = 0; j < 4; ++j) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * j));
        const __m256i p = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(wv, xv));
        sum[i][j] = _mm256_add_epi32(sum[i][j], _mm256_madd_epi16(p, ones));
      }
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = hsum_i32(sum[i][j]);
#else
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0;
  for (int64_t d = 0; d < kp; d += 32, w += 128)
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < 4; ++j)
        for (int e = 0; e < 32; ++e)
          acc[i][j] += static_cast<int32_t>(x[i * ldx + d + e]) * static_cast<int32_t>(w[32 * j + e]);
#endif
}

// 4-bit weights (pack_int4): for each block of 4 output rows and each group of 64 inputs, the
// 4 rows' 32 bytes back to back ([out / 4, in / 64, 4, 32], uint8); byte e of a row holds input
// e in its low nibble and input e + 32 in its high nibble, each as q + 8 with q in [-7, 7]. One
// float scale per (row, group): srow[j][g]. maddubs(u, x) takes the unsigned nibbles as they
// are; subtracting maddubs(8, x) removes the offset exactly (int16: |pair| <= 2 * 15 * 127).
// Each group's int32 sum is scaled by its row's scale into float accumulators:
// acc[i][j] = sum over groups of srow[j][g] * (x_i . q_j over the group).
template <int MB>
inline void dot_block4(const uint8_t* w, const float* const srow[4], const int8_t* x, int64_t ldx,
                       int64_t groups, float acc[2][4]) {
#ifdef __AVX2__
  __m256 sum[MB][4];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) sum[i][j] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1), mask = _mm256_set1_epi8(0x0f);
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t g = 0; g < groups; ++g, w += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch + 64), _MM_HINT_T0);
    __m256i xl[MB], xh[MB], c[MB];
    for (int i = 0; i < MB; ++i) {
      const int8_t* xi = x + i * ldx + 64 * g;
      xl[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi));
      xh[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + 32));
      c[i] = _mm256_add_epi16(_mm256_maddubs_epi16(eight, xl[i]), _mm256_maddubs_epi16(eight, xh[i]));
    }
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * j));
      const __m256i lo = _mm256_and_si256(v, mask);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
      const __m256 sj = _mm256_broadcast_ss(srow[j] + g);
      for (int i = 0; i < MB; ++i) {
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl[i]), _mm256_maddubs_epi16(hi, xh[i]));
        p = _mm256_sub_epi16(p, c[i]);
        sum[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), sj, sum[i][j]);
      }
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = hsum(sum[i][j]);
#else
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int64_t g = 0; g < groups; ++g, w += 128)
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < 4; ++j) {
        int32_t dot = 0;
        for (int e = 0; e < 32; ++e) {
          const int32_t b = w[32 * j + e];
          dot += static_cast<int32_t>(x[i * ldx + 64 * g + e]) * ((b & 15) - 8);
          dot += static_cast<int32_t>(x[i * ldx + 64 * g + 32 + e]) * ((b >> 4) - 8);
        }
        acc[i][j] += srow[j][g] * static_cast<float>(dot);
      }
#endif
}

// Layer norm of one row of k floats into out (two passes in double: mean, then variance).
inline void layer_norm_row(const float* x, int64_t k, const float* g, const float* b, float eps,
                           float* out) {
  double sum = 0.0;
  for (int64_t d = 0; d < k; ++d) sum += x[d];
  const float mean = static_cast<float>(sum / k);
  double sq = 0.0;
  for (int64_t d = 0; d < k; ++d) sq += static_cast<double>(x[d] - mean) * (x[d] - mean);
  const float inv = 1.f / std::sqrt(static_cast<float>(sq / k) + eps);
  for (int64_t d = 0; d < k; ++d) out[d] = (x[d] - mean) * inv * g[d] + b[d];
}

at::Tensor linear_int8(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale,
                       const c10::optional<at::Tensor>& bias, bool gelu,
                       const c10::optional<at::Tensor>& ln_weight,
                       const c10::optional<at::Tensor>& ln_bias, double eps,
                       const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.stride(1) == 1,
              "linear_int8: x must be float32 [rows, in] with contiguous rows");
  // int8 weights (pack_int8, one scale per row) or 4-bit ones (pack_int4, a scale per 64 inputs).
  const bool int4 = w.scalar_type() == at::kByte;
  TORCH_CHECK(w.dim() == 4 && (int4 || w.scalar_type() == at::kChar) && w.is_contiguous() &&
                  w.size(2) == 4 && w.size(3) == 32,
              "linear_int8: w must be packed int8 [out / 4, in / 32, 4, 32] (pack_int8) or "
              "packed 4-bit uint8 [out / 4, in / 64, 4, 32] (pack_int4)");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.is_contiguous() &&
                  scale.dim() == (int4 ? 2 : 1) && (!int4 || scale.size(1) == w.size(1)),
              int4 ? "linear_int8: 4-bit weights need contiguous float32 scales [out, in / 64]"
                   : "linear_int8: scale must be contiguous float32 [out]");
  const int64_t group = int4 ? 64 : 32;
  const int64_t m = x.size(0), k = x.size(1), n = scale.size(0), kp = group * w.size(1);
  TORCH_CHECK(kp >= k && kp < k + group, "linear_int8: x has ", k, " features, w takes ", kp);
  TORCH_CHECK(4 * w.size(0) >= n && 4 * w.size(0) < n + 4, "linear_int8: ", n,
              " scales for ", 4 * w.size(0), " packed rows");
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == n,
                "linear_int8: bias must be contiguous float32 [out]");
  const bool norm = ln_weight.has_value() && ln_weight->defined();
  if (norm)
    TORCH_CHECK(ln_bias.has_value() && ln_bias->defined() &&
                    ln_weight->scalar_type() == at::kFloat && ln_bias->scalar_type() == at::kFloat &&
                    ln_weight->is_contiguous() && ln_bias->is_contiguous() &&
                    ln_weight->numel() == k && ln_bias->numel() == k,
                "linear_int8: ln_weight and ln_bias must be contiguous float32 [in]");
  const bool res = residual.has_value() && residual->defined();
  if (res)
    TORCH_CHECK(residual->scalar_type() == at::kFloat && residual->is_contiguous() &&
                    residual->dim() == 2 && residual->size(0) == m && residual->size(1) == n,
                "linear_int8: residual must be contiguous float32 [rows, out]");
  auto out = at::empty({m, n}, x.options());
  if (m == 0 || n == 0) return out;
  std::vector<int8_t> xq(m * kp, 0);
  std::vector<float> xs(m);
  const float* xp = x.data_ptr<float>();
  const int64_t ldx = x.stride(0);
  at::parallel_for(0, m, std::max<int64_t>(1, 65536 / std::max<int64_t>(k, 1)),
                   [&](int64_t b, int64_t e) {
    std::vector<float> h(norm ? k : 0);
    for (int64_t i = b; i < e; ++i) {
      const float* row = xp + i * ldx;
      if (norm) {
        layer_norm_row(row, k, ln_weight->data_ptr<float>(), ln_bias->data_ptr<float>(),
                       static_cast<float>(eps), h.data());
        row = h.data();
      }
      xs[i] = quantize_row(row, k, xq.data() + i * kp);
    }
  });
  const float* rp = res ? residual->data_ptr<float>() : nullptr;
  const int8_t* wp = int4 ? nullptr : w.data_ptr<int8_t>();
  const uint8_t* w4 = int4 ? w.data_ptr<uint8_t>() : nullptr;
  const int64_t groups = w.size(1);
  const float* sp = scale.data_ptr<float>();
  const float* bp = has_bias ? bias->data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  // Rows of x per tile: ~32 KB of them stay in L1/L2 while a thread's weights stream by.
  const int64_t tile = std::max<int64_t>(2, (32768 / kp) & ~int64_t(1));
  const int64_t blocks = w.size(0);
  // Small layers run on one thread: a parallel region costs more than their work.
  const int64_t grain = std::max<int64_t>(1, 65536 / (4 * kp * std::min<int64_t>(m, tile)));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    int32_t acc[2][4];
    float acc4[2][4];
    float y[4];
    for (int64_t m0 = 0; m0 < m; m0 += tile) {
      const int64_t m1 = std::min(m, m0 + tile);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = 4 * b;
        const int nb = static_cast<int>(std::min<int64_t>(4, n - n0));
        const float* srow[4];  // 4-bit: each row's group scales (padding rows: the last row's)
        for (int j = 0; j < 4; ++j) srow[j] = sp + std::min(n0 + j, n - 1) * groups;
        for (int64_t i0 = m0; i0 < m1; i0 += 2) {
          const int mb = static_cast<int>(std::min<int64_t>(2, m1 - i0));
          const int8_t* xb = xq.data() + i0 * kp;
          if (int4) {
            const uint8_t* wb = w4 + n0 * kp / 2;
            if (mb == 2) dot_block4<2>(wb, srow, xb, kp, groups, acc4);
            else dot_block4<1>(wb, srow, xb, kp, groups, acc4);
          } else {
            const int8_t* wb = wp + n0 * kp;
            if (mb == 2) dot_block<2>(wb, xb, kp, kp, acc);
            else dot_block<1>(wb, xb, kp, kp, acc);
          }
          for (int i = 0; i < mb; ++i) {
            for (int j = 0; j < nb; ++j) {
              y[j] = int4 ? acc4[i][j] * xs[i0 + i]
                          : static_cast<float>(acc[i][j]) * (xs[i0 + i] * sp[n0 + j]);
              if (bp) y[j] = y[j] + bp[n0 + j];
            }
            float* row = op + (i0 + i) * n + n0;
#ifdef __AVX2__
            if (gelu && nb == 4) {
              __m256 g = gelu8(_mm256_castps128_ps256(_mm_loadu_ps(y)));
              _mm_storeu_ps(y, _mm256_castps256_ps128(g));
            } else
#endif
            if (gelu) {
              for (int j = 0; j < nb; ++j) y[j] = gelu1(y[j]);
            }
            const float* r = rp ? rp + (i0 + i) * n + n0 : nullptr;
            for (int j = 0; j < nb; ++j) row[j] = r ? r[j] + y[j] : y[j];
          }
        }
      }
    }
  });
  return out;
}

// One query per (row, head) over a few fp32 keys and values (cross-attention to the text),
// with an additive bias per (row, key): scores, softmax, weighted sum.
at::Tensor attend_cross(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const c10::optional<at::Tensor>& bias, double scaling) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kFloat && q.stride(1) == 1,
              "attend_cross: q must be float32 [rows, dim] with contiguous rows");
  TORCH_CHECK(k.dim() == 4 && k.is_contiguous() && v.is_contiguous() && k.sizes() == v.sizes() &&
                  k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "attend_cross: k, v must be contiguous float32 [rows, heads, keys, head_dim]");
  const int64_t rows = q.size(0), dim = q.size(1);
  const int64_t heads = k.size(1), len = k.size(2), hd = k.size(3);
  TORCH_CHECK(k.size(0) == rows && heads * hd == dim, "attend_cross: k ", k.sizes(),
              " does not fit q ", q.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() &&
                    bias->numel() == rows * len,
                "attend_cross: bias must be contiguous float32 [rows, 1, 1, keys]");
  auto out = at::empty({rows, dim}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const float* bp = has_bias ? bias->data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scaling);
  std::vector<float> w(len);
  for (int64_t i = 0; i < rows * heads; ++i) {
    const int64_t r = i / heads, h = i % heads;
    const float* qh = qp + r * q.stride(0) + h * hd;
    const float* kh = kp + i * len * hd;
    const float* vh = vp + i * len * hd;
    float m = -INFINITY;
    for (int64_t t = 0; t < len; ++t) {
      float s = 0.f;
      for (int64_t d = 0; d < hd; ++d) s += qh[d] * kh[t * hd + d];
      s = s * sc + (bp ? bp[r * len + t] : 0.f);
      w[t] = s;
      m = std::max(m, s);
    }
    float sum = 0.f;
    for (int64_t t = 0; t < len; ++t) {
      w[t] = std::exp(w[t] - m);
      sum += w[t];
    }
    float* o = op + r * dim + h * hd;
    for (int64_t d = 0; d < hd; ++d) o[d] = 0.f;
    for (int64_t t = 0; t < len; ++t) {
      const float p = w[t] / sum;
      for (int64_t d = 0; d < hd; ++d) o[d] += p * vh[t * hd + d];
    }
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(musicgen_nb, CPU, m) {
  m.impl("attend_int8", &attend_int8);
  m.impl("linear_int8", &linear_int8);
  m.impl("attend_cross", &attend_cross);
}
"""


def _build_dir() -> Path:
    """Where the kernel is built: keyed by the source, torch's version and the CPU."""
    root = os.environ.get("MUSICGEN_NB_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "musicgen_nb"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        cpu = platform.processor()
    key = hashlib.sha256(
        f"{_SOURCE}|{' '.join(_CFLAGS)}|{torch.__version__}|{cpu}".encode()
    ).hexdigest()[:16]
    return base / "kernels" / key


# No fused multiply-adds beyond the ones written: the linear's epilogue then
# rounds as linear_int8_reference does.
_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]

_STATUS = {"loaded": False, "reason": "not tried yet"}


@functools.cache
def load() -> bool:
    """Build (once per machine) and load the C++ kernel; False where that cannot be done.

    Returns
    -------
    bool
        True when ``torch.ops.musicgen_nb.attend_int8`` runs the C++ kernel.
        :func:`status` says why not otherwise. ``MUSICGEN_NB_KERNELS=0`` turns
        the kernel off.

    Examples
    --------
    >>> from musicgen_nb import _kernels
    >>> isinstance(_kernels.load(), bool)
    True
    """
    if os.environ.get("MUSICGEN_NB_KERNELS", "1") == "0":
        _STATUS.update(loaded=False, reason="turned off by MUSICGEN_NB_KERNELS=0")
        return False
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _STATUS.update(loaded=False, reason=f"built only on x86-64 Linux, not {platform.machine()}")
        return False
    try:
        import fcntl
        import warnings

        from torch.utils import cpp_extension

        build = _build_dir()
        build.mkdir(parents=True, exist_ok=True)
        src = build / "attend.cpp"
        if not src.exists() or src.read_text() != _SOURCE:
            tmp = build / f"attend.cpp.{os.getpid()}"
            try:
                tmp.write_text(_SOURCE)
                tmp.replace(src)  # atomic: a parallel process never sees half a file
            finally:
                tmp.unlink(missing_ok=True)  # a full disk leaves no half-written copy
        with open(build / ".build.flock", "w") as held, warnings.catch_warnings():
            # torch's own build lock is a file (`lock`) that a process killed mid-build
            # leaves behind, and every later process then waits on it forever. This
            # lock is the kernel's: it goes with its process. Holding it, no other
            # process of ours is building, so a `lock` file found now is stale.
            fcntl.flock(held, fcntl.LOCK_EX)
            (build / "lock").unlink(missing_ok=True)
            warnings.simplefilter("ignore")
            cpp_extension.load(
                name="musicgen_nb_kernels",
                sources=[str(src)],
                extra_cflags=_CFLAGS,
                extra_ldflags=["-fopenmp"],
                build_directory=str(build),
                is_python_module=False,
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, ...: use the fallback
        _STATUS.update(loaded=False, reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        return False
    _STATUS.update(loaded=True, reason=f"built in {build}")
    return True


def status() -> dict:
    """Whether the C++ kernel is loaded, and why not (``{"loaded": bool, "reason": str}``)."""
    return dict(_STATUS)


def quantize_kv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 ``x`` over its last dimension, one scale per vector: ``x ~= q * scale[..., None]``.

    Examples
    --------
    >>> import torch
    >>> q, s = quantize_kv(torch.tensor([[0.5, -1.0, 0.25]]))
    >>> q.tolist(), round(float(s[0]) * 127, 4)
    ([[64, -127, 32]], 1.0)
    """
    scale = (x.abs().amax(-1) / 127.0).clamp_min(1e-12)
    q = torch.round(x / scale[..., None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def attend_reference(q, k, v, k_cache, k_scale, v_cache, v_scale, pos: int, scaling: float):
    """What the C++ kernel computes, in plain PyTorch (the tests compare the two).

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``[rows, heads * head_dim]`` float32: this step's query, key and value.
    k_cache, v_cache : torch.Tensor
        ``[rows, heads, positions, head_dim]`` int8; position ``pos`` is written.
    k_scale, v_scale : torch.Tensor
        ``[rows, heads, positions]`` float32 scales, written at ``pos``.
    pos : int
        This step's position.
    scaling : float
        Applied to the scores (``head_dim ** -0.5``).

    Returns
    -------
    torch.Tensor
        ``[rows, heads * head_dim]``: attention over positions ``0 .. pos``.

    Examples
    --------
    >>> import torch
    >>> kc, ks = torch.zeros(1, 2, 4, 2, dtype=torch.int8), torch.zeros(1, 2, 4)
    >>> vc, vs = kc.clone(), ks.clone()
    >>> q = torch.ones(1, 4)
    >>> attend_reference(q, q, q * 2, kc, ks, vc, vs, 0, 0.7).tolist()  # one position: its value
    [[2.0, 2.0, 2.0, 2.0]]
    """
    rows, dim = q.shape
    heads, hd = k_cache.shape[1], k_cache.shape[3]
    for x, cache, scale in ((k, k_cache, k_scale), (v, v_cache, v_scale)):
        xq, xs = quantize_kv(x.reshape(rows, heads, hd))
        cache[:, :, pos] = xq
        scale[:, :, pos] = xs
    keys = k_cache[:, :, : pos + 1].float()  # [rows, heads, n, hd]
    scores = (keys @ q.reshape(rows, heads, hd, 1))[..., 0] * k_scale[:, :, : pos + 1] * scaling
    w = scores.softmax(-1) * v_scale[:, :, : pos + 1]
    out = (w[:, :, None, :] @ v_cache[:, :, : pos + 1].float())[:, :, 0]
    return out.reshape(rows, dim)


def attend(q, k, v, k_cache, k_scale, v_cache, v_scale, pos: int, scaling: float):
    """The C++ kernel where it loads, else :func:`attend_reference` (same arguments)."""
    if load():
        return torch.ops.musicgen_nb.attend_int8(
            q, k, v, k_cache, k_scale, v_cache, v_scale, pos, scaling
        )
    return attend_reference(q, k, v, k_cache, k_scale, v_cache, v_scale, pos, scaling)


def pack_int8(w: torch.Tensor) -> torch.Tensor:
    """int8 weights ``[out, in]`` in the layout the C++ linear reads in one pass.

    Blocks of 4 output rows; within a block, for every 32 inputs, the 4 rows'
    32 bytes back to back: ``[ceil(out / 4), ceil(in / 32), 4, 32]``, padded with
    zeros. :func:`unpack_int8` undoes it.

    Examples
    --------
    >>> import torch
    >>> w = torch.arange(6, dtype=torch.int8).reshape(2, 3)
    >>> p = pack_int8(w)
    >>> p.shape, torch.equal(unpack_int8(p, 2, 3), w)
    (torch.Size([1, 1, 4, 32]), True)
    """
    out, inn = w.shape
    po, pi = -out % 4, -inn % 32
    w = torch.nn.functional.pad(w, (0, pi, 0, po))
    return w.reshape((out + po) // 4, 4, (inn + pi) // 32, 32).transpose(1, 2).contiguous()


def unpack_int8(packed: torch.Tensor, out: int, inn: int) -> torch.Tensor:
    """The ``[out, in]`` int8 weights inside :func:`pack_int8`'s layout."""
    blocks, chunks = packed.shape[:2]
    return packed.transpose(1, 2).reshape(blocks * 4, chunks * 32)[:out, :inn].contiguous()


def linear_int8_reference(
    x, w, scale, bias=None, gelu=False, ln_weight=None, ln_bias=None, eps=1e-5, residual=None
):
    """What the C++ int8 linear computes, in plain PyTorch (the tests compare the two).

    Parameters
    ----------
    x : torch.Tensor
        ``[rows, in]`` float32; each row is quantized to int8 with its own scale
        (:func:`quantize_kv`).
    w : torch.Tensor
        ``[out, in]`` int8 weights (unpacked).
    scale : torch.Tensor
        ``[out]`` float32: ``weight ~= w * scale[:, None]``.
    bias : torch.Tensor, optional
        ``[out]`` float32.
    gelu : bool
        Apply the exact (erf) GELU to the result; the kernel's ``erf`` is a
        polynomial within ~1e-7 of it.
    ln_weight, ln_bias, eps : torch.Tensor, torch.Tensor, float, optional
        Layer-normalize each row of ``x`` first (``F.layer_norm``).
    residual : torch.Tensor, optional
        ``[rows, out]`` added to the result (after the GELU).

    Returns
    -------
    torch.Tensor
        ``[rows, out]`` float32: the exact integer dot products, times both scales,
        plus the bias.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[127, 0], [0, -127]], dtype=torch.int8)
    >>> linear_int8_reference(torch.tensor([[1.0, -1.0]]), w, torch.tensor([0.5, 1.0]) / 127).tolist()
    [[0.5, 1.0]]
    """
    if ln_weight is not None:
        x = torch.nn.functional.layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps)
    xq, xs = quantize_kv(x)
    acc = (xq.double() @ w.double().t()).float()  # exact: |sum| < 2**53
    y = acc * (xs[:, None] * scale[None, :])
    y = y if bias is None else y + bias
    y = torch.nn.functional.gelu(y) if gelu else y
    return y if residual is None else residual + y


def linear_int8(x, packed, scale, bias=None, gelu=False, ln_weight=None, ln_bias=None, eps=1e-5, residual=None):  # fmt: skip
    """The C++ linear on :func:`pack_int8` (or :func:`pack_int4`) weights where it loads, else
    the reference (:func:`linear_int8_reference`, :func:`linear_int4_reference`)."""
    args = (bias, gelu, ln_weight, ln_bias, eps, residual)
    if load():
        return torch.ops.musicgen_nb.linear_int8(x, packed, scale, *args)
    if packed.dtype == torch.uint8:
        q = unpack_int4(packed, scale.shape[0], x.shape[-1])
        return linear_int4_reference(x, q, scale, *args)
    return linear_int8_reference(x, unpack_int8(packed, scale.numel(), x.shape[-1]), scale, *args)


# ---- 4-bit weights ------------------------------------------------------------------------

GROUP = 64  # inputs per 4-bit weight scale


def quantize_int4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """4-bit weights: ``w ~= q * scale`` per group of :data:`GROUP` inputs of a row.

    Symmetric, ``q`` in ``[-7, 7]`` (int8), ``scale = max |w| / 7`` over the group
    (``[out, ceil(in / 64)]`` float32; a last, shorter group is padded with zeros).

    Examples
    --------
    >>> import torch
    >>> q, s = quantize_int4(torch.tensor([[0.7, -0.35, 0.1]]))
    >>> q.tolist(), s.shape
    ([[7, -4, 1]], torch.Size([1, 1]))
    """
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"quantize_int4 takes float weights [out, in], got {_describe(w)}")
    out, inn = w.shape
    g = torch.nn.functional.pad(w.detach().float(), (0, -inn % GROUP)).reshape(out, -1, GROUP)
    scale = (g.abs().amax(-1) / 7.0).clamp_min(1e-12)
    q = torch.round(g / scale[..., None]).clamp_(-7, 7).to(torch.int8)
    return q.reshape(out, -1)[:, :inn].contiguous(), scale


def _describe(x) -> str:
    """``float32 tensor of shape (5,)`` or the type's name, for error messages."""
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """4-bit weights ``[out, in]`` (int8 in ``[-7, 7]``) in the layout the C++ linear reads.

    Blocks of 4 output rows; within a block, for every 64 inputs, the 4 rows'
    32 bytes back to back, byte ``e`` holding input ``e`` in its low nibble and
    input ``e + 32`` in its high one, each stored as ``q + 8``:
    ``[ceil(out / 4), ceil(in / 64), 4, 32]`` uint8, padded with zeros (``8``).
    :func:`unpack_int4` undoes it.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[-7, 0, 7]], dtype=torch.int8)
    >>> p = pack_int4(q)
    >>> p.shape, p.dtype, torch.equal(unpack_int4(p, 1, 3), q)
    (torch.Size([1, 1, 4, 32]), torch.uint8, True)
    """
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"pack_int4 takes int8 [out, in] weights in [-7, 7], got {_describe(q)}")
    if q.numel() and q.abs().max() > 7:
        raise ValueError(
            f"pack_int4 takes int8 [out, in] weights in [-7, 7], got values up to "
            f"{int(q.abs().max())} in magnitude"
        )
    out, inn = q.shape
    u = torch.nn.functional.pad(q, (0, -inn % GROUP, 0, -out % 4)).to(torch.uint8) + 8
    u = u.reshape(u.shape[0] // 4, 4, -1, 2, 32)  # [blocks, row, group, half, 32]
    return (u[:, :, :, 0] | (u[:, :, :, 1] << 4)).transpose(1, 2).contiguous()


def unpack_int4(packed: torch.Tensor, out: int, inn: int) -> torch.Tensor:
    """The ``[out, in]`` 4-bit weights (int8 in ``[-7, 7]``) inside :func:`pack_int4`'s layout."""
    u = packed.transpose(1, 2)  # [blocks, 4, groups, 32]
    halves = torch.stack([u & 15, u >> 4], dim=3)  # [blocks, 4, groups, 2, 32]
    q = halves.reshape(packed.shape[0] * 4, -1).to(torch.int8) - 8
    return q[:out, :inn].contiguous()


def linear_int4_reference(
    x, q, scale, bias=None, gelu=False, ln_weight=None, ln_bias=None, eps=1e-5, residual=None
):
    """What the C++ linear computes on 4-bit weights, in plain PyTorch (the tests compare).

    As :func:`linear_int8_reference`, with ``q`` ``[out, in]`` int8 in ``[-7, 7]``
    and ``scale`` ``[out, ceil(in / 64)]``: each group's exact integer dot product
    times its scale, summed over the groups (in float64 here; the kernel adds in
    float32, in another order), times the input row's scale.

    Examples
    --------
    >>> import torch
    >>> q, s = quantize_int4(torch.tensor([[0.7, 0.0], [0.0, -0.7]]))
    >>> [round(v, 6) for v in linear_int4_reference(torch.tensor([[1.0, -1.0]]), q, s)[0].tolist()]
    [0.7, 0.7]
    """
    if ln_weight is not None:
        x = torch.nn.functional.layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps)
    xq, xs = quantize_kv(x)
    pad = -x.shape[-1] % GROUP
    xg = torch.nn.functional.pad(xq.double(), (0, pad)).reshape(len(x), -1, GROUP)
    qg = torch.nn.functional.pad(q.double(), (0, pad)).reshape(len(q), -1, GROUP)
    dots = torch.einsum("igk,jgk->ijg", xg, qg)  # exact integers
    y = ((dots * scale.double()[None]).sum(-1) * xs.double()[:, None]).float()
    y = y if bias is None else y + bias
    y = torch.nn.functional.gelu(y) if gelu else y
    return y if residual is None else residual + y


def attend_cross_reference(q, k, v, bias, scaling: float):
    """What the C++ cross-attention computes (one query per row and head), in PyTorch.

    ``q`` ``[rows, dim]``; ``k``, ``v`` ``[rows, heads, keys, head_dim]``; ``bias``
    ``[rows, 1, 1, keys]`` or None. Returns ``[rows, dim]``.

    Examples
    --------
    >>> import torch
    >>> k = torch.zeros(1, 2, 3, 2)
    >>> v = torch.arange(12.0).reshape(1, 2, 3, 2)
    >>> attend_cross_reference(torch.ones(1, 4), k, v, None, 0.7).tolist()  # equal scores: the mean
    [[2.0, 3.0, 8.0, 9.0]]
    """
    rows, heads, hd = q.shape[0], k.shape[1], k.shape[3]
    scores = (k @ q.reshape(rows, heads, hd, 1))[..., 0] * scaling
    if bias is not None:
        scores = scores + bias.reshape(rows, 1, -1)
    out = scores.softmax(-1)[:, :, None, :] @ v
    return out.reshape(rows, heads * hd)
