"""Building and loading the kernels: the sources, the build folder, the locks, a full disk."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest
from _capped import on_small_disk

from musicgen_nb import _kernels as K
from musicgen_nb._kernels import build


@contextmanager
def _switch(monkeypatch, value):
    """``MUSICGEN_NB_KERNELS=value`` inside the block; after it, the kernels load again (so
    neither ``load()``'s cache nor ``status()`` keeps the switch for later tests)."""
    monkeypatch.setenv("MUSICGEN_NB_KERNELS", value)
    K.load.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv("MUSICGEN_NB_KERNELS")
        K.load.cache_clear()
        K.load()


def test_turned_off_by_environment(monkeypatch):
    with _switch(monkeypatch, "0"):
        assert K.load() is False and "MUSICGEN_NB_KERNELS=0" in K.status()["reason"]
    assert "MUSICGEN_NB_KERNELS" not in K.status()["reason"]


def test_a_build_killed_midway_does_not_block_later_processes(kernel, tmp_path):
    """kill -9 during the first build leaves torch's `lock` file behind; before, every later
    process waited on it forever. Two processes started together now both load the kernel."""
    import os
    import subprocess
    import sys

    built = build.build_dir()
    copy = tmp_path / "kernels" / built.name
    shutil.copytree(built, copy)
    (copy / "lock").write_text("")  # what a build killed mid-way leaves
    env = dict(os.environ, MUSICGEN_NB_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    code = "from musicgen_nb import _kernels as K; print(K.load(), K.status()['reason'])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert out.startswith("True") and str(copy) in out, out
    assert not (copy / "lock").exists()


FULL_DISK = """import os, sys
from musicgen_nb import _kernels as K
print("LOADED", K.load())
print("REASON", K.status()["reason"])
print("FILES", sorted(f for _, _, fs in os.walk(sys.argv[1]) for f in fs))
"""


def test_full_disk_falls_back_and_leaves_no_half_written_source(tmp_path):
    """The build's source copy does not fit: load() says why, fbgemm and PyTorch run instead,
    and no temporary copy is left."""
    _, lines = on_small_disk(tmp_path, "16k", FULL_DISK, env="MUSICGEN_NB_CACHE={mnt}")
    assert lines["LOADED"] == "False"
    assert "no space left on device writing" in lines["REASON"], lines["REASON"]
    assert eval(lines["FILES"]) == []  # no source, and no temporary copy, half-written


def test_sources_are_the_shipped_files():
    """The build reads the real C++ files of the package: one .cpp per op and their header."""
    texts = build.sources()
    assert sorted(texts) == ["attend_cross.cpp", "attend_int8.cpp", "common.h", "linear_int8.cpp"]
    for name, text in texts.items():
        assert text == (build.CSRC / name).read_text()
    for op in ("attend_int8", "linear_int8", "attend_cross"):
        assert f'm.impl("{op}", &{op})' in texts[f"{op}.cpp"]


def test_build_dir_is_keyed_by_the_source_texts(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(tmp_path))
    texts = build.sources()
    here = build.build_dir(texts)
    assert here.parent == tmp_path / "kernels" and here == build.build_dir()
    changed = dict(texts, **{"common.h": texts["common.h"] + "// changed\n"})
    assert build.build_dir(changed) != here
    renamed = {("x" + k if k == "common.h" else k): v for k, v in texts.items()}
    assert build.build_dir(renamed) != here


def test_the_build_folder_holds_the_sources(kernel):
    built = build.build_dir()
    assert K.status()["reason"] == f"built in {built}"
    for name, text in build.sources().items():
        assert (built / name).read_text() == text


def test_missing_sources_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "CSRC", tmp_path)
    with pytest.raises(FileNotFoundError, match="no C\\+\\+ sources in .*installed without them"):
        build.sources()


@pytest.mark.parametrize("value", ["false", "OFF", "no", " 0 "])
def test_every_spelling_of_off_turns_the_kernels_off(monkeypatch, value):
    """Before, only "0" did: false/off/no were ignored and the kernels ran."""
    with _switch(monkeypatch, value):
        assert K.load() is False
        assert K.status()["reason"] == f"turned off by MUSICGEN_NB_KERNELS={value}"


def test_a_switch_value_it_does_not_know_is_refused_by_name(monkeypatch):
    with (
        _switch(monkeypatch, "maybe"),
        pytest.raises(ValueError, match=r"MUSICGEN_NB_KERNELS must be 0/false/off/no.*'maybe'"),
    ):
        K.load()


def test_a_cache_that_is_a_file_is_named(monkeypatch, tmp_path):
    """Before: a bare FileExistsError from mkdir."""
    afile = tmp_path / "cache"
    afile.write_text("")
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(afile))
    K.load.cache_clear()
    try:
        with pytest.raises(ValueError, match="MUSICGEN_NB_CACHE=.* is a file, not a folder"):
            K.load()
    finally:
        K.load.cache_clear()


TRUNCATED = """import sys
from musicgen_nb import _kernels as K
import torch
print("LOADED", K.load())
print("REASON", K.status()["reason"])
if K.load():
    q, k = torch.randn(2, 64), torch.randn(2, 4, 3, 16)
    print("RAN", tuple(torch.ops.musicgen_nb.attend_cross(q, k, k, None, 0.25).shape))
"""


def _damaged_copy(tmp_path):
    """A copy of the built kernels in tmp_path, its library cut to half (what a full disk leaves)."""
    built = build.build_dir()
    copy = tmp_path / "kernels" / built.name
    shutil.copytree(built, copy)
    lib = copy / build.LIBRARY
    whole = lib.read_bytes()
    lib.write_bytes(whole[: len(whole) // 2])
    return copy, lib, len(whole)


def _run(tmp_path, **env):
    import os
    import subprocess
    import sys

    env = dict(os.environ, MUSICGEN_NB_CACHE=str(tmp_path), OMP_NUM_THREADS="1", **env)
    proc = subprocess.run(
        [sys.executable, "-c", TRUNCATED], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # -7 was SIGBUS
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def test_a_truncated_library_is_rebuilt_not_loaded(kernel, tmp_path):
    """Before: every int8 process died of SIGBUS, silently, until the cache was cleared by hand."""
    copy, lib, size = _damaged_copy(tmp_path)
    assert "truncated" in build.check_library(lib)
    out = _run(tmp_path)
    assert out["LOADED"] == "True" and out["RAN"] == "(2, 64)", out
    assert build.check_library(lib) is None  # rebuilt, and recorded beside it
    stamp = lib.with_name(lib.name + ".check")
    assert stamp.exists() and str(lib.stat().st_size) in stamp.read_text()
    assert not [p for p in copy.iterdir() if p.name.startswith(".") and "check" in p.name]


def test_a_damaged_library_that_cannot_be_rebuilt_is_refused_with_a_message(kernel, tmp_path):
    """No compiler to relink it: the library is not loaded, and the reason names it."""
    _, lib, _ = _damaged_copy(tmp_path)
    out = _run(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert out["LOADED"] == "False"
    assert f"the built kernel library {lib} was damaged (" in out["REASON"], out
    assert "and rebuilding it failed" in out["REASON"]
    assert not lib.exists()


def test_a_library_that_differs_from_its_record_is_refused(kernel, tmp_path):
    built = build.build_dir()
    lib = tmp_path / build.LIBRARY
    shutil.copy(built / build.LIBRARY, lib)
    assert build.check_library(lib) is None  # no record: the ELF structure is whole
    (tmp_path / (build.LIBRARY + ".check")).write_text('{"size": 1, "sha256": "x"}')
    assert "bytes where 1 were built" in build.check_library(lib)
    (tmp_path / (build.LIBRARY + ".check")).write_text("{")
    assert "damaged" in build.check_library(lib)


def test_a_record_hashes_the_library_once(kernel, tmp_path, monkeypatch):
    lib = tmp_path / build.LIBRARY
    shutil.copy(build.build_dir() / build.LIBRARY, lib)
    hashed = []
    real = build.sha256_file
    monkeypatch.setattr(build, "sha256_file", lambda p: hashed.append(p) or real(p))
    build._record(lib)
    build._record(lib)  # a record there already: one hash again (it was 2 more)
    assert len(hashed) == 2 and build.check_library(lib) is None


def test_loading_a_library_built_earlier_writes_no_record(kernel, tmp_path):
    """Only the process that builds (or relinks) the library records it: a load of the
    shared cache's library by a test or a notebook writes nothing there."""
    built = build.build_dir()
    copy = tmp_path / "kernels" / built.name
    shutil.copytree(built, copy)
    lib, stamp = copy / build.LIBRARY, copy / (build.LIBRARY + ".check")
    stamp.unlink(missing_ok=True)
    before = (lib.stat().st_ino, lib.stat().st_mtime_ns)
    out = _run(tmp_path)
    assert out["LOADED"] == "True", out
    rebuilt = (lib.stat().st_ino, lib.stat().st_mtime_ns) != before
    assert stamp.exists() == rebuilt
