"""The static step's weights: q/k/v and the 4 lm_heads fused, made once per set of weights.

:func:`fused_weights` concatenates each layer's q/k/v weights into one ``[3D, D]``
linear and the 4 lm_heads into one ``[4V, D]`` linear (copies), and lists the
other linears and layer norms of the model as they are. The copies are kept per
decoder module and made again when any tensor a step reads changes; the static
step's recorded graphs (:mod:`musicgen_nb.engine.graphs`) are dropped with them.

The linear form of the CPU step is chosen in :class:`~musicgen_nb.engine.static.StaticDecoder`
(``matvec``): ``x @ W.T`` (``F.linear``, row biases) or ``W @ x.T`` (column biases).
"""

from __future__ import annotations

import weakref

import torch

from .graphs import pool_of

__all__ = ["fused_weights", "has_fused", "forget"]

_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def has_fused(lm) -> bool:
    """Whether fused copies of ``lm``'s weights are kept.

    Examples
    --------
    >>> import torch
    >>> has_fused(torch.nn.Linear(1, 1))
    False
    """
    return lm in _FUSED


def forget(lm) -> None:
    """Drop the fused copies of ``lm``'s weights (they are made again on next use).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> lm = mg.load("tiny").model.decoder
    >>> _ = fused_weights(lm, list(lm.model.decoder.layers), False)
    >>> held = has_fused(lm)
    >>> forget(lm)
    >>> held, has_fused(lm)
    (True, False)
    """
    _FUSED.pop(lm, None)


def fused_weights(lm, layers, matvec: bool) -> tuple[list, list, list, torch.Tensor]:
    """``(weights, biases, norms, heads)`` of the static step, built once per set of weights.

    The q/k/v weights of each layer and the 4 lm_heads are concatenated (a copy);
    the other linears are the model's own tensors. The copy is made again (and the
    graphs dropped) when any tensor a step reads changes: linears, layer norms,
    embeddings, final norm (a new tensor, or an in-place change: its ``_version``).
    Edits through ``.data`` (``p.data.mul_(2)``) bump no version and are not seen:
    call :func:`release` after them.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> lm = mg.load("tiny").model.decoder
    >>> w, b, norms, heads = fused_weights(lm, list(lm.model.decoder.layers), True)
    >>> len(w) == 6 * len(lm.model.decoder.layers), heads.shape[0] == 4 * lm.lm_heads[0].out_features
    (True, True)
    """
    sources = []
    for layer in layers:
        a, c = layer.self_attn, getattr(layer, "encoder_attn", None)
        lins = [a.q_proj, a.k_proj, a.v_proj, a.out_proj]
        lins += [c.q_proj, c.out_proj] if c is not None else [a.out_proj] * 2
        sources.append(lins + [layer.fc1, layer.fc2])
    tensors = [p for lins in sources for m in lins for p in (m.weight, m.bias) if p is not None]
    tensors += [h.weight for h in lm.lm_heads] + [e.weight for e in lm.model.decoder.embed_tokens]
    norms_read = [lm.model.decoder.layer_norm] + [m for layer in layers for m in layer.modules()
                                                  if isinstance(m, torch.nn.LayerNorm)]  # fmt: skip
    tensors += [p for m in norms_read for p in (m.weight, m.bias) if p is not None]
    key = (matvec, tuple((id(t), t._version, t.data_ptr()) for t in tensors))
    held = _FUSED.get(lm)
    if held is not None and held[0] == key:
        return held[1]
    if pool_of(lm) is not None:
        pool_of(lm).graphs.clear()  # they read the weights they were recorded with
    weights, biases, norms = [], [], []
    for layer, (q, k, v, *rest) in zip(layers, sources, strict=True):
        weights.append(torch.cat([q.weight, k.weight, v.weight]))
        qkv_b = [
            m.bias if m.bias is not None else torch.zeros_like(m.weight[:, 0]) for m in (q, k, v)
        ]
        biases.append(None if all(m.bias is None for m in (q, k, v)) else torch.cat(qkv_b))
        weights += [m.weight for m in rest]
        biases += [m.bias for m in rest]
        cross_norm = getattr(layer, "encoder_attn_layer_norm", layer.self_attn_layer_norm)
        for ln in (layer.self_attn_layer_norm, cross_norm, layer.final_layer_norm):
            norms += [ln.weight, ln.bias]
    if matvec:  # addmm(b, W, x.T) adds a column
        biases = [b[:, None] if b is not None else None for b in biases]
    heads = torch.cat([h.weight for h in lm.lm_heads])
    _FUSED[lm] = (key, (weights, biases, norms, heads))
    return weights, biases, norms, heads
