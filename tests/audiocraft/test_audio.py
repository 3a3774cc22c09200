"""audio_write: audiocraft's strategies and formats, returning the path with its suffix."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_nb.audio import loudness, sine
from musicgen_nb.audiocraft import audio_write
from musicgen_nb.audiocraft.audio import normalize_audio


@pytest.fixture
def wav():
    return torch.from_numpy(sine(440, 1.0, 32000, amplitude=0.2))[None]


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_return_the_path_with_its_suffix(tmp_path, wav, fmt):
    path = audio_write(tmp_path / "sub" / "clip", wav, 32000, format=fmt)
    assert path == tmp_path / "sub" / f"clip.{fmt}" and path.is_file()
    data, sr = sf.read(path)
    assert sr == 32000 and abs(len(data) - 32000) < 2000


def test_strategies(tmp_path, wav):
    peak = sf.read(audio_write(tmp_path / "p", wav, 32000))[0]
    assert abs(np.abs(peak).max() - 10 ** (-1 / 20)) < 1e-3
    loud = sf.read(audio_write(tmp_path / "l", wav, 32000, strategy="loudness"))[0]
    assert abs(loudness(loud, 32000) + 14) < 0.3
    rms = sf.read(audio_write(tmp_path / "r", wav, 32000, strategy="rms"))[0]
    assert abs(20 * np.log10(np.sqrt(np.mean(rms**2))) + 18) < 0.3
    clip = normalize_audio(np.full((1, 10), 2.0, np.float32), strategy="clip")
    assert np.allclose(clip, 10 ** (-1 / 20))
    quiet = normalize_audio(np.full((1, 10), 0.1, np.float32), normalize=False)
    assert np.allclose(quiet, 0.1)  # normalize=False: peak only scales down to avoid clipping


def test_add_suffix_false_and_overwrite_like_audiocraft(tmp_path, wav):
    path = audio_write(tmp_path / "x.wav", wav, 32000, add_suffix=False)
    assert path.name == "x.wav"
    again = audio_write(tmp_path / "x.wav", wav * 0.5, 32000, add_suffix=False, normalize=False)
    assert again == path and abs(np.abs(sf.read(path)[0]).max() - 0.1) < 1e-3
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary file left


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"format": "aac"}, "format must be one of"),
        ({"strategy": "max"}, "strategy must be one of"),
        ({"sample_rate": 0}, "sample_rate must be a positive int"),
        ({"wav": torch.zeros(2, 1, 10)}, r"wav must be \[C, T\]"),
        ({"wav": torch.zeros(1, 10, dtype=torch.int16)}, "floating-point"),
        ({"wav": torch.tensor([[float("nan")]])}, "NaN"),
    ],
)
def test_bad_arguments(tmp_path, wav, kwargs, match):
    args = {"wav": wav, "sample_rate": 32000, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        audio_write(tmp_path / "bad", **args)
    assert not list(tmp_path.iterdir())


def test_loudness_applies_the_full_gain_then_tanh_or_clips_like_audiocraft():
    """A dynamic clip (quiet bed, one loud burst) to -6 LUFS: the gain is not lowered to save
    the peak; the compressor bends it with tanh, otherwise the clip is clipped at 1."""
    x = np.concatenate(
        [sine(220, 1.0, 32000, amplitude=0.05), sine(220, 0.05, 32000, amplitude=0.9)]
    )
    x = x[None].astype(np.float32)
    gain = 10 ** ((-6 - loudness(x, 32000)) / 20)
    clipped = normalize_audio(x, strategy="loudness", loudness_headroom_db=6, sample_rate=32000,
                              log_clipping=False)  # fmt: skip
    assert np.allclose(clipped, np.clip(x * gain, -1, 1), atol=1e-5)
    assert (np.abs(clipped) >= 1).sum() > 100  # the burst clips, as in audiocraft
    bent = normalize_audio(x, strategy="loudness", loudness_headroom_db=6, sample_rate=32000,
                           loudness_compressor=True)  # fmt: skip
    assert np.allclose(bent, np.tanh(x * gain), atol=1e-5)
    quiet = np.full((1, 32000), 1e-3, np.float32)  # below audiocraft's energy floor: unchanged
    assert np.array_equal(normalize_audio(quiet, strategy="loudness", sample_rate=32000), quiet)


def test_numpy_integer_sample_rates(tmp_path, wav):
    path = audio_write(tmp_path / "n", wav, np.int64(32000))
    assert sf.read(path)[1] == 32000
