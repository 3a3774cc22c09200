"""The static-shape step's layers: fused q/k/v, cache writes at a position tensor, a masked span.

:func:`run_static` runs every decoder layer with the shapes fixed for a whole
window: the new keys and values are written with ``index_copy_`` at the
positions held in a device tensor (no Python int), and the self-attention reads
a fixed span of the cache through an additive mask that the caller opens in
place, one position per step. Nothing in it reads a value back to the host, so
on CUDA a step can be captured in a graph and replayed
(:mod:`musicgen_nb.engine.graphs`). TorchScript compiles it for the CPU
(:func:`compiled_static`), like :func:`~musicgen_nb.engine.layers.run_layers`.

Each layer reads 6 linears from the lists (fused q/k/v, out, cross q, cross out,
fc1, fc2) and 3 layer norms (self, cross, final) as weight and bias.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

__all__ = ["run_static", "compiled_static", "LINEARS", "NORMS"]

#: Linears and layer norms (weight and bias each) per layer, in the lists' order.
LINEARS, NORMS = 6, 6


def _lin(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, matvec: bool) -> torch.Tensor:
    """``x @ w.T + b``: ``F.linear``, or with ``matvec`` as ``W @ x.T`` (``b`` a column)."""
    if matvec:
        y = torch.mm(w, x.t()) if b is None else torch.addmm(b, w, x.t())
        return y.t().contiguous()
    return F.linear(x, w, b)


def run_static(
    x: torch.Tensor,
    rows: int,
    heads: int,
    index: torch.Tensor,
    self_bias: torch.Tensor | None,
    span: int,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    norms: list[torch.Tensor],
    eps: float,
    matvec: bool,
    k_cache: list[torch.Tensor],
    v_cache: list[torch.Tensor],
    cross_k: list[torch.Tensor],
    cross_v: list[torch.Tensor],
    cross_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Every decoder layer on ``x`` ``[rows * n, dim]`` at the positions ``index`` ``[n]``.

    The new keys and values go into ``k_cache``/``v_cache`` (``[rows, heads,
    positions, head_dim]`` per layer) at ``index``; the queries attend over the
    first ``span`` positions with ``self_bias`` (``[n, span]``, 0 where allowed,
    the dtype's minimum elsewhere) added to the scores. (On CUDA, ``span`` is the
    whole cache. On the CPU a single position passes the positions so far and no
    bias: the same arithmetic as the dynamic step, which measured faster there.)

    Examples
    --------
    >>> import torch
    >>> L, rows, heads, dim, T = 1, 2, 2, 8, 4
    >>> w = [torch.randn(3 * dim, dim)] + [torch.randn(dim, dim)] * 3 + [torch.randn(dim, dim)] * 2
    >>> norms = [torch.ones(dim), torch.zeros(dim)] * 3
    >>> kc, vc = torch.zeros(rows, heads, T, dim // heads), torch.zeros(rows, heads, T, dim // heads)
    >>> bias = torch.full((1, T), torch.finfo(torch.float32).min); bias[0, 0] = 0
    >>> y = run_static(torch.randn(rows, dim), rows, heads, torch.tensor([0]), bias, T, w,
    ...                [None] * 6, norms, 1e-5, True, [kc], [vc], [], [], None)
    >>> y.shape, bool(kc[:, :, 1:].eq(0).all())
    (torch.Size([2, 8]), True)
    """
    dim = x.shape[1]
    n = x.shape[0] // rows
    hd = dim // heads
    for i in range(len(k_cache)):
        j, m = LINEARS * i, NORMS * i
        h = F.layer_norm(x, [dim], norms[m], norms[m + 1], eps)
        qkv = _lin(h, weights[j], biases[j], matvec).view(rows, n, 3, heads, hd)
        q = qkv[:, :, 0].transpose(1, 2)
        k_cache[i].index_copy_(2, index, qkv[:, :, 1].transpose(1, 2))
        v_cache[i].index_copy_(2, index, qkv[:, :, 2].transpose(1, 2))
        keys, values = k_cache[i].narrow(2, 0, span), v_cache[i].narrow(2, 0, span)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=self_bias)
        x = x + _lin(
            o.transpose(1, 2).reshape(rows * n, dim), weights[j + 1], biases[j + 1], matvec
        )
        if len(cross_k) > 0:
            h = F.layer_norm(x, [dim], norms[m + 2], norms[m + 3], eps)
            q = _lin(h, weights[j + 2], biases[j + 2], matvec)
            q = q.reshape(rows, n, heads, hd).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, cross_k[i], cross_v[i], attn_mask=cross_bias)
            o = o.transpose(1, 2).reshape(rows * n, dim)
            x = x + _lin(o, weights[j + 3], biases[j + 3], matvec)
        h = F.layer_norm(x, [dim], norms[m + 4], norms[m + 5], eps)
        h = F.gelu(_lin(h, weights[j + 4], biases[j + 4], matvec))
        x = x + _lin(h, weights[j + 5], biases[j + 5], matvec)
    return x


@functools.cache
def compiled_static():
    """:func:`run_static` compiled by TorchScript, or the Python function where that fails.

    Examples
    --------
    >>> callable(compiled_static())
    True
    """
    return script_or_python(run_static)


def script_or_python(fn):
    """``fn`` compiled by TorchScript, or ``fn`` itself where this build cannot script it.

    Examples
    --------
    >>> script_or_python(lambda x: x)(3)  # a lambda cannot be scripted: itself
    3
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(fn)
    except Exception:  # noqa: BLE001 - no TorchScript in this build: run it as Python
        return fn
