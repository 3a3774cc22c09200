import numpy as np
import pytest
from _traces import trace_rows

from musicgen_nb.viz.guidance import guidance_comparison


def test_guidance_comparison(guided, unguided):
    fig = guidance_comparison({3.0: guided, 1.0: unguided}, item=1)
    # entropy for both scales, KL only where guidance is on
    assert [(t.name, t.yaxis) for t in fig.data] == [
        ("scale 1", "y"),
        ("scale 3", "y"),
        ("scale 3", "y2"),
    ]
    for t, g in zip(fig.data[:2], (unguided, guided), strict=True):
        df = g.trace[g.trace["item"] == 1]
        mean = df.groupby("frame").entropy.mean()
        np.testing.assert_allclose(np.asarray(t.y), mean.to_numpy())
        np.testing.assert_allclose(np.asarray(t.x), mean.index / 50)
    kl = guided.trace[guided.trace["item"] == 1].groupby("frame").kl.mean()
    np.testing.assert_allclose(np.asarray(fig.data[2].y), kl.to_numpy())
    # a list uses each generation's params; codebook picks one line source
    as_list = guidance_comparison([guided, unguided], item=1)
    assert as_list.to_json() == fig.to_json()
    one = guidance_comparison({3: guided.trace}, codebook=0)
    np.testing.assert_allclose(np.asarray(one.data[0].y), trace_rows(guided.trace, 0, 0).entropy)


def test_guidance_comparison_errors(tiny, guided):
    plain = tiny.generate("jazz", duration=0.2, seed=0, progress=False)
    with pytest.raises(
        ValueError, match="guidance_scale=2.0 has no trace; generate with trace=True"
    ):
        guidance_comparison({2.0: plain})
    with pytest.raises(TypeError, match="dict"):
        guidance_comparison(guided)
    with pytest.raises(ValueError, match="empty"):
        guidance_comparison({})
    with pytest.raises(TypeError, match="Generation"):
        guidance_comparison([guided.trace])


def test_figures_are_deterministic(guided, unguided):
    for build in (lambda: guidance_comparison({1: unguided, 3: guided}),):
        a, b = build().to_json(), build().to_json()
        assert a == b
        assert '"uid"' not in a


def test_guidance_comparison_one_colour_per_scale(guided, unguided):
    """A scale keeps its colour in both subplots, and no two scales share one (03's KL bug)."""
    fig = guidance_comparison({1.0: unguided, 3.0: guided, 6.0: guided})
    colour = {}
    for t in fig.data:
        assert t.line.color is not None, t.name
        assert colour.setdefault(t.name, t.line.color) == t.line.color, t.name
    assert len(set(colour.values())) == 3
    # one legend entry per scale
    assert sorted(t.name for t in fig.data if t.showlegend is not False) == sorted(colour)
