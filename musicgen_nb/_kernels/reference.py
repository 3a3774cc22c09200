"""What the C++ kernels compute, in plain PyTorch: the tests compare the two.

They are also the fallback where the kernels do not build (:func:`musicgen_nb._kernels.attend`,
:func:`musicgen_nb._kernels.linear_int8`), and :func:`quantize_kv` is the one int8
rounding that the engine's key/value cache, the int8 weights and the kernels share.
"""

from __future__ import annotations

import torch

from .packing import GROUP

__all__ = [
    "quantize_kv", "attend_reference", "linear_int8_reference", "linear_int4_reference",
    "attend_cross_reference",
]  # fmt: skip


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
    >>> from musicgen_nb._kernels import quantize_int4
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
