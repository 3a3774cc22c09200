import html

import numpy as np
import plotly.graph_objects as go
import pytest
from _traces import synthetic_attentions

from musicgen_nb.viz.cross_attention import cross_attention, cross_attention_by_layer

ATOL = 5e-3


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
    a = synthetic_attentions(steps=1000, tokens=6)
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
        cross_attention(synthetic_attentions(steps=10, prefix=20))
    with pytest.raises(TypeError, match="attentions=True"):
        cross_attention(None)
    with pytest.raises(TypeError, match="Attentions"):
        cross_attention(np.zeros((1, 1, 3, 3)))
    bad = synthetic_attentions(steps=10)
    bad.cross = bad.cross[:, :, :, :, None]
    with pytest.raises(
        ValueError, match="attn.cross must be \\[layers=3, batch=1, steps, text_len\\]"
    ):
        cross_attention(bad)


def test_figures_are_deterministic(attn):
    for build in (lambda: cross_attention(attn),):
        a, b = build().to_json(), build().to_json()
        assert a == b and '"uid"' not in a


LABEL = "a<b> & </s>"


def test_cross_attention_escapes_token_labels():
    """Tokens such as '</s>' are text, not HTML: plotly gets them escaped."""
    a = synthetic_attentions(10, tokens=3)
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
