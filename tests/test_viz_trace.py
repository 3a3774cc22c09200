import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from musicgen_nb.trace import COLUMNS, step_schedule
from musicgen_nb.viz.divergence import divergence
from musicgen_nb.viz.entropy import entropy
from musicgen_nb.viz.guidance import guidance_comparison
from musicgen_nb.viz.topk import CHOSEN_COLOR, OTHER_COLOR, topk


@pytest.fixture(scope="module")
def guided(tiny):
    return tiny.generate(
        ["jazz", "rock"], duration=1, seed=0, guidance_scale=3.0, trace=True, progress=False
    )


@pytest.fixture(scope="module")
def unguided(tiny):
    return tiny.generate(
        ["jazz", "rock"], duration=1, seed=0, guidance_scale=1.0, trace=True, progress=False
    )


def synthetic(frames: int, K: int = 2, kl: bool = True) -> pd.DataFrame:
    """A trace of the right layout with random values (no model)."""
    rng = np.random.default_rng(0)
    sched = step_schedule([(0, frames)], K)
    n = len(sched)
    top = np.sort(rng.dirichlet(np.ones(8), n)[:, :5], axis=1)[:, ::-1]
    return pd.DataFrame(
        dict(
            item=0,
            step=sched.step,
            window=sched.window,
            codebook=sched.codebook,
            frame=sched.frame,
            time_s=sched.frame / 50,
            entropy=rng.uniform(0, 5, n),
            chosen_prob=top[:, 0],
            token=rng.integers(0, 2048, n),
            top_ids=[list(r) for r in rng.integers(0, 2048, (n, 5))],
            top_probs=[list(r) for r in top],
            kl=rng.uniform(0, 1, n) if kl else np.nan,
        )  # fmt: skip
    )[list(COLUMNS)]


def _rows(df, item, k):
    return df[(df["item"] == item) & (df.codebook == k)].sort_values("frame")


def test_entropy_lines_equal_trace(guided):
    df = guided.trace
    fig = entropy(df, item=1)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == [f"codebook {k}" for k in range(4)]
    for k, t in enumerate(fig.data):
        rows = _rows(df, 1, k)
        np.testing.assert_allclose(np.asarray(t.y), rows.entropy)
        np.testing.assert_allclose(np.asarray(t.x), rows.time_s)
    assert fig.layout.xaxis.title.text == "time (s)"
    assert [t.name for t in entropy(df, codebook=[0, 3]).data] == ["codebook 0", "codebook 3"]


def test_divergence_lines_equal_trace(guided, unguided):
    df = guided.trace
    fig = divergence(df)
    assert len(fig.data) == 4
    for k, t in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(t.y), _rows(df, 0, k).kl)
    with pytest.raises(ValueError, match="guidance_scale > 1"):
        divergence(unguided.trace)


def test_line_caps_average_long_traces():
    df = synthetic(5000, K=1)
    fig = entropy(df, max_points=1000)
    y = np.asarray(fig.data[0].y)
    assert len(y) == 1000
    np.testing.assert_allclose(
        y, df.sort_values("frame").entropy.to_numpy().reshape(1000, 5).mean(1)
    )
    assert len(divergence(df, max_points=300).data[0].y) <= 300
    with pytest.raises(ValueError, match="max_points"):
        entropy(df, max_points=1)


def test_trace_viz_errors(guided):
    with pytest.raises(TypeError, match="trace=True"):
        entropy(None)
    with pytest.raises(TypeError, match="DataFrame"):
        entropy(np.zeros(3))
    with pytest.raises(ValueError, match="item 5 is not in the trace; items: \\[0, 1\\]"):
        entropy(guided.trace, item=5)
    with pytest.raises(ValueError, match="codebook 7 is not in the trace"):
        divergence(guided.trace, codebook=7)
    with pytest.raises(ValueError, match="missing columns \\['kl'\\]"):
        divergence(guided.trace.drop(columns="kl"))


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
    np.testing.assert_allclose(np.asarray(one.data[0].y), _rows(guided.trace, 0, 0).entropy)


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
    for build in (
        lambda: entropy(guided.trace),
        lambda: divergence(guided.trace),
        lambda: topk(guided.trace, frame=3),
        lambda: guidance_comparison({1: unguided, 3: guided}),
    ):
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


def test_codebook_colours_agree_across_figures(guided):
    ent = {t.name: t.line.color for t in entropy(guided.trace).data}
    kl = {t.name: t.line.color for t in divergence(guided.trace).data}
    assert ent == kl and len(set(ent.values())) == 4


def test_entropy_title_says_after_warping(guided):
    assert "after guidance and warping" in entropy(guided.trace).layout.title.text
