"""A fused C++ kernel for one decode step's self-attention over an int8 key/value cache.

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
:func:`attend_reference`'s arithmetic in plain PyTorch instead.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

import torch

__all__ = ["load", "status", "attend", "attend_reference", "quantize_kv"]

# The schema is defined here, in Python, so that TorchScript can compile calls to
# the op whether or not the C++ implementation is loaded (the engine only calls
# it when :func:`load` succeeded).
_SCHEMA = (
    "attend_int8(Tensor q, Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!) k_scale, "
    "Tensor(c!) v_cache, Tensor(d!) v_scale, int pos, float scaling) -> Tensor"
)
_LIB = torch.library.Library("musicgen_nb", "DEF")  # noqa: TOR901 - kept alive for the process
_LIB.define(_SCHEMA)

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

// Quantize hd floats to int8 with one scale (max |x| / 127), as quantize_kv does.
inline float quantize(const float* x, int64_t hd, int8_t* out) {
  float amax = 0.f;
  for (int64_t d = 0; d < hd; ++d) amax = std::max(amax, std::fabs(x[d]));
  const float scale = std::max(amax / 127.f, 1e-12f);
  for (int64_t d = 0; d < hd; ++d) {
    float r = std::nearbyint(x[d] / scale);
    out[d] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, r)));
  }
  return scale;
}

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
      ksp[head + pos] = quantize(kp + r * kst + h * hd, hd, kc + (head + pos) * hd);
      vsp[head + pos] = quantize(vp + r * vst + h * hd, hd, vc + (head + pos) * hd);
      attend_head(qp + r * qs + h * hd, kc + head * hd, ksp + head, vc + head * hd, vsp + head,
                  pos + 1, hd, sc, w.data(), op + r * dim + h * hd);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(musicgen_nb, CPU, m) { m.impl("attend_int8", &attend_int8); }
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
    key = hashlib.sha256(f"{_SOURCE}|{torch.__version__}|{cpu}".encode()).hexdigest()[:16]
    return base / "kernels" / key


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
        import warnings

        from torch.utils import cpp_extension

        build = _build_dir()
        build.mkdir(parents=True, exist_ok=True)
        src = build / "attend.cpp"
        if not src.exists() or src.read_text() != _SOURCE:
            tmp = build / f"attend.cpp.{os.getpid()}"
            tmp.write_text(_SOURCE)
            tmp.replace(src)  # atomic: a parallel process never sees half a file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpp_extension.load(
                name="musicgen_nb_kernels",
                sources=[str(src)],
                extra_cflags=["-O3", "-march=native", "-fopenmp"],
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
