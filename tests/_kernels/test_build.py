"""Building and loading the kernels: the sources, the build folder, the locks, a full disk."""

from __future__ import annotations

import shutil

import pytest
from _capped import on_small_disk

from musicgen_nb import _kernels as K
from musicgen_nb._kernels import build


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_KERNELS", "0")
    K.load.cache_clear()
    try:
        assert K.load() is False and "MUSICGEN_NB_KERNELS=0" in K.status()["reason"]
    finally:
        monkeypatch.delenv("MUSICGEN_NB_KERNELS")
        K.load.cache_clear()
    K.load()


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
