// attend_cross: one decode step's cross-attention to the text (one query per row and head).
//
// The PyTorch reference is musicgen_nb._kernels.reference.attend_cross_reference.
#include "common.h"

namespace {

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

TORCH_LIBRARY_IMPL(musicgen_nb, CPU, m) { m.impl("attend_cross", &attend_cross); }
