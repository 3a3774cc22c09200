import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import viz


def _c(idx):
    return np.eye(12, dtype=np.float32)[np.asarray(idx)]


def test_chroma_single_array():
    c = _c(np.arange(40) % 12)
    fig = viz.chroma(c)
    (hm,) = fig.data
    np.testing.assert_array_equal(np.asarray(hm.z), c.T)
    assert list(hm.y) == list(mg.melody.PITCH_CLASSES)
    np.testing.assert_array_equal(np.asarray(hm.x), np.arange(40))
    assert fig.layout.xaxis.title.text == "frame"
    assert fig.layout.yaxis.title.text == "pitch class"
    assert [a.text for a in fig.layout.annotations] == ["input"]


def test_chroma_frame_rate_gives_seconds():
    fig = viz.chroma(_c([0, 4, 7, 0]), frame_rate=8)
    np.testing.assert_allclose(np.asarray(fig.data[0].x), [0, 0.125, 0.25, 0.375])
    assert fig.layout.xaxis.title.text == "time (s)"


def test_chroma_input_vs_output_similarity():
    a = _c([0, 4, 7, 0])
    b = _c([0, 4, 9, 2])
    fig = viz.chroma(a, b, titles=("melody", "generated"))
    assert len(fig.data) == 2
    assert [x.text for x in fig.layout.annotations] == ["melody", "generated"]
    sim = mg.melody.similarity(a, b)
    assert f"chroma similarity {sim:.2f}" in fig.layout.title.text
    assert "chroma similarity 0.50" in fig.layout.title.text
    np.testing.assert_array_equal(np.asarray(fig.data[1].z), b.T)
    assert fig.data[1].yaxis == "y2"


def test_chroma_from_audio_uses_melody_chroma():
    sr = 32000
    t = np.arange(2 * sr) / sr
    a4 = 0.5 * np.sin(2 * np.pi * 440 * t)
    c4 = 0.5 * np.sin(2 * np.pi * 261.63 * t)
    fig = viz.chroma(a4, c4, sr=sr)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), mg.melody.chroma(a4, sr).T)
    assert list(fig.data[0].y)[int(np.asarray(fig.data[0].z)[:, 4].argmax())] == "A"
    x = np.asarray(fig.data[0].x)
    assert x[1] == pytest.approx(1 / mg.melody.FRAME_RATE)
    assert "chroma similarity 0.00" in fig.layout.title.text


def test_chroma_caps_frames_and_is_deterministic():
    c = _c(np.arange(5000) % 12)
    fig = viz.chroma(c, max_frames=1000)
    assert np.asarray(fig.data[0].z).shape == (12, 1000)
    assert "every 5 frames" in fig.layout.title.text
    assert fig.to_json() == viz.chroma(c, max_frames=1000).to_json()


def test_chroma_errors():
    with pytest.raises(
        ValueError,
        match=r"chroma_in must be a chroma array of shape \[frames, 12\] \(raw audio\? then pass sr=\)",
    ):
        viz.chroma(np.zeros(32000))
    with pytest.raises(ValueError, match=r"chroma_out must be a chroma array.*got shape \(4, 11\)"):
        viz.chroma(_c([0]), np.zeros((4, 11)))
    with pytest.raises(ValueError, match="titles must hold 2 strings"):
        viz.chroma(_c([0]), _c([1]), titles=("only",))
    with pytest.raises(ValueError, match="frame_rate must be a positive number"):
        viz.chroma(_c([0]), frame_rate=-2)


def test_chroma_titles_are_escaped():
    c = np.eye(12)[np.arange(8) % 12]
    fig = viz.chroma(c, c, titles=("a<b>", "c & d"))
    subtitles = [a.text for a in fig.layout.annotations]
    assert subtitles == ["a&lt;b&gt;", "c &amp; d"]
    assert fig.layout.title.text.startswith("Chroma: a&lt;b&gt; vs c &amp; d")
    assert viz.chroma(c, title="</s>").layout.title.text == "&lt;/s&gt;"
