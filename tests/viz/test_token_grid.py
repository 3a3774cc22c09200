import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import viz


def _codes(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 2048, size=shape)


def test_token_grid_values_axes_and_hover():
    codes = _codes((4, 100))
    fig = viz.token_grid(codes, frame_rate=50)
    (hm,) = fig.data
    assert hm.type == "heatmap"
    np.testing.assert_array_equal(np.asarray(hm.z), codes)
    assert list(hm.y) == ["cb 0", "cb 1", "cb 2", "cb 3"]
    np.testing.assert_allclose(np.asarray(hm.x), np.arange(100) / 50)
    np.testing.assert_array_equal(np.asarray(hm.customdata)[2], np.arange(100))
    for part in ("code %{z}", "frame %{customdata}", "time %{x:.2f} s"):
        assert part in hm.hovertemplate
    assert fig.layout.xaxis.title.text == "time (s)"
    assert fig.layout.yaxis.title.text == "codebook"
    assert fig.layout.template.layout.paper_bgcolor is not None  # a fixed template is set
    assert "4 codebooks x 100 frames" in fig.layout.title.text


def test_token_grid_batched_item_and_frame_rate():
    codes = _codes((3, 2, 40))
    fig = viz.token_grid(codes, item=2, frame_rate=25)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), codes[2])
    assert np.asarray(fig.data[0].x)[-1] == pytest.approx(39 / 25)


def test_token_grid_accepts_torch():
    torch = pytest.importorskip("torch")
    codes = _codes((4, 10))
    fig = viz.token_grid(torch.from_numpy(codes))
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), codes)


def test_token_grid_caps_frames_and_says_so():
    codes = _codes((4, 3001))
    fig = viz.token_grid(codes, max_frames=1000)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 751)  # stride 4 keeps ceil(3001 / 4) frames <= 1000
    np.testing.assert_array_equal(z, codes[:, ::4])
    np.testing.assert_array_equal(np.asarray(fig.data[0].customdata)[0], np.arange(0, 3001, 4))
    np.testing.assert_allclose(np.asarray(fig.data[0].x), np.arange(0, 3001, 4) / 50)
    assert "showing every 4th frame (751 of 3001)" in fig.layout.title.text


def test_token_grid_cap_note_exact():
    fig = viz.token_grid(_codes((4, 3000)), max_frames=1500)
    assert np.asarray(fig.data[0].z).shape == (4, 1500)
    assert "showing every 2nd frame (1500 of 3000)" in fig.layout.title.text


def test_token_grid_deterministic_json():
    codes = _codes((4, 200))
    assert viz.token_grid(codes).to_json() == viz.token_grid(codes).to_json()


def test_token_grid_custom_title():
    assert viz.token_grid(_codes((4, 5)), title="mine").layout.title.text == "mine"


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (
            np.zeros(10, dtype=int),
            ValueError,
            r"shape \[num_codebooks, frames\].*got shape \(10,\)",
        ),
        (np.zeros((1, 2, 3, 4), dtype=int), ValueError, "got shape"),
        (np.zeros((4, 0), dtype=int), ValueError, "at least one"),
        (np.full((4, 3), 0.5), TypeError, "integer codes"),
        ("codes", TypeError, "must be an array"),
    ],
)
def test_token_grid_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        viz.token_grid(bad)


def test_token_grid_bad_options():
    codes = _codes((2, 4, 10))
    with pytest.raises(ValueError, match=r"item=2 is out of range.*batch size 2"):
        viz.token_grid(codes, item=2)
    with pytest.raises(ValueError, match="frame_rate must be a positive number, got 0"):
        viz.token_grid(codes, frame_rate=0)
    with pytest.raises(ValueError, match="max_frames must be an int >= 1"):
        viz.token_grid(codes, max_frames=0)


def test_token_grid_from_generation(tiny):
    g = tiny.generate(["x <b>", None], duration=1, seed=0, progress=False)
    fig = viz.token_grid(g, item=0)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), g.codes[0])
    np.testing.assert_allclose(
        np.asarray(fig.data[0].x), np.arange(g.codes.shape[-1]) / g.frame_rate
    )
    assert "x &lt;b&gt;" in fig.layout.title.text
    assert "(unconditional)" in viz.token_grid(g, item=1).layout.title.text
    assert len(fig.data[0].y) == tiny.num_codebooks
    assert mg.viz.token_grid is viz.token_grid


def test_token_grid_title_is_escaped():
    fig = viz.token_grid(np.zeros((4, 10), dtype=np.int64), title="a<b> & </s>")
    assert fig.layout.title.text == "a&lt;b&gt; &amp; &lt;/s&gt;"
