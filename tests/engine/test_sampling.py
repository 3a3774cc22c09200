"""Sampling numerics: extreme guidance and temperatures keep the distribution."""

from __future__ import annotations

import pytest
import torch


def _branches(seed=0, rows=2, vocab=64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 4, vocab, generator=g) * 3 for _ in range(3)]


@pytest.mark.parametrize("scale", [2e4, 3e5])
def test_extreme_guidance_keeps_the_distribution(scale):
    from musicgen_nb.engine.sampling import EXTREME_SCALE, Sampler, guide

    assert scale > EXTREME_SCALE
    c, u, _ = _branches()
    sampler = Sampler(guidance_scale=scale, temperature=1.0)
    guided, _, _ = guide(torch.cat([c, u]), 2, sampler)
    ref = (u.double() + scale * (c.double() - u.double())).softmax(-1)
    torch.testing.assert_close(guided.softmax(-1), ref, atol=1e-9, rtol=0)
    assert (guided.amax(-1) == 0).all() and not guided.isnan().any()


@pytest.mark.parametrize("beta", [0.3, 2.0, 5e4])
def test_extreme_double_guidance_keeps_the_distribution(beta):
    from musicgen_nb.engine.sampling import Sampler, guide

    c, m, u = _branches(1)
    scale = 3e4
    sampler = Sampler(guidance_scale=scale, cfg_coef_beta=beta)
    guided, _, _ = guide(torch.cat([c, m, u]), 2, sampler)
    c, m, u = c.double(), m.double(), u.double()
    ref = (u + scale * (m + beta * (c - m) - u)).softmax(-1)
    torch.testing.assert_close(guided.softmax(-1), ref, atol=1e-9, rtol=0)


def test_limits_are_the_argmax():
    from musicgen_nb.engine.sampling import Sampler, guide, sample, warp

    c, u, _ = _branches(2)
    for sampler in (
        Sampler(guidance_scale=1e308),
        Sampler(guidance_scale=1e308, temperature=1e-300),
    ):
        guided, _, _ = guide(torch.cat([c, u]), 2, sampler)
        tokens, probs = sample(warp(guided, sampler), sampler, torch.Generator().manual_seed(0))
        assert torch.equal(tokens, (c - u).argmax(-1)) and (probs.amax(-1) == 1).all()
    cold = Sampler(guidance_scale=1.0, temperature=1e-45, top_p=0.5)
    tokens, probs = sample(warp(c, cold), cold, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, c.argmax(-1)) and not probs.isnan().any()


def test_small_temperature_keeps_the_distribution():
    from musicgen_nb.engine.sampling import EXTREME_TEMPERATURE, Sampler, warp

    c, _, _ = _branches(3)
    t = EXTREME_TEMPERATURE / 2
    out = warp(c, Sampler(temperature=t, top_k=0))
    torch.testing.assert_close(out.softmax(-1), (c.double() / t).softmax(-1), atol=1e-9, rtol=0)


def test_half_precision_guidance_does_not_overflow():
    from musicgen_nb.engine.sampling import Sampler, guide

    c, u, _ = _branches(4)
    sampler = Sampler(guidance_scale=5000.0)  # 5000 * |c - u| passes fp16's 65504
    guided, _, _ = guide(torch.cat([c, u]).half(), 2, sampler)
    assert guided.dtype == torch.float32 and guided.isfinite().all()


def test_sampling_draws_what_torch_multinomial_draws_without_calling_it():
    """One argmax over the batch of per-item Exp(1) noise: the tokens of torch.multinomial (which
    checks its input with two reads back to the host, a GPU sync each), per item and batched."""
    import torch

    from musicgen_nb.engine import Sampler, sample

    for trial in range(40):
        b = 1 + trial % 3
        logits = torch.randn(b, 4, 2048, generator=torch.Generator().manual_seed(trial)) * 4
        logits[..., : 50 * (trial % 4)] = float("-inf")
        probs = logits.softmax(-1)
        gens = [torch.Generator().manual_seed(100 * trial + i) for i in range(b)]
        ref = torch.cat(
            [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, gens, strict=True)]
        )
        gens = [torch.Generator().manual_seed(100 * trial + i) for i in range(b)]
        assert torch.equal(sample(logits, Sampler(), gens)[0], ref.view(b, 4))
        one = torch.Generator().manual_seed(trial)
        ref = torch.multinomial(probs.view(b * 4, -1), 1, generator=one).view(b, 4)
        one = torch.Generator().manual_seed(trial)
        assert torch.equal(sample(logits, Sampler(), one)[0], ref)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
@pytest.mark.parametrize("do_sample", [True, False])
def test_a_row_with_nothing_to_draw_is_named_not_token_0(bad, do_sample):
    """torch.multinomial refused these; the sync-free draw would have given token 0."""
    from musicgen_nb.engine.sampling import Sampler, sample

    logits = torch.zeros(2, 4, 8)
    logits[1, 2] = bad  # a whole row NaN, or -inf everywhere
    with pytest.raises(RuntimeError, match="the probabilities hold NaN"):
        sample(logits, Sampler(do_sample=do_sample), torch.Generator().manual_seed(0))
    sample(torch.zeros(2, 4, 8), Sampler(do_sample=do_sample), torch.Generator())  # finite: fine
