"""Tests for musicgen_nb.audio.io: reading, encoding and atomic writing of audio files."""

import numpy as np
import pytest
import soundfile as sf

from musicgen_nb import audio
from musicgen_nb.audio.io import check_readable, resolve_format, wav_declared_frames


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


def test_resolve_format_adds_or_checks_the_suffix(tmp_path):
    assert resolve_format(tmp_path / "a", "FLAC") == (tmp_path / "a.flac", "flac")
    assert resolve_format(tmp_path / "a.wav", None) == (tmp_path / "a.wav", "wav")
    with pytest.raises(ValueError, match=r"has no suffix; pass fmt= one of \['wav', 'flac'\]"):
        resolve_format(tmp_path / "a", None)


def test_wav_declared_frames_reads_the_header(tmp_path):
    p = audio.write(tmp_path / "a.wav", np.zeros((2, 123)), 8000)
    assert wav_declared_frames(p) == 123
    assert wav_declared_frames(audio.write(tmp_path / "a.flac", np.zeros(10), 8000)) is None
    assert wav_declared_frames(tmp_path / "missing.wav") is None


def test_check_readable_names_the_argument(tmp_path):
    p = audio.write(tmp_path / "a.wav", np.zeros(10), 8000)
    assert check_readable(str(p)) == p
    with pytest.raises(TypeError, match="audio_prompt must be a file path"):
        check_readable(3, "audio_prompt")


def test_write_never_overwrites_and_leaves_no_temp_when_a_file_appears(tmp_path, monkeypatch):
    """Someone creates the name between the check and the claim: their file is kept."""
    from musicgen_nb.audio import io as audio_io

    target = tmp_path / "a.wav"
    real_encode = audio_io.encode

    def encode_then_race(*args, **kwargs):
        data = real_encode(*args, **kwargs)
        target.write_bytes(b"theirs")
        return data

    monkeypatch.setattr(audio_io, "encode", encode_then_race)
    with pytest.raises(FileExistsError):
        audio.write(target, np.zeros(10), 8000)
    assert target.read_bytes() == b"theirs"
    assert [q.name for q in tmp_path.iterdir()] == ["a.wav"]
