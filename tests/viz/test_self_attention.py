import numpy as np
import pytest
from _traces import synthetic_attentions

from musicgen_nb.viz.self_attention import pool_square, self_attention

ATOL = 5e-3


def test_self_attention_values_equal_capture(attn):
    fig = self_attention(attn, item=1, layer=1)
    assert len(fig.data) == 1
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z, attn.self_for(1, 1), rtol=1e-6)
    np.testing.assert_allclose(z.sum(1), 1.0, atol=ATOL)
    assert np.abs(np.triu(z, 1)).max() == 0
    assert fig.layout.yaxis.autorange == "reversed"


def test_self_attention_pools_long_sequences():
    a = synthetic_attentions(steps=1000, layers=(0,))
    fig = self_attention(a, max_positions=250)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (250, 250) and "pooled x4" in fig.layout.title.text
    np.testing.assert_allclose(z.sum(1), 1.0, atol=ATOL)
    np.testing.assert_allclose(z, pool_square(a.self_for(0, 0).astype(np.float64), 4), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(fig.data[0].x)[:3], [0, 4, 8])
    # an uneven last block still averages its own rows
    odd = pool_square(np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None], 2)
    np.testing.assert_allclose(odd.sum(1), 1.0)


def test_self_attention_melody_prefix_marks(tiny_melody):
    g = tiny_melody.generate(
        "x", duration=0.3, seed=0, attentions=True, attention_layers=0, progress=False
    )
    a = g.attentions
    fig = self_attention(a, layer=0)
    edges = sorted({s.x0 for s in fig.layout.shapes if s.x0 == s.x1})
    assert edges == [a.chroma_len - 0.5, a.prefix_len - 0.5]
    assert [n.text for n in fig.layout.annotations] == ["chroma | text", "prefix | audio"]
    np.testing.assert_allclose(np.asarray(fig.data[0].z).sum(1), 1.0, atol=ATOL)


def test_self_attention_errors(attn):
    with pytest.raises(ValueError, match="layer 7 was not captured"):
        self_attention(attn, layer=7)
    with pytest.raises(ValueError, match="max_positions"):
        self_attention(attn, max_positions=1)
    bad = synthetic_attentions(steps=10)
    bad.self_attn = bad.self_attn[..., :5]
    with pytest.raises(ValueError, match="attn.self_attn must be"):
        self_attention(bad)


def test_figures_are_deterministic(attn):
    for build in (lambda: self_attention(attn, layer=1),):
        a, b = build().to_json(), build().to_json()
        assert a == b and '"uid"' not in a
