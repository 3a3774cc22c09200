// linear_int8: an int8 (or 4-bit) linear for a few rows, optionally with the layer norm
// before it and the GELU and residual add after it.
//
// The PyTorch references are musicgen_nb._kernels.reference.linear_int8_reference and
// linear_int4_reference; the weights come packed by musicgen_nb._kernels.packing.
#include "common.h"

namespace {

using namespace musicgen_nb_kernels;

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

inline bool given(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// linear_int8's argument checks: int8 weights (pack_int8, one scale per row) or 4-bit ones
// (pack_int4, a scale per 64 inputs), and the optional bias, layer norm and residual.
void check_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale,
                  const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& ln_weight,
                  const c10::optional<at::Tensor>& ln_bias,
                  const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.stride(1) == 1,
              "linear_int8: x must be float32 [rows, in] with contiguous rows");
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
  if (given(bias))
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == n,
                "linear_int8: bias must be contiguous float32 [out]");
  if (given(ln_weight))
    TORCH_CHECK(given(ln_bias) &&
                    ln_weight->scalar_type() == at::kFloat && ln_bias->scalar_type() == at::kFloat &&
                    ln_weight->is_contiguous() && ln_bias->is_contiguous() &&
                    ln_weight->numel() == k && ln_bias->numel() == k,
                "linear_int8: ln_weight and ln_bias must be contiguous float32 [in]");
  if (given(residual))
    TORCH_CHECK(residual->scalar_type() == at::kFloat && residual->is_contiguous() &&
                    residual->dim() == 2 && residual->size(0) == m && residual->size(1) == n,
                "linear_int8: residual must be contiguous float32 [rows, out]");
}

// Every row of x (layer-normalized first when ln_w is given) as int8 with its own scale:
// xq [rows, kp] (kp >= in: the padding stays 0), xs [rows].
void quantize_inputs(const at::Tensor& x, int64_t kp, const float* ln_w, const float* ln_b,
                     float eps, int8_t* xq, float* xs) {
  const int64_t m = x.size(0), k = x.size(1), ldx = x.stride(0);
  const float* xp = x.data_ptr<float>();
  at::parallel_for(0, m, std::max<int64_t>(1, 65536 / std::max<int64_t>(k, 1)),
                   [&](int64_t b, int64_t e) {
    std::vector<float> h(ln_w ? k : 0);
    for (int64_t i = b; i < e; ++i) {
      const float* row = xp + i * ldx;
      if (ln_w) {
        layer_norm_row(row, k, ln_w, ln_b, eps, h.data());
        row = h.data();
      }
      xs[i] = quantize_row(row, k, xq + i * kp);
    }
  });
}

// What the blocks of linear_int8 read and write (raw pointers; absent tensors are nullptr).
struct Linear {
  const int8_t* xq;   // [m, kp] int8 inputs
  const float* xs;    // [m] their scales
  const int8_t* w8;   // pack_int8 weights, or nullptr
  const uint8_t* w4;  // pack_int4 weights, or nullptr
  const float* scale; // [n] or [n, groups]
  const float* bias;  // [n] or nullptr
  const float* res;   // [m, n] or nullptr
  float* out;         // [m, n]
  int64_t m, n, kp, groups;
  bool gelu;
};

// One output row's nb values y (scaled, with the bias): the GELU, then + residual, into out.
inline void finish_row(float y[4], int nb, bool gelu, const float* r, float* out) {
#ifdef __AVX2__
  if (gelu && nb == 4) {
    __m256 g = gelu8(_mm256_castps128_ps256(_mm_loadu_ps(y)));
    _mm_storeu_ps(y, _mm256_castps256_ps128(g));
  } else
#endif
  if (gelu) {
    for (int j = 0; j < nb; ++j) y[j] = gelu1(y[j]);
  }
  for (int j = 0; j < nb; ++j) out[j] = r ? r[j] + y[j] : y[j];
}

// Output rows 4 * b .. 4 * b + 3 for input rows [m0, m1), two at a time.
void linear_block(const Linear& p, int64_t b, int64_t m0, int64_t m1) {
  int32_t acc[2][4];
  float acc4[2][4];
  float y[4];
  const int64_t n = p.n, n0 = 4 * b;
  const int nb = static_cast<int>(std::min<int64_t>(4, n - n0));
  const float* srow[4];  // 4-bit: each row's group scales (padding rows: the last row's)
  for (int j = 0; j < 4; ++j) srow[j] = p.scale + std::min(n0 + j, n - 1) * p.groups;
  for (int64_t i0 = m0; i0 < m1; i0 += 2) {
    const int mb = static_cast<int>(std::min<int64_t>(2, m1 - i0));
    const int8_t* xb = p.xq + i0 * p.kp;
    if (p.w4) {
      const uint8_t* wb = p.w4 + n0 * p.kp / 2;
      if (mb == 2) dot_block4<2>(wb, srow, xb, p.kp, p.groups, acc4);
      else dot_block4<1>(wb, srow, xb, p.kp, p.groups, acc4);
    } else {
      const int8_t* wb = p.w8 + n0 * p.kp;
      if (mb == 2) dot_block<2>(wb, xb, p.kp, p.kp, acc);
      else dot_block<1>(wb, xb, p.kp, p.kp, acc);
    }
    for (int i = 0; i < mb; ++i) {
      const float xs = p.xs[i0 + i];
      for (int j = 0; j < nb; ++j) {
        y[j] = p.w4 ? acc4[i][j] * xs : static_cast<float>(acc[i][j]) * (xs * p.scale[n0 + j]);
        if (p.bias) y[j] = y[j] + p.bias[n0 + j];
      }
      const int64_t at = (i0 + i) * n + n0;
      finish_row(y, nb, p.gelu, p.res ? p.res + at : nullptr, p.out + at);
    }
  }
}

at::Tensor linear_int8(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale,
                       const c10::optional<at::Tensor>& bias, bool gelu,
                       const c10::optional<at::Tensor>& ln_weight,
                       const c10::optional<at::Tensor>& ln_bias, double eps,
                       const c10::optional<at::Tensor>& residual) {
  check_linear(x, w, scale, bias, ln_weight, ln_bias, residual);
  const bool int4 = w.scalar_type() == at::kByte;
  const int64_t m = x.size(0), n = scale.size(0), kp = (int4 ? 64 : 32) * w.size(1);
  auto out = at::empty({m, n}, x.options());
  if (m == 0 || n == 0) return out;
  std::vector<int8_t> xq(m * kp, 0);
  std::vector<float> xs(m);
  const bool norm = given(ln_weight);
  quantize_inputs(x, kp, norm ? ln_weight->data_ptr<float>() : nullptr,
                  norm ? ln_bias->data_ptr<float>() : nullptr, static_cast<float>(eps),
                  xq.data(), xs.data());
  const Linear p{xq.data(), xs.data(), int4 ? nullptr : w.data_ptr<int8_t>(),
                 int4 ? w.data_ptr<uint8_t>() : nullptr, scale.data_ptr<float>(),
                 given(bias) ? bias->data_ptr<float>() : nullptr,
                 given(residual) ? residual->data_ptr<float>() : nullptr, out.data_ptr<float>(),
                 m, n, kp, w.size(1), gelu};
  // Rows of x per tile: ~32 KB of them stay in L1/L2 while a thread's weights stream by.
  const int64_t tile = std::max<int64_t>(2, (32768 / kp) & ~int64_t(1));
  // Small layers run on one thread: a parallel region costs more than their work.
  const int64_t grain = std::max<int64_t>(1, 65536 / (4 * kp * std::min<int64_t>(m, tile)));
  at::parallel_for(0, w.size(0), grain, [&](int64_t b0, int64_t b1) {
    for (int64_t m0 = 0; m0 < m; m0 += tile)
      for (int64_t b = b0; b < b1; ++b) linear_block(p, b, m0, std::min(m, m0 + tile));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(musicgen_nb, CPU, m) { m.impl("linear_int8", &linear_int8); }
