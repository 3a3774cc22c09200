import numpy as np
import pytest
from _traces import synthetic_trace, trace_rows

from musicgen_nb.viz.divergence import divergence
from musicgen_nb.viz.entropy import entropy


def test_divergence_lines_equal_trace(guided, unguided):
    df = guided.trace
    fig = divergence(df)
    assert len(fig.data) == 4
    for k, t in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(t.y), trace_rows(df, 0, k).kl)
    with pytest.raises(ValueError, match="guidance_scale > 1"):
        divergence(unguided.trace)


def test_line_caps_average_long_traces():
    df = synthetic_trace(5000, K=1)
    assert len(divergence(df, max_points=300).data[0].y) <= 300


def test_trace_viz_errors(guided):
    with pytest.raises(ValueError, match="codebook 7 is not in the trace"):
        divergence(guided.trace, codebook=7)
    with pytest.raises(ValueError, match="missing columns \\['kl'\\]"):
        divergence(guided.trace.drop(columns="kl"))


def test_figures_are_deterministic(guided):
    for build in (lambda: divergence(guided.trace),):
        a, b = build().to_json(), build().to_json()
        assert a == b
        assert '"uid"' not in a


def test_codebook_colours_agree_across_figures(guided):
    ent = {t.name: t.line.color for t in entropy(guided.trace).data}
    kl = {t.name: t.line.color for t in divergence(guided.trace).data}
    assert ent == kl and len(set(ent.values())) == 4
