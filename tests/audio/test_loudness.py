"""Tests for musicgen_nb.audio.loudness: BS.1770 loudness and loudness normalization."""

import numpy as np
import pytest

from musicgen_nb import audio
from musicgen_nb.audio.loudness import k_weighting


def test_loudness_reference_sine():
    full = audio.sine(997, 5.0, 48000, amplitude=1.0)
    assert audio.loudness(full, 48000) == pytest.approx(-3.01, abs=0.1)
    half = audio.loudness(full * 0.5, 48000)
    assert audio.loudness(full, 48000) - half == pytest.approx(6.02, abs=0.01)


def test_loudness_other_rate_and_stereo():
    assert audio.loudness(audio.sine(997, 5.0, 32000, amplitude=1.0), 32000) == pytest.approx(
        -3.01, abs=0.1
    )
    stereo = np.stack([audio.sine(997, 5.0, 48000, amplitude=1.0)] * 2)
    assert audio.loudness(stereo, 48000) == pytest.approx(0.0, abs=0.1)  # channels sum


def test_loudness_k_weighting_cuts_low_frequencies():
    low = audio.loudness(audio.sine(30, 5.0, 48000, amplitude=1.0), 48000)
    assert low < -3.01 - 1.0


def test_loudness_gating_ignores_silence():
    tone = audio.sine(997, 3.0, 48000, amplitude=0.5)
    padded = np.concatenate([tone, np.zeros(48000 * 3, dtype=np.float32)])
    gated = audio.loudness(padded, 48000)
    # Without gating, doubling the length with silence would cost 3.01 dB; only the few
    # blocks straddling the edge still count.
    assert gated == pytest.approx(audio.loudness(tone, 48000), abs=0.4)
    assert audio.loudness(np.zeros(48000), 48000) == float("-inf")


def test_normalize_loudness_hits_target_and_limits_peak():
    quiet = audio.sine(440, 3.0, 32000, amplitude=0.01)
    y = audio.normalize_loudness(quiet, 32000, -20.0)
    assert y.shape == quiet.shape
    assert audio.loudness(y, 32000) == pytest.approx(-20.0, abs=0.05)
    loud = audio.normalize_loudness(quiet, 32000, -1.0, peak=0.5)
    assert np.abs(loud).max() == pytest.approx(0.5, rel=1e-5)


def test_normalize_loudness_silence_and_batch():
    silent = np.zeros((2, 16000), dtype=np.float32)
    np.testing.assert_array_equal(audio.normalize_loudness(silent, 16000), silent)
    batch = np.stack(
        [audio.sine(440, 2.0, 16000, amplitude=a)[None] for a in (0.01, 0.3)]
    )  # [2, 1, N]
    out = audio.normalize_loudness(batch, 16000, -24.0)
    assert out.shape == batch.shape
    for item in out:
        assert audio.loudness(item, 16000) == pytest.approx(-24.0, abs=0.05)
    with pytest.raises(ValueError, match="peak"):
        audio.normalize_loudness(batch[0], 16000, peak=1.5)


def test_k_weighting_boosts_highs_and_cuts_lows():
    from scipy import signal

    def gain_db(freq, sr=48000):
        h = 1.0
        for b, a in k_weighting(sr):
            h *= signal.freqz(b, a, worN=[freq], fs=sr)[1][0]
        return 20 * np.log10(abs(h))

    assert gain_db(997) == pytest.approx(0.69, abs=0.05)  # BS.1770's 997 Hz offset
    assert gain_db(10000) == pytest.approx(4.0, abs=0.3)
    assert gain_db(20) < -5
