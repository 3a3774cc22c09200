import numpy as np
import plotly.graph_objects as go
import pytest

from musicgen_nb.viz.topk import CHOSEN_COLOR, OTHER_COLOR, topk


def test_topk_bars_equal_trace(guided):
    df = guided.trace
    fig = topk(df, frame=20, item=1)
    assert len(fig.data) == 4 and all(isinstance(t, go.Bar) for t in fig.data)
    for k, t in enumerate(fig.data):
        row = df[(df["item"] == 1) & (df.frame == 20) & (df.codebook == k)].iloc[0]
        assert list(t.x) == [str(i) for i in row.top_ids]
        np.testing.assert_allclose(np.asarray(t.y), row.top_probs)
        expected = [CHOSEN_COLOR if i == row.token else OTHER_COLOR for i in row.top_ids]
        assert list(t.marker.color) == expected
        assert f"sampled {row.token} (p={row.chosen_prob:.3f})" in fig.layout.annotations[k].text
    one = topk(df, frame=0, codebook=2)
    assert len(one.data) == 1 and one.layout.annotations[0].text.startswith("codebook 2")


def test_topk_errors(guided):
    with pytest.raises(
        ValueError, match="frame 50 was not sampled for item 0; sampled frames: 0..49"
    ):
        topk(guided.trace, frame=50)
    with pytest.raises(TypeError, match="frame must be an int"):
        topk(guided.trace, frame=1.5)
    with pytest.raises(ValueError, match="codebook 9"):
        topk(guided.trace, frame=1, codebook=9)


def test_figures_are_deterministic(guided):
    for build in (lambda: topk(guided.trace, frame=3),):
        a, b = build().to_json(), build().to_json()
        assert a == b
        assert '"uid"' not in a
