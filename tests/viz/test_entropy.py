import numpy as np
import plotly.graph_objects as go
import pytest
from _traces import synthetic_trace, trace_rows

from musicgen_nb.viz.entropy import entropy, per_codebook_lines


def test_entropy_lines_equal_trace(guided):
    df = guided.trace
    fig = entropy(df, item=1)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == [f"codebook {k}" for k in range(4)]
    for k, t in enumerate(fig.data):
        rows = trace_rows(df, 1, k)
        np.testing.assert_allclose(np.asarray(t.y), rows.entropy)
        np.testing.assert_allclose(np.asarray(t.x), rows.time_s)
    assert fig.layout.xaxis.title.text == "time (s)"
    assert [t.name for t in entropy(df, codebook=[0, 3]).data] == ["codebook 0", "codebook 3"]


def test_line_caps_average_long_traces():
    df = synthetic_trace(5000, K=1)
    fig = entropy(df, max_points=1000)
    y = np.asarray(fig.data[0].y)
    assert len(y) == 1000
    np.testing.assert_allclose(
        y, df.sort_values("frame").entropy.to_numpy().reshape(1000, 5).mean(1)
    )
    with pytest.raises(ValueError, match="max_points"):
        entropy(df, max_points=1)


def test_trace_viz_errors(guided):
    with pytest.raises(TypeError, match="trace=True"):
        entropy(None)
    with pytest.raises(TypeError, match="DataFrame"):
        entropy(np.zeros(3))
    with pytest.raises(ValueError, match="item 5 is not in the trace; items: \\[0, 1\\]"):
        entropy(guided.trace, item=5)


def test_figures_are_deterministic(guided):
    for build in (lambda: entropy(guided.trace),):
        a, b = build().to_json(), build().to_json()
        assert a == b
        assert '"uid"' not in a


def test_entropy_title_says_after_warping(guided):
    assert "after guidance and warping" in entropy(guided.trace).layout.title.text


def test_per_codebook_lines_one_line_per_codebook(guided):
    df = guided.trace[guided.trace["item"] == 0]
    lines = per_codebook_lines(df, "entropy", codebook=[1, 2])
    assert [t.name for t in lines] == ["codebook 1", "codebook 2"]
    np.testing.assert_allclose(np.asarray(lines[0].y), trace_rows(guided.trace, 0, 1).entropy)
