"""Tests for musicgen_nb.audio: batching, resampling, I/O, loudness and synthesis."""

import re

import numpy as np
import pytest
import soundfile as sf
import torch
from _capped import capped_error, capped_ok

from musicgen_nb import audio


# ---------------------------------------------------------------------------- as_batch
@pytest.mark.parametrize(
    ("shape", "expected"),
    [((100,), (1, 1, 100)), ((2, 100), (1, 2, 100)), ((3, 2, 100), (3, 2, 100))],
)
def test_as_batch_shapes(shape, expected):
    x = np.random.default_rng(0).standard_normal(shape)
    out = audio.as_batch(x)
    assert out.shape == expected
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(shape), x, rtol=1e-6)


def test_as_batch_accepts_torch_with_grad():
    t = torch.ones(2, 50, requires_grad=True) * 0.5
    out = audio.as_batch(t)
    assert isinstance(out, np.ndarray) and out.shape == (1, 2, 50)
    assert np.all(out == 0.5)


def test_as_batch_scales_int16_pcm():
    out = audio.as_batch(np.array([0, 16384, -32768], dtype=np.int16))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, -1.0])


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (np.zeros((1, 1, 1, 4)), ValueError, "shape"),
        (np.zeros(0), ValueError, "empty"),
        (np.array([0.0, np.nan]), ValueError, "non-finite"),
        (np.array([0.0, np.inf]), ValueError, "non-finite"),
        ("noise.wav", TypeError, "str"),
        (np.array(["a", "b"]), TypeError, "dtype"),
        (np.zeros(3, dtype=complex), TypeError, "complex"),
    ],
)
def test_as_batch_rejects(bad, exc, match):
    with pytest.raises(exc, match=match) as info:
        audio.as_batch(bad, name="melody")
    assert "melody" in str(info.value)


def test_as_batch_detects_channels_last():
    with pytest.raises(ValueError, match=r"\[samples, channels\].*\.T"):
        audio.as_batch(np.zeros((1000, 2)))


# ---------------------------------------------------------------------------- resample
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


def test_match_channels():
    mono = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    stereo = audio.match_channels(mono, 2)
    assert stereo.shape == (1, 2, 4)
    np.testing.assert_array_equal(stereo[0, 0], stereo[0, 1])
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(audio.match_channels(x, 1), [[[0.5, 0.5]]])
    assert audio.match_channels(x, 2) is x
    with pytest.raises(ValueError, match="channels"):
        audio.match_channels(np.zeros((1, 3, 4)), 2)
    with pytest.raises(ValueError, match="channels"):
        audio.match_channels(mono, 0)


# ---------------------------------------------------------------------------- I/O
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_write_load_round_trip(tmp_path, fmt):
    x = np.stack([audio.sine(440, 0.5, 16000), audio.sine(660, 0.5, 16000)])
    path = audio.write(tmp_path / "tone", x, 16000, fmt=fmt)
    assert path == tmp_path / f"tone.{fmt}"
    assert sf.info(str(path)).subtype == "PCM_16"
    y, sr = audio.load(path)
    assert sr == 16000 and y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-6)
    m, sr2 = audio.load(path, sr=8000, mono=True)
    assert (m.shape, sr2) == ((1, 4000), 8000)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_refuses_to_overwrite(tmp_path):
    p = audio.write(tmp_path / "a.wav", np.zeros(100), 8000)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        audio.write(p, np.ones(100) * 0.5, 8000)
    audio.write(p, np.ones(100) * 0.5, 8000, overwrite=True)
    y, _ = audio.load(p)
    assert np.allclose(y, 0.5, atol=1e-4)


def test_write_clips_to_full_scale(tmp_path):
    p = audio.write(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.25]), 8000)
    y, _ = audio.load(p)
    np.testing.assert_allclose(y[0], [1.0, -1.0, 0.25], atol=1e-4)


def test_write_rejects_bad_format(tmp_path):
    with pytest.raises(ValueError, match=r"fmt must be one of \['wav', 'flac'\], got 'mp3'"):
        audio.write(tmp_path / "a.mp3", np.zeros(10), 8000)
    with pytest.raises(ValueError, match="does not match"):
        audio.write(tmp_path / "a.wav", np.zeros(10), 8000, fmt="flac")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio.load(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="could not read audio from"):
        audio.load(junk)


def test_unique_path(tmp_path):
    p = tmp_path / "take.wav"
    assert audio.unique_path(p) == p
    p.touch()
    assert audio.unique_path(p) == tmp_path / "take-1.wav"
    (tmp_path / "take-1.wav").touch()
    assert audio.unique_path(p) == tmp_path / "take-2.wav"


# ---------------------------------------------------------------------------- loudness
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


# ---------------------------------------------------------------------------- synthesis
def test_note_to_midi():
    assert [audio.note_to_midi(n) for n in ("C4", "A4", "C#4", "Db4", "B3", "c-1")] == [
        60,
        69,
        61,
        61,
        59,
        0,
    ]
    for bad in ("H2", "C", 128, 4.5):
        with pytest.raises(ValueError, match="note"):
            audio.note_to_midi(bad)


def test_sine_and_melody_tone():
    x = audio.sine(100, 1.0, 8000, amplitude=0.3)
    assert x.shape == (8000,) and x.dtype == np.float32
    assert np.abs(x).max() == pytest.approx(0.3, rel=1e-3)
    m = audio.melody_tone(["A4", 81], 0.5, 16000, amplitude=0.8)
    assert m.shape == (16000,)
    assert np.abs(m).max() == pytest.approx(0.8, rel=1e-5)
    spectrum = np.abs(np.fft.rfft(m[:8000]))  # 0.5 s: bin = 2 Hz
    assert np.argmax(spectrum) * 2 == 440
    assert spectrum[880 // 2] > 0.2 * spectrum[440 // 2]  # a real harmonic
    with pytest.raises(ValueError, match="freq"):
        audio.sine(5000, 1.0, 8000)
    with pytest.raises(ValueError, match="notes"):
        audio.melody_tone([], 0.5, 8000)


def test_one_item_picks_a_clip_and_names_problems():
    from musicgen_nb.audio import one_item

    batch = np.stack([np.zeros((1, 10)), np.full((1, 10), np.nan)])
    assert one_item(batch, 1).tolist() == [[0.0] * 10]  # NaN made finite for display
    assert one_item(np.ones(5)).shape == (1, 5)
    with pytest.raises(ValueError, match=r"batch of 2 items.*pass item=0\.\.1"):
        one_item(batch)
    with pytest.raises(ValueError, match="item=2 is out of range"):
        one_item(batch, 2)
    with pytest.raises(
        ValueError, match=r"at most 8 channels\. Did you pass \[samples, channels\]"
    ):
        one_item(np.zeros((100, 2)), max_channels=8)


# ---------------------------------------------------------------------------- hardening
def test_non_finite_is_reported_accurately():
    x = np.zeros(10)
    x[[2, 5]] = np.nan
    x[7] = -np.inf
    with pytest.raises(ValueError, match=r"2 NaN and 1 inf \(the first at index \(2,\)\)"):
        audio.as_batch(x, name="melody")
    with pytest.raises(ValueError, match=r"melody holds values up to 1e\+300, beyond float32"):
        audio.as_batch(np.array([0.0, 1e300]), name="melody")


def test_load_says_what_is_wrong(tmp_path):
    garbage = tmp_path / "song.mp3"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError) as err:
        audio.load(garbage)
    msg = str(err.value)
    assert str(garbage) in msg and "not readable audio" in msg
    assert "does not exist" not in msg
    with pytest.raises(
        TypeError, match="path must be a file path .str or os.PathLike., got NoneType"
    ):
        audio.load(None)
    with pytest.raises(ValueError, match="path is an empty string"):
        audio.load("")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        audio.load(tmp_path)
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(ValueError, match=r"the file is empty \(0 bytes\)"):
        audio.load(empty)


def test_truncated_wav_warns(tmp_path):
    p = audio.write(tmp_path / "a.wav", audio.sine(440, 1.0, 32000), 32000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.warns(
        UserWarning, match=r"a\.wav is truncated: its header declares 32000 frames but only 159\d\d"
    ):
        x, _ = audio.load(p)
    assert x.shape[-1] < 16000
    whole = audio.write(tmp_path / "b.wav", audio.sine(440, 1.0, 32000), 32000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.load(whole)  # a complete file does not warn


def test_write_follows_umask_and_leaves_no_temp(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        p = audio.write(tmp_path / "a.flac", np.zeros(100), 8000)
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640
    assert [q.name for q in tmp_path.iterdir()] == ["a.flac"]
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        audio.write(p, np.zeros(100), 8000, overwrite="yes")


def test_encode_gives_file_bytes():
    import io

    data = audio.encode(audio.sine(440, 0.1, 8000), 8000, "flac")
    y, sr = sf.read(io.BytesIO(data))
    assert data[:4] == b"fLaC" and sr == 8000 and len(y) == 800


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
