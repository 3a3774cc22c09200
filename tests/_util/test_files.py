"""Tests for musicgen_nb._util.files: atomic writes, name claiming, free names, slugs, hashes."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from musicgen_nb import audio
from musicgen_nb._util import files
from musicgen_nb._util.files import (
    claim,
    disk_error,
    replace_dir,
    sha256_file,
    slug,
    unique_path,
    write_atomic,
    write_temp,
)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------------------- disk_error
def test_disk_error_says_full_disk_and_names_the_file(tmp_path):
    err = disk_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a.wav")
    assert str(err) == f"no space left on device writing {tmp_path / 'a.wav'}"
    assert err.errno == errno.ENOSPC
    quota = disk_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "b.wav")
    assert str(quota) == "disk quota exceeded writing b.wav" and quota.errno == errno.EDQUOT
    other = disk_error(PermissionError(errno.EACCES, "Permission denied"), "c.wav")
    assert isinstance(other, PermissionError)
    assert str(other) == "could not write c.wav: Permission denied" and other.errno == errno.EACCES


# ---------------------------------------------------------------------------- write_temp
def test_write_temp_writes_a_hidden_file_that_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        tmp = write_temp(tmp_path, "a.bin", b"abc")
    finally:
        os.umask(old)
    assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin.") and tmp.suffix == ".tmp"
    assert tmp.read_bytes() == b"abc" and tmp.stat().st_mode & 0o777 == 0o640
    assert write_temp(tmp_path, "a.bin", b"") != tmp  # a fresh name every time


def test_write_temp_on_a_full_disk_names_the_target_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError, match=f"no space left on device writing {tmp_path / 'a.bin'}"):
        write_temp(tmp_path, "a.bin", b"abc")
    assert list(tmp_path.iterdir()) == []


def test_write_temp_in_a_missing_folder_names_the_target(tmp_path):
    with pytest.raises(OSError, match=f"could not write {tmp_path / 'nope' / 'a.bin'}"):
        write_temp(tmp_path / "nope", "a.bin", b"abc")


# ---------------------------------------------------------------------------- claim
def test_claim_takes_a_free_name_and_refuses_a_taken_one(tmp_path):
    src = write_temp(tmp_path, "a", b"new")
    claim(src, tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == b"new"
    (tmp_path / "b").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        claim(src, tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"theirs"


def test_claim_without_hard_links_renames_into_an_exclusive_name(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    src = write_temp(tmp_path, "a", b"new")
    claim(src, tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == b"new" and not src.exists()
    (tmp_path / "b").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        claim(write_temp(tmp_path, "b", b"x"), tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"theirs"


# ---------------------------------------------------------------------------- write_atomic
def test_write_atomic_never_overwrites_without_overwrite(tmp_path):
    p = write_atomic(tmp_path / "a.json", "{}")
    assert p == tmp_path / "a.json" and p.read_text() == "{}"
    with pytest.raises(FileExistsError, match=r"a\.json' exists; pass overwrite=True"):
        write_atomic(p, "[]")
    assert p.read_text() == "{}"
    write_atomic(p, "[]", overwrite=True)
    assert p.read_text() == "[]"
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]


def test_write_atomic_keeps_a_file_created_meanwhile(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    real = files.write_temp

    def racing(directory, name, data):
        tmp = real(directory, name, data)
        target.write_text("theirs")  # another process takes the name now
        return tmp

    monkeypatch.setattr(files, "write_temp", racing)
    with pytest.raises(FileExistsError):
        write_atomic(target, "ours")
    assert target.read_text() == "theirs"
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left


def test_write_atomic_failure_leaves_no_temp_and_the_old_file(tmp_path, monkeypatch):
    p = write_atomic(tmp_path / "a.txt", "old")
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError, match="no space left on device writing"):
        write_atomic(p, "new", overwrite=True)
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]


def test_write_atomic_encodes_text_as_utf8(tmp_path):
    assert write_atomic(tmp_path / "é.txt", "naïve").read_bytes() == "naïve".encode()


# ---------------------------------------------------------------------------- replace_dir
def test_replace_dir_swaps_folders_and_leaves_no_old(tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "x").write_text("first")
    replace_dir(tmp_path / "t1", tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "x").read_text() == "first"
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "y").write_text("second")
    replace_dir(tmp_path / "t2", tmp_path / "ckpt")
    assert sorted(q.name for q in (tmp_path / "ckpt").iterdir()) == ["y"]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ckpt"]


# ---------------------------------------------------------------------------- names
def test_unique_path(tmp_path):
    p = tmp_path / "take.wav"
    assert audio.unique_path(p) == p
    p.touch()
    assert audio.unique_path(p) == tmp_path / "take-1.wav"
    (tmp_path / "take-1.wav").touch()
    assert audio.unique_path(p) == tmp_path / "take-2.wav"


def test_unique_path_counts_companions(tmp_path):
    assert audio.unique_path is unique_path  # the public name is this one
    (tmp_path / "b.json").touch()
    assert unique_path(tmp_path / "b.wav", companions=[".json"]) == tmp_path / "b-1.wav"
    assert unique_path(str(tmp_path / "b.wav")) == tmp_path / "b.wav"


def test_slug():
    assert slug("Lo-fi beat, 90 BPM!") == "lo-fi-beat-90-bpm"
    assert slug(None) == "unconditional" and slug("") == "unconditional"
    assert slug("!!!") == "prompt"
    assert slug("Jazz  Trio", limit=4) == "jazz" and slug("ab cd", limit=3) == "ab-"
    assert len(slug("x" * 100)) == 40


def test_sha256_file(tmp_path):
    p = tmp_path / "e"
    data = os.urandom(3 * 1024 + 7)
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p, chunk=1000) == hashlib.sha256(data).hexdigest()


def test_unique_path_names_a_bad_path():
    with pytest.raises(ValueError, match="path is an empty string; give a file path"):
        unique_path("")
    with pytest.raises(TypeError, match="path must be a file path"):
        unique_path(3)
