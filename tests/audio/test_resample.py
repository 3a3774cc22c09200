"""Tests for musicgen_nb.audio.resample: soxr resampling and its up-front memory check."""

import re

import numpy as np
import pytest
from _capped import capped_error, capped_ok

from musicgen_nb import audio
from musicgen_nb.audio.resample import (
    RESAMPLE_OUT_FACTOR,
    RESAMPLE_OVERHEAD,
    check_resample_memory,
    resample_bytes,
)


def test_resample_keeps_leading_shape_and_frequency():
    x = np.stack([audio.sine(440, 1.0, 48000), audio.sine(880, 1.0, 48000)])[None]
    y = audio.resample(x, 48000, 32000)
    assert y.shape == (1, 2, 32000) and y.dtype == np.float32
    for ch, freq in enumerate((440, 880)):
        spectrum = np.abs(np.fft.rfft(y[0, ch]))
        assert np.argmax(spectrum) == freq  # 1 s of audio: bin index == Hz


def test_resample_same_rate_is_a_copy():
    x = np.ones(10, dtype=np.float32)
    y = audio.resample(x, 16000, 16000)
    y[0] = 5
    assert x[0] == 1


@pytest.mark.parametrize("sr", [0, -1, 44100.5, "16k", True, float("nan")])
def test_resample_rejects_bad_rates(sr):
    with pytest.raises((ValueError, TypeError), match="target_sr"):
        audio.resample(np.zeros(10), 16000, sr)


def test_resample_refuses_a_stretch_that_cannot_fit_before_resampling():
    # 32000 samples declared as 1 Hz, to 1 GHz: 3.2e13 samples, about 288 TB. No machine
    # has that, so this is refused everywhere, at once.
    x = np.zeros(32000, np.float32)
    with pytest.raises(ValueError) as info:
        audio.resample(x, 1, 10**9)
    msg = str(info.value)
    assert "32,000 samples at orig_sr=1 Hz are 32000.00 s (533.3 min) of audio" in msg
    assert (
        "resampling them to target_sr=1000000000 Hz makes shape (32000,) into (32000000000000,)"
        in msg
    )
    assert re.search(r"needs about 172,800\.0 GB, but only [\d.]+ GB of memory is available", msg)
    assert "Check orig_sr (the audio's own sample rate; common: 16000, 22050" in msg
    assert "and target_sr; if the rates are right, pass shorter audio" in msg


def test_resample_names_the_callers_argument_and_counts_its_next_step():
    x = np.zeros((2, 1, 32000), np.float32)
    with pytest.raises(ValueError) as info:
        audio.resample(x, 1, 10**9, name="sr", work=("encoding it with EnCodec", 1.0))
    msg = str(info.value)
    assert "at sr=1 Hz" in msg and "to 1000000000 Hz" in msg and "target_sr" not in msg
    assert "(2, 1, 32000) into (2, 1, 32000000000000)" in msg
    assert "and encoding it with EnCodec about 32,000.0 GB more" in msg
    assert "Check sr:" in msg
    # The same next step on a short clip fits, and the call resamples.
    assert audio.resample(x[..., :100], 100, 200, name="sr", work=("x", 1e6)).shape == (2, 1, 200)


@pytest.mark.parametrize(
    "kw, text",
    [(dict(name=5), "name must be a str"), (dict(work=("x", -1.0)), "work must be None or (str,"),
     (dict(work=120.0), "work must be None or (str, bytes per output sample >= 0), got 120.0")],
)  # fmt: skip
def test_resample_checks_its_options(kw, text):
    with pytest.raises(TypeError) as info:
        audio.resample(np.zeros(10), 16000, 8000, **kw)
    assert text in str(info.value)


def test_resample_with_a_wrong_rate_allocates_nothing_under_a_memory_cap():
    # 10 s at 32 kHz declared as 7 Hz: 1.46 G samples, soxr would need about 7.9 GB.
    msg, peak = capped_error(
        "mg.audio.resample(mg.audio.sine(440, 10.0, 32000), 7, 32000)", gb=1.0, timeout=60
    )
    assert "320,000 samples at orig_sr=7 Hz are 45714.29 s (761.9 min) of audio" in msg
    assert "makes shape (320000,) into (1462857143,), which needs about 7.9 GB" in msg
    assert peak < 300e6, peak  # the import and the input: nothing was resampled


def test_resample_large_but_fine_still_works_under_a_memory_cap():
    # 10 minutes of stereo at 44.1 kHz to 48 kHz: 212 MB in, 230 MB out, under a 2.5 GB cap.
    out = capped_ok(
        "x = np.random.default_rng(0).standard_normal((2, 600 * 44100), dtype=np.float32)\n"
        "y = mg.audio.resample(0.1 * x, 44100, 48000)\n"
        "print(y.shape, y.dtype)\n",
        gb=2.5,
        timeout=120,
    )
    assert out.strip() == "(2, 28800000) float32"


def test_same_rate_counts_the_callers_work():
    """Equal rates: a copy, but the caller's next step is still checked against the memory."""
    x = np.zeros((2, 1, 32000), np.float32)
    same = audio.resample(x, 32000, 32000, name="sr", work=("encoding it", 100.0))
    assert np.array_equal(same, x) and same is not x
    with pytest.raises(ValueError) as err:
        audio.resample(x, 32000, 32000, name="sr", work=("encoding it", 1e12))
    msg = str(err.value)
    assert msg.startswith("32,000 samples at sr=32000 Hz are 1.00 s of audio; encoding it needs")
    assert "pass shorter audio (about 0 s fits)" in msg


def test_resample_bytes_follows_the_measured_model():
    assert resample_bytes((2, 100), 8000, 8000) == 4 * 200  # a copy
    one = resample_bytes((1, 1000), 1000, 2000)
    assert one == int(4 * 1000 + RESAMPLE_OUT_FACTOR[0] * 4 * 2000 + RESAMPLE_OVERHEAD)
    more = resample_bytes((2, 1000), 1000, 2000)
    assert more == int(4 * 2000 + RESAMPLE_OUT_FACTOR[1] * 4 * 2 * 2000 + RESAMPLE_OVERHEAD)


def test_check_resample_memory_passes_what_fits_and_names_what_does_not():
    assert check_resample_memory(np.zeros(100, np.float32), 100, 200) is None
    with pytest.raises(ValueError, match=r"100 samples at sr=1 Hz .* Check sr:"):
        check_resample_memory(np.zeros(100, np.float32), 1, 10**12, name="sr")
