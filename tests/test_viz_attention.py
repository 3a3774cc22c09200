import html

import numpy as np
import plotly.graph_objects as go
import pytest

from musicgen_nb.attention import Attentions
from musicgen_nb.viz.cross_attention import cross_attention, cross_attention_by_layer
from musicgen_nb.viz.self_attention import pool_square, self_attention

ATOL = 5e-3


@pytest.fixture(scope="module")
def attn(tiny):
    g = tiny.generate(["jazz", None], duration=1, seed=0, attentions=True, progress=False)
    return g.attentions


def synthetic(steps: int, tokens: int = 6, layers=(0, 3, 5), prefix: int = 0) -> Attentions:
    """Random row-stochastic attentions of the right shapes (no model)."""
    rng = np.random.default_rng(0)
    L, n = len(layers), prefix + steps
    cross = rng.dirichlet(np.ones(tokens), (L, 1, steps)).astype(np.float16)
    raw = np.tril(rng.uniform(0.1, 1, (L, 1, n, n)))
    self_attn = (raw / raw.sum(-1, keepdims=True)).astype(np.float16)
    return Attentions(
        cross=None if prefix else cross, self_attn=self_attn, layers=list(layers), heads=None,
        text_tokens=[[f"t{i}" for i in range(tokens)]], frame_rate=50, prefix_len=prefix,
        chroma_len=prefix - tokens if prefix else 0,
    )  # fmt: skip


def test_cross_attention_layer_selector(attn):
    fig = cross_attention(attn)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == len(attn.layers) == 2
    assert [t.visible for t in fig.data] == [True, False]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["layer 0", "layer 1"]
    assert [b.args[0]["visible"] for b in buttons] == [[True, False], [False, True]]
    second = cross_attention(attn, layer=1)
    assert [t.visible for t in second.data] == [False, True]
    assert second.layout.updatemenus[0].active == 1


def test_cross_attention_values_equal_capture(attn):
    fig = cross_attention(attn)
    tokens = attn.text_tokens[0]
    assert list(fig.layout.yaxis.ticktext) == [html.escape(t, quote=False) for t in tokens]
    assert list(fig.layout.yaxis.tickvals) == list(range(len(tokens)))
    for t, layer in zip(fig.data, attn.layers, strict=True):
        z = np.asarray(t.z)
        assert z.shape == (len(tokens), attn.steps)
        np.testing.assert_allclose(z, attn.cross_for(layer, 0).T, rtol=1e-6)
        np.testing.assert_allclose(z.sum(0), 1.0, atol=ATOL)  # each step sums to 1 over tokens
        np.testing.assert_allclose(np.asarray(t.x), attn.times)


def test_cross_attention_caps_cells():
    a = synthetic(steps=1000, tokens=6)
    fig = cross_attention(a, max_cells=3 * 6 * 100)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (6, 100)  # 1000 steps averaged in blocks of 10
    np.testing.assert_allclose(z.sum(0), 1.0, atol=ATOL)
    np.testing.assert_allclose(z[:, 0], a.cross_for(0, 0)[:10].mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fig.data[0].x)[:2], [0.09, 0.29])
    assert sum(np.asarray(t.z).size for t in fig.data) <= 3 * 6 * 100


def test_cross_attention_errors(attn):
    with pytest.raises(ValueError, match="unconditional"):
        cross_attention(attn, item=1)
    with pytest.raises(ValueError, match="item must be in \\[0, 2\\)"):
        cross_attention(attn, item=2)
    with pytest.raises(ValueError, match="layer 4 was not captured"):
        cross_attention(attn, layer=4)
    with pytest.raises(ValueError, match="use self_attention"):
        cross_attention(synthetic(steps=10, prefix=20))
    with pytest.raises(TypeError, match="attentions=True"):
        cross_attention(None)
    with pytest.raises(TypeError, match="Attentions"):
        cross_attention(np.zeros((1, 1, 3, 3)))
    bad = synthetic(steps=10)
    bad.cross = bad.cross[:, :, :, :, None]
    with pytest.raises(
        ValueError, match="attn.cross must be \\[layers=3, batch=1, steps, text_len\\]"
    ):
        cross_attention(bad)


def test_self_attention_values_equal_capture(attn):
    fig = self_attention(attn, item=1, layer=1)
    assert len(fig.data) == 1
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z, attn.self_for(1, 1), rtol=1e-6)
    np.testing.assert_allclose(z.sum(1), 1.0, atol=ATOL)
    assert np.abs(np.triu(z, 1)).max() == 0
    assert fig.layout.yaxis.autorange == "reversed"


def test_self_attention_pools_long_sequences():
    a = synthetic(steps=1000, layers=(0,))
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
    bad = synthetic(steps=10)
    bad.self_attn = bad.self_attn[..., :5]
    with pytest.raises(ValueError, match="attn.self_attn must be"):
        self_attention(bad)


def test_figures_are_deterministic(attn):
    for build in (lambda: cross_attention(attn), lambda: self_attention(attn, layer=1)):
        a, b = build().to_json(), build().to_json()
        assert a == b and '"uid"' not in a


LABEL = "a<b> & </s>"


def test_cross_attention_escapes_token_labels():
    """Tokens such as '</s>' are text, not HTML: plotly gets them escaped."""
    a = synthetic(10, tokens=3)
    a.text_tokens = [["▁jazz", LABEL, "</s>"]]
    fig = cross_attention(a)
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks == ["▁jazz", "a&lt;b&gt; &amp; &lt;/s&gt;", "&lt;/s&gt;"]
    assert "</s>" not in fig.to_json() and "<b>" not in fig.to_json()
    by_layer = cross_attention_by_layer(a)
    assert list(by_layer.data[0].x) == ["0:▁jazz", "1:a&lt;b&gt; &amp; &lt;/s&gt;", "2:&lt;/s&gt;"]
    np.testing.assert_allclose(
        np.asarray(by_layer.data[0].z, dtype=float),
        np.stack([a.cross_for(layer).astype(float).mean(0) for layer in a.layers]),
        atol=ATOL,
    )


def test_cross_attention_by_layer_real_capture(attn):
    fig = cross_attention_by_layer(attn)
    assert fig.data[0].x[-1].endswith("&lt;/s&gt;")
    assert list(fig.data[0].y) == [f"layer {n}" for n in attn.layers]
    with pytest.raises(ValueError, match="no text"):
        cross_attention_by_layer(attn, item=1)
