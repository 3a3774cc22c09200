import json
import os
import subprocess
import sys

import pytest

from musicgen_nb import cli


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "musicgen_nb.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
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
    assert lines == ["musicgen-nb: error: --duration must be > 0 seconds, got -1.0"]
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


def test_demo_outside_a_checkout_says_what_it_needs_in_one_line(tmp_path, monkeypatch, capsys):
    """As installed from a wheel: no notebooks/ beside the package nor in the working directory."""
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "musicgen_nb" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "the demo needs a checkout of musicgen-nb and its dev extra" in err


# ----------------------------------------------------------------- a Unix tool
@pytest.mark.parametrize(
    "args, match",
    [
        (
            ["generate"],
            r"the following arguments are required: PROMPT \(see 'musicgen-nb generate --help'\)",
        ),
        (
            ["generate", "x", "--duration", "ten"],
            r"argument --duration: invalid float value: 'ten' \(see",
        ),
        (["nosuch"], r"argument command: invalid choice: 'nosuch'.* \(see 'musicgen-nb --help'\)"),
        ([], r"the following arguments are required: command"),
    ],
)
def test_usage_errors_are_one_line_with_a_help_hint(args, match):
    proc = run(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("musicgen-nb: error: ")
    assert __import__("re").search(match, lines[0]), lines[0]


def test_out_and_loudness_are_checked_before_generating(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        (["--out", str(afile)], f"--out '{afile}' is a file, not a folder"),
        (["--out", str(afile / "sub")], "--out"),
        (["--loudness", "5", "--out", str(tmp_path)], "--loudness must be a loudness in LUFS <= 0"),
        (["--loudness", "nan", "--out", str(tmp_path)], "--loudness must be a finite number"),
        (["--out", ""], "--out is an empty string; give a folder"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "no-cache")}
    for extra, message in cases:
        # small is neither cached nor reachable: loading it would fail. These fail before.
        proc = run("generate", "x", "--model", "small", *extra, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
        assert "unknown model" not in lines[0] and "target_lufs" not in lines[0]


def test_messages_use_flag_names(tmp_path):
    proc = run(
        "generate",
        "x",
        "--model",
        "tiny",
        "--guidance",
        "0.5",
        "--top-k",
        "3",
        "--out",
        str(tmp_path),
    )
    assert (
        proc.stderr.strip()
        == "musicgen-nb: error: --guidance must be >= 1 (1 turns guidance off), got 0.5"
    )
    assert (
        cli.flag_names("top_k must be >= 0; guidance_scale_x")
        == "--top-k must be >= 0; guidance_scale_x"
    )


def test_unwritable_out_is_found_before_generating(tmp_path):
    import os
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "musicgen_nb.cli",
        "generate",
        "x",
        "--model",
        "small",  # neither cached nor reachable (HF_HUB_OFFLINE): loading it would fail
        "--out",
        str(ro / "o"),
    ]
    if os.geteuid() == 0:  # root writes anywhere: make a read-only mount instead
        if not shutil.which("unshare"):
            pytest.skip("needs unshare to make a read-only folder as root")
        script = f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", *cmd]
    else:
        ro.chmod(0o500)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "no-cache")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if os.geteuid() == 0 and "mount" in proc.stderr:
        pytest.skip(f"cannot remount read-only here: {proc.stderr.strip()}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"musicgen-nb: error: --out '{ro / 'o'}' is not writable")


def test_demo_with_an_unknown_model_is_one_line_and_leaves_nothing(tmp_path):
    proc = run("demo", "--model", "nosuch", "--out", str(tmp_path / "build"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("musicgen-nb: error: unknown model 'nosuch'")
    assert not (tmp_path / "build").exists()


def test_ctrl_c_saves_a_partial_file_and_exits_130(tmp_path):
    import os
    import signal

    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, "-m", "musicgen_nb.cli", "generate", "x", "--model", "tiny", "--duration",
         "120", "--seed", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    import re

    seen = b""
    while not re.search(rb"\| *[1-9]\d+/\d+", seen):  # the bar shows 10+ steps done
        chunk = os.read(p.stderr.fileno(), 4096)
        assert chunk, "the command ended before generating"
        seen += chunk
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("musicgen-nb: interrupted after ") and "_partial.wav" in last
    assert stdout.decode().split() == [str(out / "x_seed1_partial.wav")]
    assert sorted(f.name for f in out.iterdir()) == ["x_seed1_partial.json", "x_seed1_partial.wav"]


def test_closed_pipe_exits_quietly():
    proc = subprocess.run(
        f"'{sys.executable}' -m musicgen_nb.cli models | head -c 10", shell=True,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_load_errors_use_flag_names(tmp_path):
    proc = run("generate", "x", "--model", "tiny", "--precision", "int3", "--out", str(tmp_path))
    assert proc.stderr.strip().startswith("musicgen-nb: error: --precision must be one of")
    proc = run("generate", "x", "--model", "", "--out", str(tmp_path))
    assert proc.stderr.strip().startswith("musicgen-nb: error: --model is an empty string")


def test_an_unknown_model_is_blamed_on_model_not_out(tmp_path, capsys):
    assert cli.main(["generate", "x", "--model", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicgen-nb: error: unknown model 'nosuch'") and "--out" not in err
    assert "or a local directory" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--duration", "-3"], "--duration must be > 0"),
        (["--guidance", "0.5"], "--guidance must be >= 1"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--top-k", "-1"], "--top-k must be >= 0"),
        (["--top-p", "2"], "--top-p must be in [0, 1]"),
        (["--seed", "-1"], "--seed"),
        (["--negative", "drums", "--guidance", "1"], "--negative needs --guidance > 1"),
        (["--precision", "int3"], "--precision must be one of"),
        (["--device", "tpu"], "--device must be one of"),
        (["--model", "nosuch"], "unknown model 'nosuch'"),
    ],
)
def test_every_flag_is_checked_before_the_model_loads(flags, match, tmp_path, monkeypatch, capsys):
    # small is neither cached nor reachable here: a check after the load would fail on that
    # (ModelUnavailableError) instead of naming the flag.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    args = ["generate", "x", "--model", "small", "--out", str(tmp_path / "o"), *flags]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicgen-nb: error: ") and match in err, err
    assert not (tmp_path / "o").exists()


def test_models_lists_every_offline_preset(capsys):
    from musicgen_nb.checkpoints import OFFLINE

    assert cli.main(["models"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("offline presets") and all(name in last for name in OFFLINE)


def test_grid_help_points_to_the_published_guide():
    spec = next(a for a in cli._parser()._subparsers._group_actions[0].choices["grid"]._actions
                if a.dest == "spec")  # fmt: skip
    assert cli.DOCS_URL + "guides/ray.html" in spec.help


def test_the_demo_writes_an_offline_handout(tmp_path):
    import re

    import nbformat
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(y=[1, 3, 2])).to_plotly_json()
    loader = '<script src="https://cdn.plot.ly/plotly-3.0.1.min.js"></script>'
    cell = nbformat.v4.new_code_cell("fig", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": loader}),
        nbformat.v4.new_output("display_data", data={
            "application/vnd.plotly.v1+json": fig, "text/html": loader}),
    ])  # fmt: skip
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$$x^2$$"), cell])
    path = tmp_path / "00_quickstart.ipynb"
    nbformat.write(nb, path)
    html = cli.write_handout(path).read_text(encoding="utf-8")
    assert re.findall(r"<script[^>]+src=", html) == []  # nothing loaded: no CDN, no require.js
    assert "<math" in html  # MathML, drawn by the browser: no MathJax to load
    assert html.count("Plotly.newPlot(") == 1 and "plotly.js v" in html  # inlined once


def test_a_bad_duration_is_refused_before_the_offline_checkpoint_is_built(tmp_path, monkeypatch):
    """The cheap checks run first: a bad --duration does not pay for building 'tiny'."""
    from musicgen_nb.checkpoints import loading

    def no_build(*args, **kwargs):
        raise AssertionError("resolve_source ran before the --duration check")

    monkeypatch.setattr(loading, "resolve_source", no_build)
    args = cli._parser().parse_args(["generate", "x", "--model", "tiny", "--duration", "-3"])
    with pytest.raises(ValueError, match="--duration must be > 0"):
        cli.check_generate_flags(args)
    # the facts come from the stored specs, not from constants
    assert (
        cli._model_facts("tiny").max_duration == 4.0 and cli._model_facts("small").frame_rate == 50
    )


def test_out_of_memory_saves_the_partial_audio(tmp_path, monkeypatch, capsys):
    """A CUDA OOM in window 2 (simulated where it strikes, the step): the windows done are
    saved as *_partial.wav, as Ctrl-C saves them, and the error names them."""
    import torch

    from musicgen_nb.models import MusicGen

    real = MusicGen.generate

    def oom_in_window_2(self, *args, **kwargs):
        def hook(done, total):
            if done == 350:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        return real(self, *args, callback=hook, **kwargs)

    monkeypatch.setattr(MusicGen, "generate", oom_in_window_2)
    out = tmp_path / "out"
    code = cli.main(["generate", "x", "--model", "tiny", "--duration", "8", "--seed", "1",
                     "--out", str(out), "--quiet"])  # fmt: skip
    std = capsys.readouterr()
    assert code == 2 and std.out.split() == [str(out / "x_seed1_partial.wav")]
    assert std.err.startswith("musicgen-nb: error: out of memory") and "_partial.wav" in std.err
