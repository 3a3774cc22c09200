"""run_grid on this machine: files and manifest, resumed runs, metrics, bad input, the CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from _grids import check_run, small_grid

import musicgen_nb as mg

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
    m = pd.read_parquet(tmp_path / "cli" / "manifest.parquet")
    ref = mg.run_grid(small_grid(), model=tiny, out=tmp_path / "py", progress=False)
    assert m["sha256"].tolist() == ref["sha256"].tolist()


def test_cli_grid_errors_are_one_line(tmp_path, capsys):
    from musicgen_nb.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("model: tiny\nprompts: [a]\nguidance: [1, 2]\n")
    assert main(["grid", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown grid parameter 'guidance'" in capsys.readouterr().err
