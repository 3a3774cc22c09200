import numpy as np
import pytest

from musicgen_nb import viz

SR = 32000


def test_waveform_short_mono_exact():
    y = np.sin(2 * np.pi * 5 * np.arange(1000) / SR).astype(np.float32)
    fig = viz.waveform(y, SR)
    (tr,) = fig.data
    np.testing.assert_array_equal(np.asarray(tr.y), y)
    np.testing.assert_allclose(np.asarray(tr.x), np.arange(1000) / SR, rtol=1e-6)
    assert tr.name == "mono"
    assert fig.layout.xaxis.title.text == "time (s)"
    assert fig.layout.yaxis.title.text == "amplitude"
    assert "envelope" not in fig.layout.title.text
    assert "%{x:.3f} s" in tr.hovertemplate


def test_waveform_stereo_and_batch_item():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1, 1, size=(3, 2, 500)).astype(np.float32)
    fig = viz.waveform(audio, SR, item=1)
    assert [t.name for t in fig.data] == ["left", "right"]
    np.testing.assert_array_equal(np.asarray(fig.data[1].y), audio[1, 1])
    assert fig.layout.showlegend is True


def test_waveform_envelope_caps_points_and_keeps_peaks():
    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(SR * 5)).astype(np.float32)
    y[12345] = 0.99
    y[54321] = -0.97
    fig = viz.waveform(y, SR, max_points=2000)
    x, v = np.asarray(fig.data[0].x), np.asarray(fig.data[0].y)
    assert len(x) <= 2000 and len(x) == len(v)
    assert v.max() == pytest.approx(0.99) and v.min() == pytest.approx(-0.97)
    assert np.all(np.diff(x) >= 0)  # time order preserved
    assert x[-1] <= (len(y) - 1) / SR + 1e-6
    assert f"min/max envelope: {len(x)} of {len(y)} points" in fig.layout.title.text


def test_waveform_deterministic():
    y = np.random.default_rng(2).standard_normal((2, 50000)).astype(np.float32)
    assert viz.waveform(y, SR).to_json() == viz.waveform(y, SR).to_json()


def test_waveform_errors():
    with pytest.raises(ValueError, match=r"audio must have shape \[samples\].*got shape"):
        viz.waveform(np.zeros((1, 1, 1, 4)), SR)
    with pytest.raises(ValueError, match=r"Did you pass \[samples, channels\]"):
        viz.waveform(np.zeros((1000, 2)), SR)
    with pytest.raises(TypeError, match="sr must be a positive number, got None"):
        viz.waveform(np.zeros(10), None)
    with pytest.raises(ValueError, match="sr must be a positive number, got -1"):
        viz.waveform(np.zeros(10), -1)
    with pytest.raises(ValueError, match="max_points must be an int >= 2"):
        viz.waveform(np.zeros(10), SR, max_points=1)
    with pytest.raises(ValueError, match=r"item=2 is out of range"):
        viz.waveform(np.zeros((2, 1, 10)), SR, item=2)
    with pytest.raises(TypeError, match="real numeric"):
        viz.waveform(np.zeros(10, dtype=complex), SR)


def test_waveform_from_generation(tiny):
    g = tiny.generate("x", duration=1, seed=0, progress=False)
    fig = viz.waveform(g, max_points=1000)
    assert len(fig.data) == g.audio.shape[1]
    assert len(fig.data[0].x) <= 1000
    assert "x —" in fig.layout.title.text


def test_waveform_y_axis_is_symmetric_about_zero():
    """A clip with a DC offset (all samples > 0) still shows 0 on the axis (05's bug)."""
    y = 0.5 + 0.01 * np.sin(np.arange(32000) / 10)
    lo, hi = viz.waveform(y, 32000).layout.yaxis.range
    assert lo < 0 < hi and lo == -hi and hi >= 0.51


def test_waveform_title_is_escaped():
    fig = viz.waveform(np.zeros(100), 1000, title="a<b> & </s>")
    assert fig.layout.title.text == "a&lt;b&gt; &amp; &lt;/s&gt;"
