"""Tests for musicgen_nb.melody: MusicGen-style one-hot chroma and chroma similarity."""

from collections import Counter

import numpy as np
import pytest
import torch

from musicgen_nb import audio, melody

SCALE = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
NOTE_S = 0.5  # 4 chroma frames per note at 7.8125 frames/s


def majority_per_note(names, num_notes):
    """Most common pitch class among the frames centred inside each note."""
    note_of_frame = (np.arange(len(names)) / melody.FRAME_RATE // NOTE_S).astype(int)
    return [
        Counter(n for n, i in zip(names, note_of_frame, strict=True) if i == note).most_common(1)[
            0
        ][0]
        for note in range(num_notes)
    ]


@pytest.mark.parametrize("sr", [32000, 44100])
def test_c_major_scale_pitch_classes(sr):
    x = audio.melody_tone(SCALE, NOTE_S, sr)
    c = melody.chroma(x, sr)
    n = len(x) * 32000 // sr
    assert c.shape == (1 + n // melody.HOP_LENGTH, 12)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c.sum(axis=1), 1.0)  # one-hot
    names = melody.pitch_classes(c)
    assert majority_per_note(names, len(SCALE)) == ["C", "D", "E", "F", "G", "A", "B", "C"]


def test_chroma_input_shapes_and_channels():
    x = audio.melody_tone(["E4", "G4"], 0.5, 32000)
    mono = melody.chroma(x, 32000)
    stereo = melody.chroma(np.stack([x, x]), 32000)
    np.testing.assert_array_equal(mono, stereo)
    np.testing.assert_array_equal(mono, melody.chroma(torch.from_numpy(x), 32000))
    other = audio.melody_tone(["A4", "A4"], 0.5, 32000)
    batch = melody.chroma(np.stack([x, other])[:, None], 32000)
    assert batch.shape == (2,) + mono.shape
    np.testing.assert_array_equal(batch[0], mono)
    assert set(melody.pitch_classes(batch[1])) == {"A"}


def test_short_audio_is_padded_to_one_window():
    x = audio.melody_tone(["D4"], 0.1, 32000)  # 3200 samples < n_fft
    c = melody.chroma(x, 32000)
    assert c.shape == (1 + melody.N_FFT // melody.HOP_LENGTH, 12)
    assert Counter(melody.pitch_classes(c)).most_common(1)[0][0] == "D"


def test_chroma_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        melody.chroma(np.array([0.0, np.nan] * 100), 32000)
    with pytest.raises(ValueError, match="^sr must be a positive integer"):
        melody.chroma(np.zeros(100), 0)


def test_similarity():
    a = melody.chroma(audio.melody_tone(SCALE, NOTE_S, 32000), 32000)
    b = melody.chroma(audio.melody_tone(SCALE[::-1], NOTE_S, 32000), 32000)
    assert melody.similarity(a, a) == pytest.approx(1.0)
    s = melody.similarity(a, b)
    assert isinstance(s, float) and 0.0 <= s < 0.5
    # trims to the shorter one
    assert melody.similarity(a, a[:5]) == pytest.approx(1.0)


def test_similarity_batch_and_known_value():
    x = np.eye(12)[[0, 4, 7, 0]]
    y = np.eye(12)[[0, 4, 9, 2]]
    assert melody.similarity(x, y) == pytest.approx(0.5)
    out = melody.similarity(np.stack([x, y]), x)
    np.testing.assert_allclose(out, [1.0, 0.5])
    np.testing.assert_allclose(melody.similarity(np.stack([x, y]), np.stack([y, y])), [0.5, 1.0])
    with pytest.raises(ValueError, match="same batch size"):
        melody.similarity(np.stack([x, y]), np.stack([x, y, x]))
    with pytest.raises(ValueError, match=r"a must be chroma \[frames, 12\]"):
        melody.similarity(np.zeros((4, 11)), x)


def test_pitch_classes():
    assert melody.PITCH_CLASSES[0] == "C" and len(melody.PITCH_CLASSES) == 12
    batch = np.stack([np.eye(12)[[1, 11]], np.eye(12)[[9, 9]]])
    assert melody.pitch_classes(batch) == [["C#", "B"], ["A", "A"]]


# ---------------------------------------------------------------------------- hardening
@pytest.mark.parametrize("scale", [1e17, 1e-30, 3.0e38 / 2])
def test_level_does_not_change_the_chroma(scale):
    x = audio.melody_tone(["E4", "G4", "B4", "D4"], 0.5, 32000)
    ref = melody.pitch_classes(melody.chroma(x, 32000))
    big = melody.chroma(x.astype(np.float64) * scale, 32000)
    assert melody.pitch_classes(big) == ref and ref[2] == "E"


def test_frames_computes_the_same_first_frames():
    x = audio.melody_tone(["C4", "E4", "G4", "A4"] * 5, 0.5, 44100)  # 10 s
    full = melody.chroma(x, 44100)
    for frames in (1, 2, 7, 40, len(full), len(full) + 10):
        part = melody.chroma(x, 44100, frames=frames)
        n = min(frames, len(full))
        np.testing.assert_array_equal(part, full[:n])
    with pytest.raises(ValueError, match="frames must be None or an int >= 1"):
        melody.chroma(x, 44100, frames=0)


def test_frames_bounds_the_work_for_a_wrong_rate():
    import time

    x = audio.sine(440, 1.0, 32000)
    t0 = time.perf_counter()
    c = melody.chroma(x, 8, frames=235)  # read at 8 Hz, x is 67 minutes long
    assert c.shape == (235, 12) and time.perf_counter() - t0 < 30
    with pytest.raises(ValueError, match="^melody_sr must be a positive integer"):
        melody.chroma(x, 0, name="melody")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_similarity_refuses_a_chroma_that_is_not_finite(bad):
    a = np.eye(12)[[0, 4, 7]]
    b = a.copy()
    b[1, 3] = bad
    with pytest.raises(ValueError, match="b holds NaN or inf"):
        melody.similarity(a, b)
    with pytest.raises(ValueError, match="a holds NaN or inf"):
        melody.similarity(b[None], a)
