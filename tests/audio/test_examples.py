"""Tests for musicgen_nb.audio.examples: the shipped real-music clip and its provenance."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from musicgen_nb import audio
from musicgen_nb.melody import chroma


def test_minuet_is_ten_seconds_of_real_music_at_32khz():
    x, sr = audio.example("minuet")
    assert sr == 32000 and x.shape == (320000,) and x.dtype == np.float32
    assert np.abs(x).max() == pytest.approx(10 ** (-1 / 20), abs=0.02)  # -1 dBFS peak
    rms = [float(np.sqrt(np.mean(x[i * sr : (i + 1) * sr] ** 2))) for i in range(9)]
    assert min(rms) > 0.05  # sound in every second, no silent gap
    # G major: the tonic G is the most frequent pitch class of the chroma (C=0 ... G=7).
    top = np.bincount(np.argmax(chroma(x, sr), axis=-1), minlength=12)
    assert int(np.argmax(top)) == 7


def test_example_resamples_and_trims():
    x, sr = audio.example("minuet", sr=16000, seconds=2.5)
    assert (x.shape, sr) == ((40000,), 16000)


def test_shipped_file_matches_its_provenance():
    p = audio.provenance("minuet")
    data = resources.files("musicgen_nb.audio").joinpath("data", p["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == p["sha256"]
    assert len(data) < 300 * 1024
    assert "public domain" in p["score"]["status"] and p["soundfont"]["licence"].startswith("MIT")
    assert p["sample_rate"] == 32000 and "fluidsynth" in p["command"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bolero"}, r"name must be one of \['minuet'\], got 'bolero'"),
        ({"seconds": 11}, r"seconds must be a number in \(0, 10\] or None, got 11"),
        ({"seconds": 0}, r"seconds must be a number"),
        ({"sr": -1}, r"sr must be a positive integer sample rate"),
    ],
)
def test_example_names_a_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        audio.example(**kwargs)
    if "name" in kwargs:
        with pytest.raises(ValueError, match="name must be one of"):
            audio.provenance(kwargs["name"])
