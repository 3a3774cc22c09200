"""Tests for musicgen_nb.audio.tones: note names, sine tones and melodies."""

import numpy as np
import pytest

from musicgen_nb import audio


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


def test_tones_name_bad_arguments():
    with pytest.raises(ValueError, match="duration must be a positive number, got 0"):
        audio.sine(440, 0, 8000)
    with pytest.raises(TypeError, match="note_duration must be a positive number, got '1'"):
        audio.melody_tone(["C4"], "1", 8000)
    with pytest.raises(ValueError, match="sr must be a positive integer sample rate in Hz, got -1"):
        audio.melody_tone(["C4"], 0.5, -1)
