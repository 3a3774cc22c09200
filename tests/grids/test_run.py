"""run_grid on this machine: files and manifest, resumed runs, metrics, bad input, the CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _grids import ROOT, check_run, small_grid

import musicgen_nb as mg
from musicgen_nb.grids.batch import GridInterrupted

SPEC = """\
model: tiny
batch_size: 4
prompts: [jazz, rock]
seed: [1, 2]
guidance_scale: [1.0, 3.0]
duration: 0.5
"""


def test_run_grid_writes_files_and_manifest(tiny, tmp_path, capsys):
    g = small_grid()
    m = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=4)
    check_run(tmp_path, m)
    assert m["clip_id"].tolist() == g["clip_id"].tolist()
    assert (m["duration_s"] == 0.5).all() and (m["sample_rate"] == 32000).all()
    assert m["batch_size"].tolist() == [4] * 8
    for col in ("text_encode_s", "decode_loop_s", "codec_decode_s", "steps_per_s", "seconds"):
        assert (m[col] > 0).all(), col
    assert m["version_musicgen_nb"].iloc[0] == mg.__version__
    assert m["version_torch"].iloc[0]
    # the file holds the clip generate() gives alone, as 16-bit PCM
    row = m.iloc[5]
    alone = tiny.generate(row.prompt, seed=int(row.seed), guidance_scale=row.guidance_scale,
                          duration=0.5, progress=False)  # fmt: skip
    wav, sr = mg.audio.load(tmp_path / row.path)
    np.testing.assert_allclose(wav, alone.audio[0], atol=1 / 32767)
    assert hashlib.sha256(alone.codes[0].tobytes()).hexdigest() == row.codes_sha256
    err = capsys.readouterr().err
    assert "grid" in err and "8/8" in err and "clip" in err  # one bar over clips


def test_sha256_does_not_depend_on_batch_size(tiny, tmp_path):
    g = small_grid()
    a = mg.run_grid(g, model=tiny, out=tmp_path / "a", batch_size=1, progress=False)
    b = mg.run_grid(g, model=tiny, out=tmp_path / "b", batch_size=8, progress=False)
    assert a["sha256"].tolist() == b["sha256"].tolist()
    assert a["codes_sha256"].tolist() == b["codes_sha256"].tolist()


def test_rerun_generates_only_missing_rows(tiny, tmp_path):
    g = small_grid()
    first = mg.run_grid(g.iloc[:5], model=tiny, out=tmp_path, batch_size=2, progress=False)
    again = mg.run_grid(g.iloc[:5], model=tiny, out=tmp_path, batch_size=2, progress=False)
    pd.testing.assert_frame_equal(first, again)  # nothing regenerated
    full = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=2, progress=False)
    check_run(tmp_path, full)
    assert full["run_id"].iloc[:5].nunique() == 1 and full["run_id"].iloc[5:].nunique() == 1
    assert full["run_id"].iloc[0] != full["run_id"].iloc[-1]
    assert full["sha256"].iloc[:5].tolist() == first["sha256"].tolist()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(backend="spark"), ValueError, "backend must be one of"),
        (dict(batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
        (dict(fmt="mp3"), ValueError, "fmt must be one of"),
        (dict(address="auto"), ValueError, "address= is for backend='ray'"),
        (dict(workers=2), ValueError, "workers= is for backend='ray'"),
        (dict(backend="ray", workers=0), ValueError, "workers must be None or an int >= 1"),
        (dict(metrics=["fad"]), ValueError, "unknown metric 'fad'"),
        (dict(model=3), TypeError, "model must be a checkpoint name or a MusicGen session"),
    ],
)
def test_run_grid_bad_input(tmp_path, kwargs, exc, match):
    kwargs = dict(model="tiny", out=tmp_path, progress=False) | kwargs
    with pytest.raises(exc, match=match):
        mg.run_grid(small_grid(), **kwargs)


def test_metrics_fill_columns_and_are_added_on_rerun(tiny, tmp_path):
    g = mg.grid(["jazz", None], seed=[1], duration=0.5)
    m = mg.run_grid(g, model=tiny, out=tmp_path, metrics=["loudness"], progress=False)
    for rec in m.itertuples():
        wav, sr = mg.audio.load(tmp_path / rec.path)
        assert rec.loudness == pytest.approx(mg.audio.loudness(wav, sr))
    clap = mg.metrics.metric("clap_score", model="tiny-clap")
    m2 = mg.run_grid(g, model=tiny, out=tmp_path, metrics=[clap], progress=False)
    assert m2["run_id"].tolist() == m["run_id"].tolist()  # no clip generated again
    wav, sr = mg.audio.load(tmp_path / m2["path"][0])
    assert m2["clap_score"][0] == pytest.approx(
        mg.metrics.clap_score(wav, sr, ["jazz"], model="tiny-clap")[0]
    )
    assert np.isnan(m2["clap_score"][1])  # unconditional: no text to score
    assert m2["loudness"].tolist() == m["loudness"].tolist()


# --------------------------------------------------------------------------- CLI
def test_cli_grid_matches_the_python_call(tiny, tmp_path):
    from musicgen_nb.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["grid", str(spec), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    m = pd.read_csv(tmp_path / "cli" / "manifest.csv")
    ref = mg.run_grid(small_grid(), model=tiny, out=tmp_path / "py", progress=False)
    assert m["sha256"].tolist() == ref["sha256"].tolist()


def test_cli_grid_errors_are_one_line(tmp_path, capsys):
    from musicgen_nb.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("model: tiny\nprompts: [a]\nguidance: [1, 2]\n")
    assert main(["grid", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown grid parameter 'guidance'" in capsys.readouterr().err


# --------------------------------------------------------------------------- interrupts
def _long_rows(n_long=3, long=3.0):
    """One short row first (its clip journaled quickly), then long ones an interrupt lands in."""
    rows = [dict(prompt="jazz", seed=1, duration=0.5)]
    rows += [dict(prompt=f"rock {i}", seed=i, duration=long) for i in range(n_long)]
    return mg.grid(rows=rows)


def _journaled(out):
    path = out / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _full_length(out, recs):
    for rec in recs:
        info = sf.info(out / rec["path"])
        assert info.frames == round(rec["duration"] * info.samplerate), rec["path"]


def test_a_stopped_grid_saves_no_short_clip_and_resumes(tiny, tmp_path):
    g = _long_rows()
    stop = threading.Event()

    def stop_after_first_clip():
        while not _journaled(tmp_path) and not done.is_set():
            time.sleep(0.01)
        stop.set()

    done = threading.Event()
    watcher = threading.Thread(target=stop_after_first_clip)
    watcher.start()
    try:
        with pytest.raises(
            GridInterrupted, match=r"interrupted while generating 1 clip\(s\) .*: not saved"
        ):
            mg.run_grid(g, model=tiny, out=tmp_path, batch_size=1, progress=False, stop=stop)
    finally:
        done.set()
        watcher.join()
    recs = _journaled(tmp_path)
    assert 1 <= len(recs) < len(g)
    _full_length(tmp_path, recs)
    assert pd.read_csv(tmp_path / "manifest.csv")["clip_id"].tolist() == [
        r["clip_id"] for r in recs
    ]
    m = mg.run_grid(g, model=tiny, out=tmp_path, batch_size=1, progress=False)  # the resume
    check_run(tmp_path, m)
    _full_length(tmp_path, _journaled(tmp_path))
    clean = mg.run_grid(g, model=tiny, out=tmp_path / "clean", batch_size=1, progress=False)
    assert m["sha256"].tolist() == clean["sha256"].tolist()


def test_ctrl_c_in_the_cli_exits_130_and_a_resume_regenerates(tiny, tmp_path):
    spec = tmp_path / "spec.yaml"
    rows = "".join(f"  - {{prompt: 'rock {i}', seed: {i}, duration: 4.0}}\n" for i in range(3))
    spec.write_text(
        "model: tiny\nbatch_size: 1\nrows:\n  - {prompt: jazz, seed: 1, duration: 0.5}\n" + rows
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "musicgen_nb.cli", "grid", str(spec), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=os.environ | {"PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    # the first clip's manifest is written last: from then on the run generates a 4 s clip
    last = out / ("manifest.parquet" if importlib.util.find_spec("pyarrow") else "manifest.csv")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "musicgen-nb: interrupted" in err and "Traceback" not in err
    recs = _journaled(out)
    assert 1 <= len(recs) < 4
    _full_length(out, recs)
    from musicgen_nb.cli import main

    assert main(["grid", str(spec), "--out", str(out), "--quiet"]) == 0
    m = pd.read_csv(out / "manifest.csv")
    assert len(m) == 4
    _full_length(out, _journaled(out))
    redone = m.loc[~m["clip_id"].isin([r["clip_id"] for r in recs]), "clip_id"]
    assert len(redone) == 4 - len(recs)


# --------------------------------------------------------------------------- metrics and settings
def test_a_metric_named_like_a_column_is_refused(tmp_path):
    def seed(audio, sr, prompt):
        return 1.0

    for metrics in ([seed], {"path": seed}, {"version_torch": seed}, {"standin": seed}):
        with pytest.raises(ValueError, match="is a manifest column; give the metric another name"):
            mg.run_grid(
                small_grid(), model="tiny", out=tmp_path / "o", metrics=metrics, progress=False
            )
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("value", ["loud", None, [1.0, 2.0], True])
def test_a_metric_returning_a_non_number_is_named(tiny, tmp_path, value):
    def label(audio, sr, prompt):
        return value

    with pytest.raises(
        TypeError, match=r"metric 'label' returned .* for clip [0-9a-f]{16} \('jazz', seed 1\)"
    ):
        mg.run_grid(small_grid().head(1), model=tiny, out=tmp_path, metrics=[label], progress=False)


def test_a_failing_metric_stops_the_run_after_one_batch(tiny, tmp_path):
    def label(audio, sr, prompt):
        return "loud"

    with pytest.raises(TypeError, match="metric 'label' returned str"):
        mg.run_grid(small_grid(), model=tiny, out=tmp_path, batch_size=1, metrics=[label],
                    progress=False)  # fmt: skip
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one clip made, not the 8 of the grid


def test_a_nan_metric_is_not_computed_again(tiny, tmp_path):
    calls = []

    def nothing(audio, sr, prompt):
        calls.append(prompt)
        return float("nan")

    g = small_grid().head(2)
    mg.run_grid(g, model=tiny, out=tmp_path, metrics=[nothing], progress=False)
    m = mg.run_grid(g, model=tiny, out=tmp_path, metrics=[nothing], progress=False)
    assert len(calls) == 2 and m["nothing"].isna().all()  # NaN is a value: kept on the rerun


def test_clap_score_without_its_model_fails_before_any_clip(tmp_path, monkeypatch):
    from musicgen_nb.checkpoints.loading import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache, whatever is cached
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("MUSICGEN_NB_STANDIN", raising=False)
    with pytest.raises(
        ModelUnavailableError, match="'laion/larger_clap_music' is not in the Hugging Face cache"
    ):
        mg.run_grid(
            small_grid(), model="tiny", out=tmp_path / "o", metrics=["clap_score"], progress=False
        )
    assert not (tmp_path / "o").exists()  # no clip was made


def test_a_local_grid_needs_no_pyarrow(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pyarrow"] = None  # as if pyarrow were not installed
        import musicgen_nb as mg
        m = mg.run_grid(mg.grid(["jazz"], seed=[1, 2], duration=0.5), model="tiny",
                        out={str(tmp_path)!r}, progress=False)
        print(len(m))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2"
    assert (
        len(pd.read_csv(tmp_path / "manifest.csv")) == 2
        and not (tmp_path / "manifest.parquet").exists()
    )


def test_nan_parameters_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="grid: temperature is NaN"):
        mg.run_grid(
            mg.grid(["a"], temperature=float("nan")), model="tiny", out=tmp_path, progress=False
        )
