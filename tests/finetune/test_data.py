"""Fine-tuning datasets: checked files, windows of codes, the disk cache of codes."""

from __future__ import annotations

import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import finetune as FT


def _write(path, seconds=1.5, sr=32000, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    mg.audio.write(path, (amp * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)


def test_bad_files_are_named_and_skipped_unless_strict(tmp_path):
    _write(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    _write(tmp_path / "quiet.wav", amp=0.0)
    _write(tmp_path / "short.wav", seconds=0.2)
    _write(tmp_path / "nocap.wav")
    for n in ("good", "broken", "quiet", "short"):
        (tmp_path / f"{n}.txt").write_text(f"{n} caption")
    with pytest.warns(UserWarning) as rec:
        data = FT.dataset(tmp_path)
    assert [i.file.name for i in data.items] == ["good.wav"]
    reasons = dict(data.skipped)
    assert reasons["broken.wav"].startswith("unreadable")
    assert reasons["quiet.wav"].startswith("silent")
    assert reasons["short.wav"].startswith("too short")
    assert reasons["nocap.wav"].startswith("no caption")
    assert len(rec) == 4 and all(any(n in str(w.message) for n in reasons) for w in rec)
    with pytest.raises(FT.DataError, match="broken.wav: unreadable"):
        FT.dataset(tmp_path, strict=True)
    (tmp_path / "good.wav").unlink()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable file"):
        FT.dataset(tmp_path)


def test_skip_warnings_point_at_the_caller(tmp_path):
    _write(tmp_path / "good.wav")
    _write(tmp_path / "nocap.wav")
    (tmp_path / "good.txt").write_text("caption")
    with pytest.warns(UserWarning, match="nocap.wav") as rec:
        FT.dataset(tmp_path)
    assert rec[0].filename == __file__


def test_metadata_errors_name_the_problem(tmp_path):
    _write(tmp_path / "a.wav")
    (tmp_path / "metadata.csv").write_text("path,caption\na.wav,x\n")
    with pytest.raises(ValueError, match="'file_name' and 'text'"):
        FT.dataset(tmp_path)
    (tmp_path / "metadata.csv").write_text("file_name,text\na.wav,x\nmissing.wav,y\n")
    with pytest.warns(UserWarning, match="missing.wav"):
        assert len(FT.dataset(tmp_path)) == 1
    with pytest.raises(ValueError, match="hop must be at most"):
        FT.dataset(tmp_path, window=1.0, hop=2.0)
    with pytest.raises(ValueError, match="folder must be a directory"):
        FT.dataset(tmp_path / "nope")


def test_dataset_arguments_name_themselves(tmp_path):
    _write(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(TypeError, match="folder must be a path"):
        FT.dataset(3)
    with pytest.raises(ValueError, match="window must be a positive number or None, got -1"):
        FT.dataset(tmp_path, window=-1)
    with pytest.raises(TypeError, match="strict must be True or False"):
        FT.dataset(tmp_path, strict="yes")
    with pytest.raises(ValueError, match="min_duration must be a positive number, got 0"):
        FT.dataset(tmp_path, min_duration=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no audio files"):
        FT.dataset(tmp_path / "empty")


def test_encode_resamples_windows_and_caches(s, tmp_path):
    d, cache = tmp_path / "d", tmp_path / "cache"
    d.mkdir()
    sr = 16000
    wav = mg.audio.melody_tone(["C4", "E4", "G4"] * 2, 0.5, sr)  # 3 s at 16 kHz
    mg.audio.write(d / "x.wav", wav, sr)
    (d / "x.txt").write_text("tune")
    data = FT.dataset(d, window=1.0, hop=0.5, cache_dir=cache)
    wins = data.encode(s)
    full = s.encode(mg.audio.load(d / "x.wav", sr=s.sample_rate)[0], s.sample_rate)[0]
    assert full.shape[-1] == 150
    assert [w.start for w in wins] == [0, 25, 50, 75, 100]
    for w in wins:
        assert w.codes.shape == (4, 50) and w.text == "tune" and w.file == "x.wav"
        np.testing.assert_array_equal(w.codes, full[:, w.start : w.start + 50])
    cached = cache / FT.codec_key(s) / f"{data.items[0].sha256}.npy"
    assert cached.exists()
    stamp = cached.stat().st_mtime_ns
    again = FT.dataset(d, window=1.0, hop=0.7, cache_dir=cache).encode(s)  # read back, new hop
    assert cached.stat().st_mtime_ns == stamp
    assert [w.start for w in again] == [0, 35, 70, 100]
    np.testing.assert_array_equal(again[-1].codes, full[:, 100:])
    with pytest.raises(ValueError, match="at most the model's window"):
        FT.dataset(d, window=10.0, cache_dir=cache).encode(s)


def test_silence_db_and_max_duration_are_checked_by_name(tmp_path):
    _write(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(TypeError, match="silence_db must be a number"):
        FT.dataset(tmp_path, silence_db="x")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="silence_db must be a finite number"):
            FT.dataset(tmp_path, silence_db=bad)
    with pytest.raises(ValueError, match=r"silence_db must be a level in dBFS, <= 0"):
        FT.dataset(tmp_path, silence_db=6)
    with pytest.raises(ValueError, match="max_duration must be a positive number"):
        FT.dataset(tmp_path, max_duration=float("nan"))
    with pytest.raises(ValueError, match=r"max_duration must be at least min_duration \(1 s\)"):
        FT.dataset(tmp_path, max_duration=0.5)


def test_a_long_file_is_refused_up_front_not_in_encode(tmp_path):
    _write(tmp_path / "a.wav")
    _write(tmp_path / "long.wav", seconds=4.0)
    (tmp_path / "metadata.csv").write_text("file_name,text\na.wav,x\nlong.wav,y\n")
    with pytest.warns(UserWarning, match=r"skipping long.wav: too long \(4 s; max_duration is 3 s"):
        data = FT.dataset(tmp_path, max_duration=3.0)
    assert [i.file.name for i in data.items] == ["a.wav"]


def test_a_file_that_fails_to_encode_is_named(s, tmp_path):
    _write(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("x")
    data = FT.dataset(tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "a.wav").write_bytes(b"RIFF garbage")  # damaged after the check
    with pytest.raises(FT.DataError, match=r"^a.wav: could not encode it"):
        data.encode(s)


@pytest.mark.parametrize("damage", ["truncated", "pickle", "wrong codes", "empty"])
def test_a_damaged_code_cache_is_named_and_rebuilt(s, tmp_path, damage):
    d, cache = tmp_path / "d", tmp_path / "cache"
    d.mkdir()
    _write(d / "x.wav")
    (d / "x.txt").write_text("tune")
    data = FT.dataset(d, cache_dir=cache)
    want = [w.codes for w in data.encode(s)]
    cached = cache / FT.codec_key(s) / f"{data.items[0].sha256}.npy"
    good = cached.read_bytes()
    if damage == "truncated":
        cached.write_bytes(good[: len(good) // 2])
    elif damage == "pickle":
        np.save(cached, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "wrong codes":
        np.save(cached, np.full((4, 10), 99999, dtype=np.int64))
    else:
        cached.write_bytes(b"")
    fresh = FT.dataset(d, cache_dir=cache)
    with pytest.warns(UserWarning, match=rf"the code cache file {cached} is damaged") as rec:
        got = [w.codes for w in fresh.encode(s)]
    assert rec[0].filename == __file__
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert cached.read_bytes() == good  # rebuilt
