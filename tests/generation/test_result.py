"""Tests for musicgen_nb.generation.result: the Generation and saving it with provenance."""

import json

import numpy as np
import pytest
from _capped import on_small_disk

import musicgen_nb as mg


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


def test_save_writes_files_and_provenance(tiny, tmp_path):
    g = tiny.generate(["jazz trio", "rock"], duration=1, seed=4, progress=False)
    paths = g.save(tmp_path)
    assert [p.suffix for p in paths] == [".wav", ".wav"]
    import soundfile as sf

    data, sr = sf.read(paths[0], always_2d=True)
    assert sr == 32000 and data.shape[0] == 32000
    meta = json.loads(paths[0].with_suffix(".json").read_text())
    assert meta["prompt"] == "jazz trio" and meta["seed"] == 4 and meta["model"] == "tiny"
    assert meta["params"]["guidance_scale"] == 3.0 and meta["params"]["top_k"] == 250
    assert {"musicgen_nb", "transformers", "torch"} <= set(meta["versions"])
    assert len(meta["sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_never_overwrites(tiny, tmp_path):
    g = gen(tiny, duration=0.5)
    first = g.save(tmp_path)[0]
    before = first.read_bytes()
    second = g.save(tmp_path)[0]
    assert first != second and second.exists() and first.read_bytes() == before
    assert second.with_suffix(".json").exists()


def test_save_flac_and_loudness(tiny, tmp_path):
    g = gen(tiny, duration=1)
    path = g.save(tmp_path, fmt="flac", loudness=-14.0)[0]
    assert path.suffix == ".flac"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["loudness_lufs"] == -14.0
    with pytest.raises(ValueError, match="fmt must be one of"):
        g.save(tmp_path, fmt="mp3")


def test_repr_and_html(tiny):
    g = gen(tiny, duration=0.5)
    assert "Generation(1 x 0.50 s" in repr(g)
    html = g._repr_html_()
    assert "<audio" in html and "jazz" in html


def fake(audio_seconds=0.5, batch=1, prompts=None, **kw):
    """A Generation without a model: saving does not need one."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((batch, 1, int(32000 * audio_seconds))) * 0.1).astype(np.float32)
    return mg.Generation(
        audio=audio, sample_rate=32000, codes=np.zeros((batch, 4, 1), dtype=np.int64),
        prompts=prompts or ["x"] * batch, params={}, seed=1, timings={}, **kw,
    )  # fmt: skip


def pairs_ok(folder):
    """Every audio file has its sidecar, every sidecar names its audio, and no temp is left."""
    names = {p.name for p in folder.iterdir()}
    audio = {n for n in names if n.endswith((".wav", ".flac"))}
    side = {n for n in names if n.endswith(".json")}
    for a in audio:
        stem = a.rsplit(".", 1)[0]
        assert f"{stem}.json" in side, f"{a} has no sidecar"
        assert json.loads((folder / f"{stem}.json").read_text())["file"] == a
    return audio, side, [n for n in names if n.startswith(".")]


def test_save_wav_then_flac_never_orphans(tiny, tmp_path):
    g = gen(tiny, duration=0.1)
    wav = g.save(tmp_path)[0]
    flac = g.save(tmp_path, fmt="flac")[0]
    assert (wav.name, flac.name) == ("jazz_seed1.wav", "jazz_seed1-1.flac")
    audio, side, temps = pairs_ok(tmp_path)
    assert len(audio) == len(side) == 2 and temps == []
    (tmp_path / "other.json").write_text("{}")  # a stray sidecar name blocks its audio name too
    from musicgen_nb.audio import unique_path

    assert unique_path(tmp_path / "other.wav", companions=[".json"]).name == "other-1.wav"


def test_save_files_follow_the_umask(tmp_path):
    import os

    for mask in (0o022, 0o077, 0o002):
        old = os.umask(mask)
        try:
            paths = fake().save(tmp_path / oct(mask))
        finally:
            os.umask(old)
        for p in (paths[0], paths[0].with_suffix(".json")):
            assert p.stat().st_mode & 0o777 == 0o666 & ~mask, (p, oct(p.stat().st_mode))


def test_interrupted_generation_is_saved_as_partial(tmp_path):
    path = fake(interrupted=True).save(tmp_path)[0]
    assert path.name == "x_seed1_partial.wav"
    assert json.loads(path.with_suffix(".json").read_text())["interrupted"] is True


def test_nothing_to_save_is_said(tmp_path):
    with pytest.raises(ValueError, match="nothing to save: .*interrupted before its first"):
        fake(audio_seconds=0, interrupted=True).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_checks_its_arguments_before_writing(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="directory .*file' is a file, not a folder"):
        fake().save(f)
    with pytest.raises(ValueError, match=r"loudness must be a loudness in LUFS <= 0.*got 5.0"):
        fake().save(tmp_path / "d", loudness=5)
    with pytest.raises(TypeError, match="loudness must be a number"):
        fake().save(tmp_path / "d", loudness="-14")
    with pytest.raises(TypeError, match="directory must be a file path"):
        fake().save(None)
    with pytest.raises(ValueError, match="directory is an empty string; give a folder"):
        fake().save("")
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


SAVER = """
import sys, time, numpy as np, musicgen_nb as mg
from pathlib import Path
folder, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
g = mg.Generation(audio=np.zeros((1, 1, 3200), np.float32), sample_rate=32000,
                  codes=np.zeros((1, 4, 1), np.int64), prompts=["x"], params={}, seed=1, timings={})
g.save(folder.parent / "warm")  # the first save imports the audio libraries
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for _ in range(n):
    print(g.save(folder, fmt="wav" if _ % 2 else "flac")[0].name, flush=True)
"""


def test_concurrent_saves_to_one_folder_all_succeed(tmp_path):
    import subprocess
    import sys

    folder, go = tmp_path / "out", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(folder), str(go), "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    for p in procs:  # every process is at the start line
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    names = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        names += out.split()
    assert len(names) == 80 and len(set(names)) == 80
    audio, side, temps = pairs_ok(folder)
    assert len(audio) == len(side) == 80 and temps == []


KILLER = """
import sys, numpy as np, musicgen_nb as mg
g = mg.Generation(audio=np.random.default_rng(0).standard_normal((4, 1, 32000 * 5)).astype(np.float32) * 0.1,
                  sample_rate=32000, codes=np.zeros((4, 4, 1), np.int64), prompts=["a", "b", "c", "d"],
                  params={}, seed=1, timings={})
g.save(sys.argv[2], fmt="flac")  # warm up: the first save imports the audio libraries
print("ready", flush=True)
while True:
    g.save(sys.argv[1], fmt="flac")
"""


def test_kill_9_mid_save_never_leaves_audio_without_sidecar(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "out"
    folder.mkdir()
    rng = random.Random(0)
    mid_save = kills = 0
    # Kill until two kills have landed mid-save (a kill between saves proves nothing);
    # the invariant is checked after every kill.
    while mid_save < 2 and kills < 40:
        kills += 1
        p = subprocess.Popen(
            [sys.executable, "-c", KILLER, str(folder), str(tmp_path / "warm")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        temps_before = len(pairs_ok(folder)[2])  # checked after every kill
        mid_save += temps_before > 0
    audio, _, temps = pairs_ok(folder)
    assert len(audio) > 0 and mid_save >= 1 and temps, f"{mid_save} of {kills} kills mid-save"


NOSPACE = """import sys, numpy as np, musicgen_nb as mg, os
g = mg.Generation(audio=np.random.default_rng(0).standard_normal((1, 1, 32000)).astype(np.float32) * 0.1,
                  sample_rate=32000, codes=np.zeros((1, 4, 1), np.int64), prompts=["x"], params={},
                  seed=1, timings={})
saved = []
try:
    for _ in range(5):
        saved += g.save(sys.argv[1])
except OSError as e:
    assert e.errno == 28
    print("ERROR", e)
print("SAVED", len(saved))
print("FILES", sorted(os.listdir(sys.argv[1])))
"""


def test_full_disk_says_no_space_names_the_path_and_cleans_up(tmp_path):
    mnt, lines = on_small_disk(tmp_path, "96k", NOSPACE)
    assert lines["ERROR"].startswith("no space left on device writing ")
    assert str(mnt) in lines["ERROR"] and "x_seed1" in lines["ERROR"]
    files = eval(lines["FILES"])
    assert not [f for f in files if f.startswith(".")]  # no temp files
    stems = {f.rsplit(".", 1)[0] for f in files}
    assert len(files) == 2 * int(lines["SAVED"]) == 2 * len(stems)  # only complete pairs


def test_per_item_seeds_in_provenance_and_files(tiny, tmp_path):
    g = tiny.generate(["jazz", "rock"], seed=[5, 9], duration=0.5, progress=False)
    assert [g.provenance(i)["seed"] for i in range(2)] == [5, 9]
    paths = g.save(tmp_path)
    assert [p.name for p in paths] == ["jazz_seed5_0.wav", "rock_seed9_1.wav"]
    assert json.loads(paths[1].with_suffix(".json").read_text())["seed"] == 9


def test_html_comes_from_the_display_registry():
    from musicgen_nb._util import display

    before = display.renderer("generation")
    try:
        display.register("generation", lambda g: f"<p>{len(g)} item(s)</p>")
        assert fake(batch=2)._repr_html_() == "<p>2 item(s)</p>"
    finally:
        if before is not None:
            display.register("generation", before)


def test_versions_and_check_save(tmp_path):
    from musicgen_nb._version import __version__
    from musicgen_nb.generation import FORMATS, check_save, versions

    v = versions()
    assert v["musicgen_nb"] == __version__ and {"torch", "transformers", "numpy", "python"} <= set(
        v
    )
    folder, fmt, loudness = check_save(tmp_path / "new" / "dir", "flac", -14)
    assert folder.is_dir() and (fmt, loudness) == ("flac", -14.0) and FORMATS == ("wav", "flac")
    with pytest.raises(ValueError, match=r"--format must be one of \['wav', 'flac'\], got 'ogg'"):
        check_save(tmp_path, "ogg", names={"fmt": "--format"})
