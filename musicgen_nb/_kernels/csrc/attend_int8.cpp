// attend_int8: one decode step's self-attention over the int8 key/value cache.
//
// For every (row, head): quantize the new key and value into the cache (one scale per
// position and head), score q against every cached key (the int8 dot product first, the
// scale after it), take the softmax and the weighted sum of the int8 values.
// The PyTorch reference is musicgen_nb._kernels.reference.attend_reference.
#include "common.h"

namespace {

using namespace musicgen_nb_kernels;

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

}  // namespace

TORCH_LIBRARY_IMPL(musicgen_nb, CPU, m) { m.impl("attend_int8", &attend_int8); }
