from types import SimpleNamespace

import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import viz


def _frame_z(fig, i=0):
    return np.asarray(fig.data[i].z, dtype=float)


def test_pattern_grid_delay_by_name():
    fig = viz.pattern_grid("delay", num_codebooks=4, frames=8)
    p = mg.patterns.build("delay", 4, 8)
    assert [a.text for a in fig.layout.annotations] == ["delay: 11 steps"]
    frames, special = fig.data[0], fig.data[1]
    z = _frame_z(fig)
    assert z.shape == (4, p.num_steps)  # codebooks x steps
    layout_t = p.layout.T
    np.testing.assert_array_equal(np.isnan(z), layout_t < 0)
    np.testing.assert_array_equal(z[layout_t >= 0], layout_t[layout_t >= 0])
    assert list(frames.y) == ["cb 0", "cb 1", "cb 2", "cb 3"]
    np.testing.assert_array_equal(np.asarray(frames.x), np.arange(11))
    text = np.asarray(frames.text)
    assert text[0, 3] == "t=3" and text[1, 0] == "" and text[1, 1] == "t=0"
    # specials: a separate grey trace marked "S"
    sz = np.asarray(special.z, dtype=float)
    np.testing.assert_array_equal(~np.isnan(sz), layout_t < 0)
    assert np.asarray(special.text)[1, 0] == "S"
    assert special.colorscale[0][1] == special.colorscale[-1][1]
    assert (
        "special token" in special.hovertemplate and "predicts frame %{z}" in frames.hovertemplate
    )
    assert fig.layout.xaxis.title.text == "decoding step"
    assert fig.layout.yaxis.title.text == "codebook"


def test_pattern_grid_side_by_side_titles():
    names = mg.patterns.names()
    fig = viz.pattern_grid(names, num_codebooks=4, frames=8)
    titles = [a.text for a in fig.layout.annotations]
    expected = [f"{n}: {mg.patterns.build(n, 4, 8).num_steps} steps" for n in names]
    assert titles == expected
    assert "parallel: 8 steps" in titles and "delay: 11 steps" in titles
    axes = {t.xaxis for t in fig.data}
    assert len(axes) == len(names)
    # parallel has no special token, so no grey trace
    assert [t.name for t in fig.data if t.xaxis == "x"] == ["parallel"]


def test_pattern_grid_accepts_pattern_objects_and_mixed_list():
    p = mg.patterns.build("unroll", 2, 3)
    fig = viz.pattern_grid([p, "parallel"], num_codebooks=2, frames=3)
    assert [a.text for a in fig.layout.annotations] == ["unroll: 6 steps", "parallel: 3 steps"]
    fake = SimpleNamespace(name="mine", layout=np.array([[0, -1], [1, 0], [-1, 1]]))
    fig = viz.pattern_grid(fake)
    assert fig.layout.annotations[0].text == "mine: 3 steps"
    np.testing.assert_array_equal(_frame_z(fig), np.array([[0, 1, np.nan], [np.nan, 0, 1]]))


def test_pattern_grid_deterministic():
    a = viz.pattern_grid(["delay", "musiclm"]).to_json()
    assert a == viz.pattern_grid(["delay", "musiclm"]).to_json()


def test_pattern_grid_drops_text_when_large():
    fig = viz.pattern_grid("unroll", num_codebooks=4, frames=50)
    assert fig.data[0].text is None and fig.data[0].texttemplate is None
    assert _frame_z(fig).shape == (4, 200)


def test_pattern_grid_errors():
    with pytest.raises(ValueError, match=r"pattern name in \[.*delay.*\], got 'dealy'"):
        viz.pattern_grid("dealy")
    with pytest.raises(ValueError, match=r"patterns\[1\] must be a pattern name"):
        viz.pattern_grid(["delay", "nope"])
    with pytest.raises(TypeError, match=r"patterns must be a Pattern .* got int"):
        viz.pattern_grid(3)
    with pytest.raises(ValueError, match="empty list"):
        viz.pattern_grid([])
    with pytest.raises(ValueError, match=r"num_codebooks must be an int in \[1, 64\], got 0"):
        viz.pattern_grid("delay", num_codebooks=0)
    with pytest.raises(ValueError, match=r"layout must have shape \[num_steps, num_codebooks\]"):
        viz.pattern_grid(SimpleNamespace(name="x", layout=np.arange(3)))
    with pytest.raises(ValueError, match="holds -2"):
        viz.pattern_grid(SimpleNamespace(name="x", layout=np.array([[0, -2]])))


def test_pattern_grid_panels_share_one_step_scale():
    """One row per pattern, same x range: cells are equally wide and labels legible (02's bug)."""
    names = mg.patterns.names()
    fig = viz.pattern_grid(names, num_codebooks=4, frames=4)
    layout = fig.layout.to_plotly_json()
    xaxes = [k for k in layout if k.startswith("xaxis")]
    assert len(xaxes) == len(names)
    assert {tuple(layout[k]["domain"]) for k in xaxes} == {(0.0, 1.0)}
    assert {tuple(layout[k]["range"]) for k in xaxes} == {(-0.5, 15.5)}
    assert all(t.textfont.size >= 11 for t in fig.data)
    assert fig.layout.height >= len(names) * 150


def test_pattern_grid_escapes_names():
    fake = SimpleNamespace(name="a<b>", layout=np.array([[0], [1]]))
    fig = viz.pattern_grid(fake)
    assert fig.layout.annotations[0].text == "a&lt;b&gt;: 2 steps"


@pytest.mark.parametrize(
    "kwargs, name, cap",
    [(dict(frames=10**9), "frames", 3000), (dict(num_codebooks=10**6), "num_codebooks", 64)],
)
def test_pattern_grid_refuses_huge_sizes_up_front(kwargs, name, cap):
    with pytest.raises(ValueError, match=rf"{name} must be .*{cap}"):
        viz.pattern_grid("delay", **kwargs)


@pytest.mark.parametrize("frames", [4, 8, 50])
def test_pattern_grid_colour_bar_ticks_whole_frames(frames):
    """A frame is a whole number: the colour bar ticks 0, 1, 2... (not 0.5 steps) and at most 8."""
    fig = viz.pattern_grid(["parallel", "delay"], num_codebooks=4, frames=frames)
    bar = fig.layout.coloraxis.colorbar
    assert isinstance(bar.dtick, int) and bar.dtick >= 1, bar.dtick
    assert bar.tick0 == 0 and bar.tickformat == "d"
    assert fig.layout.coloraxis.cmax / bar.dtick <= 8
    if frames <= 8:
        assert bar.dtick == 1
