import json
import subprocess
import sys

import pytest

from musicgen_nb import cli


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "musicgen_nb.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_generate_writes_files_with_sidecars(tmp_path):
    out = tmp_path / "out"
    rc = cli.main(
        ["generate", "lo-fi beat", "jazz", "--model", "tiny", "--duration", "1", "--seed", "7",
         "--top-k", "50", "--guidance", "2.5", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 2
    metas = {m["prompt"]: m for m in (json.loads(w.with_suffix(".json").read_text()) for w in wavs)}
    assert metas["lo-fi beat"]["seed"] == 7 and metas["jazz"]["seed"] == 8  # item i: seed n + i
    meta = metas["jazz"]
    assert meta["params"]["top_k"] == 50 and meta["params"]["guidance_scale"] == 2.5


def test_errors_are_one_line_not_a_traceback(tmp_path):
    proc = run("generate", "x", "--model", "tiny", "--duration", "-1", "--out", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["musicgen-nb: error: duration must be > 0 seconds, got -1.0"]
    proc = run("generate", "x", "--model", "nonexistent-model")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("musicgen-nb: error: unknown model 'nonexistent-model'")


def test_models_lists_checkpoints(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "facebook/musicgen-small" in out and "tiny-melody" in out


def test_demo_model_choice_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    model, note = cli.choose_demo_model(None)
    assert model == "tiny"
    assert note.count(".") == 1 and "offline" in note and "facebook/musicgen-small" in note
    assert cli.choose_demo_model("tiny-melody") == ("tiny-melody", None)


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as err:
        cli.main(["generate"])
    assert err.value.code == 2
