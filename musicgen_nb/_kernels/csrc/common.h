// Helpers shared by the kernels: 8-float AVX2 building blocks and the int8 row quantizer.
//
// Each kernel is a .cpp file of its own, compiled together into one library by
// musicgen_nb/_kernels/build.py; the functions here are inline, so every file gets its copy.
#pragma once

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

namespace musicgen_nb_kernels {

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

}  // namespace musicgen_nb_kernels
