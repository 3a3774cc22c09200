"""Sampling on the guided logits of one decode step, in transformers' order.

:func:`guide` combines the guidance branches (classifier-free guidance, and
audiocraft's double guidance for melody), :func:`warp` applies temperature,
top-k and top-p, :func:`sample` draws one token per row, and :func:`record`
keeps the per-step statistics of a trace. The order matches transformers'
``generate`` (guidance on logits, then temperature, top-k, top-p, softmax,
multinomial), so the same seed gives the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "Sampler", "StepRecord", "guide", "warp", "sample", "record", "EXTREME_SCALE",
    "EXTREME_TEMPERATURE", "NOT_FINITE",
]  # fmt: skip

#: Above this guidance scale (or cfg_coef_beta), or below this temperature, the
#: guided logits or their tempering are computed in float64 around each row's
#: maximum, so that no finite setting overflows: the limit is the argmax.
EXTREME_SCALE = 1e4
EXTREME_TEMPERATURE = 1e-4
#: What :func:`sample` says when a row of probabilities is not finite.
NOT_FINITE = (
    "sample: the probabilities hold NaN (a row of logits that is NaN, or -inf everywhere): "
    "the model's logits overflowed, or the guidance / top-k / top-p settings removed every token"
)


@dataclass
class Sampler:
    """Sampling settings, validated by the caller.

    Examples
    --------
    >>> Sampler(top_k=50).guidance_scale
    3.0
    """

    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    do_sample: bool = True
    cfg_coef_beta: float | None = None


@dataclass
class StepRecord:
    """Per-step statistics kept when tracing (tensors on the device).

    Examples
    --------
    >>> StepRecord().entropy
    []
    """

    entropy: list = field(default_factory=list)
    chosen_prob: list = field(default_factory=list)
    top_ids: list = field(default_factory=list)
    top_probs: list = field(default_factory=list)
    kl: list = field(default_factory=list)


def guide(
    logits: torch.Tensor, batch: int, sampler: Sampler
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Combine the guidance branches of ``logits`` ``[branches*B, K, V]``.

    Two branches (conditional, unconditional): ``u + s * (c - u)``, as in
    transformers. Three branches (text+melody, melody only, none; audiocraft's
    double CFG): ``u + s * (m + beta * (c - m) - u)``.

    Half-precision logits are combined in float32. Past :data:`EXTREME_SCALE`
    the result is returned shifted so that each row's maximum is 0 (softmax does
    not change), which no finite scale can overflow.

    Returns the guided logits ``[B, K, V]`` and the conditional and unconditional
    logits (None without guidance).

    Examples
    --------
    >>> import torch
    >>> cond, uncond = torch.tensor([[[2.0, 0.0]]]), torch.tensor([[[1.0, 0.0]]])
    >>> guide(torch.cat([cond, uncond]), 1, Sampler(guidance_scale=3.0))[0].tolist()
    [[[4.0, 0.0]]]
    """
    branches = logits.shape[0] // batch
    if branches == 1:
        return logits, None, None
    cond, *rest = logits.split(batch)
    uncond = rest[-1]
    beta = sampler.cfg_coef_beta
    if sampler.guidance_scale > EXTREME_SCALE or (branches == 3 and beta > EXTREME_SCALE):
        return _guide_extreme([cond, *rest], sampler), cond, uncond
    if cond.dtype in (torch.float16, torch.bfloat16):
        cond, rest = cond.float(), [r.float() for r in rest]
        uncond = rest[-1]
    if branches == 3:
        melody_only = rest[0]
        target = melody_only + beta * (cond - melody_only)
        return uncond + sampler.guidance_scale * (target - uncond), cond, uncond
    return uncond + (cond - uncond) * sampler.guidance_scale, cond, uncond


def _guide_extreme(parts: list[torch.Tensor], sampler: Sampler) -> torch.Tensor:
    """Guided logits for a huge scale, shifted so each row's maximum is exactly 0.

    The guided logits are a weighted sum of the branches; the weights are written
    as ``R * w`` with every ``|w| <= 1``, so ``y = sum(w * branch)`` is finite. Then
    ``R * (y - max(y))`` is at most 0 and overflows only to ``-inf`` (probability 0).
    """
    s, beta = sampler.guidance_scale, sampler.cfg_coef_beta
    if len(parts) == 2:  # (1 - s) u + s c
        weights, scale = [1.0, 1.0 / s - 1.0], s
    elif beta >= 1:  # (1 - s) u + s (1 - beta) m + s beta c
        weights, scale = [1.0, 1.0 / beta - 1.0, (1.0 / s - 1.0) / beta], s * beta
    else:
        weights, scale = [beta, 1.0 - beta, 1.0 / s - 1.0], s
    y = sum(w * p.double() for w, p in zip(weights, parts, strict=True))
    y = y - y.amax(-1, keepdim=True)
    return torch.where(y == 0, y, y * scale)  # scale may be inf: keep the maxima at 0


def warp(logits: torch.Tensor, sampler: Sampler) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), like transformers' warpers.

    Below :data:`EXTREME_TEMPERATURE` the logits are shifted to a row maximum of
    0 in float64 first, so that dividing by any positive temperature gives at most
    0 and never NaN; as the temperature goes to 0 this tends to the argmax.

    Examples
    --------
    >>> import torch
    >>> warp(torch.tensor([[1.0, 3.0, 2.0]]), Sampler(temperature=0.5, top_k=2)).tolist()
    [[-inf, 6.0, 4.0]]
    """
    if sampler.temperature < EXTREME_TEMPERATURE:
        logits = logits.double()
        logits = (logits - logits.amax(-1, keepdim=True)) / sampler.temperature
    elif sampler.temperature != 1.0:
        logits = logits / sampler.temperature
    vocab = logits.shape[-1]
    if sampler.top_k and sampler.top_k < vocab:
        kth = torch.topk(logits, sampler.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < sampler.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum <= (1 - sampler.top_p)
        remove[..., -1:] = False  # keep at least one token
        remove = remove.scatter(-1, order, remove)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample(
    logits: torch.Tensor, sampler: Sampler, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of ``logits`` ``[B, K, V]``; return tokens and probs.

    ``generator`` is one ``torch.Generator`` for the whole batch (as transformers'
    generate draws), or a list of B generators, one per batch item: item b then
    draws from its own stream, so its tokens never depend on its batch-mates.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[0.0, 5.0, 1.0]]])
    >>> tokens, probs = sample(logits, Sampler(do_sample=False), None)
    >>> tokens.tolist(), probs.shape
    ([[1]], torch.Size([1, 1, 3]))
    """
    probs = logits.float().softmax(-1)
    # torch.multinomial refused NaN probabilities (a row of NaN logits, or all -inf); the argmax
    # below would draw token 0. This check reads nothing back on CUDA (it asserts on the device).
    torch._assert_async(probs.isfinite().all(), NOT_FINITE)
    b, k, v = probs.shape
    if sampler.do_sample and isinstance(generator, (list, tuple)):
        noise = torch.stack([_exponential(p, g) for p, g in zip(probs, generator, strict=True)])
        tokens = (probs / noise).argmax(-1)
    elif sampler.do_sample:
        tokens = (probs / _exponential(probs.view(b * k, v), generator).view(b, k, v)).argmax(-1)
    else:
        tokens = probs.argmax(-1)
    return tokens, probs


def _exponential(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The Exp(1) noise ``torch.multinomial(probs, 1, generator=...)`` draws, from the same stream.

    For one sample, multinomial takes ``argmax(probs / q)`` with ``q ~ Exp(1)`` drawn
    like this, after two checks of ``probs`` that read values back to the host (a sync
    per call on a GPU). Drawing the noise per generator and taking one argmax for the
    whole batch gives the same tokens with no sync (tests/engine/test_sampling.py).
    """
    return torch.empty_like(probs).exponential_(1, generator=generator)


def _tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature < EXTREME_TEMPERATURE:
        x = logits.double()
        return ((x - x.amax(-1, keepdim=True)) / temperature).log_softmax(-1)
    return (logits.float() / temperature).log_softmax(-1)


def record(
    rec: StepRecord,
    probs: torch.Tensor,
    tokens: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    temperature: float,
    top: int = 5,
) -> None:
    """Append one step's trace statistics: entropy, chosen prob, top-k, KL(cond || uncond).

    Examples
    --------
    >>> import torch
    >>> rec = StepRecord()
    >>> probs = torch.tensor([[[0.5, 0.5]]])
    >>> record(rec, probs, torch.tensor([[0]]), None, None, 1.0, top=1)
    >>> round(float(rec.entropy[0]), 4), rec.chosen_prob[0].tolist(), rec.kl
    (0.6931, [[0.5]], [])
    """
    logp = probs.clamp_min(1e-30).log()
    rec.entropy.append(-(probs * logp).sum(-1))
    # Forced steps hold the special id (== vocab size): their rows are dropped later.
    vocab = probs.shape[-1]
    chosen = probs.gather(-1, tokens.clamp(max=vocab - 1)[..., None])[..., 0]
    rec.chosen_prob.append(torch.where(tokens < vocab, chosen, torch.zeros_like(chosen)))
    tp, ti = probs.topk(top, dim=-1)
    rec.top_probs.append(tp)
    rec.top_ids.append(ti)
    if cond is not None:
        lc = _tempered_log_softmax(cond, temperature)
        lu = _tempered_log_softmax(uncond, temperature)
        pc = lc.exp()
        rec.kl.append(torch.where(pc > 0, pc * (lc - lu), 0.0).sum(-1).float())
