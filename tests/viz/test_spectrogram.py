import librosa
import numpy as np
import pytest

from musicgen_nb import viz

SR = 32000


def _tone(f=1000.0, seconds=1.0, sr=SR):
    return (0.5 * np.sin(2 * np.pi * f * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def test_spectrogram_matches_librosa():
    y = _tone()
    fig = viz.spectrogram(y, SR, n_mels=64, n_fft=1024, hop_length=256)
    (hm,) = fig.data
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=256, n_mels=64)
    ref = librosa.power_to_db(S, ref=np.max(S))
    np.testing.assert_allclose(np.asarray(hm.z), ref, atol=1e-3)
    freqs = librosa.mel_frequencies(n_mels=66, fmax=SR / 2)[1:-1]
    np.testing.assert_allclose(np.asarray(hm.y), freqs, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(hm.x), np.arange(S.shape[1]) * 256 / SR, rtol=1e-5)
    assert fig.layout.xaxis.title.text == "time (s)"
    assert fig.layout.yaxis.title.text == "frequency (Hz, log scale)"
    assert "dB" in hm.hovertemplate and "Hz" in hm.hovertemplate
    # the loudest band is the one nearest 1 kHz, at 0 dB
    z = np.asarray(hm.z)
    assert np.asarray(hm.y)[z.mean(axis=1).argmax()] == pytest.approx(1000, rel=0.1)
    assert z.max() == pytest.approx(0.0)


def test_spectrogram_fmax_and_channel():
    stereo = np.stack([_tone(500), _tone(3000)])
    fig = viz.spectrogram(stereo, SR, n_mels=32, fmax=4000, channel=1)
    y = np.asarray(fig.data[0].y)
    assert y.max() < 4000
    z = np.asarray(fig.data[0].z)
    assert y[z.mean(axis=1).argmax()] == pytest.approx(3000, rel=0.1)
    assert "channel 1" in fig.layout.title.text
    assert "mono mix" in viz.spectrogram(stereo, SR).layout.title.text


def test_spectrogram_caps_frames():
    y = _tone(seconds=3.0)
    fig = viz.spectrogram(y, SR, hop_length=64, max_frames=300)
    assert np.asarray(fig.data[0].z).shape[1] <= 300
    assert "averaged to" in fig.layout.title.text


def test_spectrogram_short_audio_and_determinism():
    y = _tone(seconds=0.01)  # shorter than n_fft
    fig = viz.spectrogram(y, SR)
    assert np.isfinite(np.asarray(fig.data[0].z)).all()
    assert viz.spectrogram(y, SR).to_json() == fig.to_json()


def test_spectrogram_errors():
    with pytest.raises(ValueError, match=r"fmax must be at most sr / 2 = 16000 Hz"):
        viz.spectrogram(_tone(), SR, fmax=20000)
    with pytest.raises(ValueError, match="channel=2 is out of range"):
        viz.spectrogram(np.zeros((2, 4000)), SR, channel=2)
    with pytest.raises(ValueError, match="n_mels must be an int >= 1"):
        viz.spectrogram(_tone(), SR, n_mels=0)
    with pytest.raises(ValueError, match="at least one channel and one sample"):
        viz.spectrogram(np.zeros(0), SR)


def test_spectrogram_title_is_escaped():
    y = np.sin(np.arange(8000) / 5).astype(np.float32)
    fig = viz.spectrogram(y, 8000, title="a<b> & </s>")
    assert fig.layout.title.text == "a&lt;b&gt; &amp; &lt;/s&gt;"


def test_spectrogram_frequency_axis_is_logarithmic():
    """Octaves take equal height, so the notebooks can say 'pitch on y' (00's bug)."""
    y = np.sin(np.arange(8000) / 5).astype(np.float32)
    fig = viz.spectrogram(y, 8000)
    assert fig.layout.yaxis.type == "log" and "log" in fig.layout.yaxis.title.text
    assert float(np.min(fig.data[0].y)) > 0  # no 0 Hz row on a log axis
