"""The static step's fused weights: built once, made again (and the graphs dropped) when any
tensor a step reads changes in place, and forgotten on request."""

from __future__ import annotations

import torch
from _engine import make_cond

from musicgen_nb.engine import static as S
from musicgen_nb.engine.graphs import eager
from musicgen_nb.engine.static_weights import forget, fused_weights, has_fused


def test_fused_weights_follow_an_in_place_change(tiny):
    lm = tiny.model.decoder
    layers = list(lm.model.decoder.layers)
    w, *_ = fused_weights(lm, layers, True)
    assert fused_weights(lm, layers, True)[0][0] is w[0]  # built once
    q = layers[0].self_attn.q_proj.weight
    with torch.no_grad():
        q.mul_(2.0)
    try:
        fresh = fused_weights(lm, layers, True)[0][0]
        assert fresh is not w[0] and torch.equal(fresh[: q.shape[0]], q)
    finally:
        with torch.no_grad():
            q.div_(2.0)


def test_the_fused_key_sees_norms_and_embeddings_and_drops_the_graphs(tiny):
    """A graph reads layer norms, embeddings and the final norm too: a change to any makes
    the copies again and drops the recorded graphs."""
    lm = tiny.model.decoder
    layers = list(lm.model.decoder.layers)
    cond = make_cond(tiny)
    for param in (
        layers[0].self_attn_layer_norm.weight,
        lm.model.decoder.embed_tokens[1].weight,
        lm.model.decoder.layer_norm.bias,
    ):
        with torch.inference_mode():
            dec = S.StaticDecoder(tiny.model, cond, max_len=8, graphs=True, recorder=eager)
            dec.step(torch.full((4, 4, 1), tiny.special_id))
            dec.finish()
        assert dec.pool.graphs
        w = fused_weights(lm, layers, True)[0][0]
        with torch.no_grad():
            param.add_(1.0)
        try:
            assert fused_weights(lm, layers, True)[0][0] is not w and not dec.pool.graphs
        finally:
            with torch.no_grad():
                param.sub_(1.0)


def test_the_copies_are_kept_per_linear_form_and_forgotten_on_request(tiny):
    lm = tiny.model.decoder
    layers = list(lm.model.decoder.layers)
    w, b, _, heads = fused_weights(lm, layers, False)
    dim = layers[0].self_attn.q_proj.in_features
    assert w[0].shape == (3 * dim, dim) and heads.shape[0] == 4 * lm.lm_heads[0].out_features
    col = fused_weights(lm, layers, True)[1]  # the other form: biases as columns
    assert [x is None for x in col] == [x is None for x in b]
    assert all(x.dim() == 2 and x.shape[1] == 1 for x in col if x is not None)
    assert has_fused(lm)
    forget(lm)
    assert not has_fused(lm) and fused_weights(lm, layers, False)[0][0] is not w[0]
