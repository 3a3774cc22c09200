"""The pytest plugin: --musicgen-standin, sanitize rules, the needs_weights marker, fixtures.

Inner runs use pytester with ``-p no:musicgen_nb -p musicgen_nb.pytest_plugin``:
the plugin loads from this tree whether or not the package's ``pytest11`` entry
point is installed, and never twice. Runs that import torch or start kernels go
to a subprocess (pytester's in-process runs unload every module they imported,
and torch cannot be imported twice). The worked example runs exactly as a
tutorial's CI runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from musicgen_nb import testing

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

pytest_plugins = ["pytester"]
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbval")

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "examples" / "tutorial"
PLUGIN = ["-p", "no:musicgen_nb", "-p", "musicgen_nb.pytest_plugin", "-p", "no:cacheprovider"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(testing.ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", os.devnull + "-nohub")  # no cached real weights
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def run(pytester, *args):
    """An inner pytest run in a subprocess."""
    return pytester.runpytest_subprocess(*PLUGIN, *args, timeout=600)


def run_inprocess(pytester, *args):
    """An inner run in this process: only for test files that import no torch."""
    return pytester.runpytest_inprocess(*PLUGIN, *args)


def notebook(path: Path, *cells) -> Path:
    """Write a notebook of (source, tags, committed_text) code cells; text=None: not run."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    for i, (source, tags, text) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
        if text is not None:
            cell.execution_count = i + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------------------- registration
def test_entry_point_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {
        "musicgen_nb": "musicgen_nb.pytest_plugin"
    }
    assert "nbval_sanitize.cfg" in meta["tool"]["setuptools"]["package-data"]["musicgen_nb"]


def test_loading_the_plugin_imports_no_torch():
    """The plugin loads in every pytest run of an environment that has musicgen-nb: keep it cheap."""
    code = "import sys, musicgen_nb.pytest_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_help_lists_the_options(pytester):
    result = run_inprocess(pytester, "--help")
    result.stdout.fnmatch_lines(["*--musicgen-standin*", "*--musicgen-sanitize*"])


# ---------------------------------------------------------------------------- the switch
def test_flag_turns_standins_on_for_the_run_and_restores_after(pytester):
    pytester.makepyfile(
        """
        import os
        import musicgen_nb as mg

        def test_standin():
            assert os.environ["MUSICGEN_NB_STANDIN"] == "1"
            s = mg.load("facebook/musicgen-stereo-small")
            assert s.name == "facebook/musicgen-stereo-small" and s.standin == "standin-stereo"
            assert s.audio_channels == 2
        """
    )
    result = run(pytester, "--musicgen-standin")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["musicgen-nb: stand-ins on (MUSICGEN_NB_STANDIN=1)*"])


def test_the_environment_comes_back_after_the_run(pytester, monkeypatch):
    pytester.makepyfile(
        "import os\ndef test_env():\n    assert os.environ['MUSICGEN_NB_STANDIN'] == '1'\n"
    )
    run_inprocess(pytester, "--musicgen-standin").assert_outcomes(passed=1)
    assert testing.ENV not in os.environ
    monkeypatch.setenv(testing.ENV, "0")
    run_inprocess(pytester, "--musicgen-standin").assert_outcomes(passed=1)
    assert os.environ[testing.ENV] == "0"


def test_without_the_flag_real_checkpoints_are_unavailable(pytester):
    pytester.makepyfile(
        """
        import pytest
        import musicgen_nb as mg
        from musicgen_nb.models import ModelUnavailableError

        def test_real():
            with pytest.raises(ModelUnavailableError, match="musicgen-small"):
                mg.load("facebook/musicgen-small")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "stand-ins on" not in result.stdout.str()


def test_ini_option_turns_standins_on(pytester):
    pytester.makeini("[pytest]\nmusicgen_standin = true\n")
    pytester.makepyfile(
        "import os\ndef test_env():\n    assert os.environ['MUSICGEN_NB_STANDIN'] == '1'\n"
    )
    run_inprocess(pytester).assert_outcomes(passed=1)


def test_a_bad_environment_value_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv(testing.ENV, "sometimes")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run_inprocess(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*MUSICGEN_NB_STANDIN must be 1 (stand-ins on) or 0 (off), got 'sometimes'*"]
    )


# ---------------------------------------------------------------------------- marker
MARKED = """
import pytest

@pytest.mark.needs_weights
def test_claim_about_real_weights():
    pass

def test_plain():
    pass
"""


def test_needs_weights_is_skipped_with_standins(pytester):
    pytester.makepyfile(MARKED)
    result = run_inprocess(pytester, "--musicgen-standin", "-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs real weights; MusicGen stand-ins are on*"])


def test_needs_weights_runs_without_standins(pytester):
    pytester.makepyfile(MARKED)
    run_inprocess(pytester, "--strict-markers").assert_outcomes(passed=2)


def test_needs_weights_follows_the_environment_too(pytester, monkeypatch):
    monkeypatch.setenv(testing.ENV, "1")
    pytester.makepyfile(MARKED)
    run_inprocess(pytester).assert_outcomes(passed=1, skipped=1)


# ---------------------------------------------------------------------------- fixtures
def test_fixtures_load_the_offline_models(pytester):
    pytester.makepyfile(
        """
        def test_tiny(musicgen_tiny, musicgen_tiny_melody):
            assert musicgen_tiny.name == "tiny" and not musicgen_tiny.is_melody
            assert musicgen_tiny_melody.name == "tiny-melody" and musicgen_tiny_melody.is_melody
            assert not musicgen_tiny.is_standin

        def test_same_objects(musicgen_tiny):
            assert musicgen_tiny.num_codebooks == 4
        """
    )
    run(pytester).assert_outcomes(passed=2)


# ---------------------------------------------------------------------------- notebooks under nbval
@pytest.mark.timeout(300)
def test_kernels_inherit_standins_and_tagged_cells_are_skipped(pytester):
    notebook(
        pytester.path / "nb.ipynb",
        ("import os\nassert os.environ['MUSICGEN_NB_STANDIN'] == '1'", (), None),
        ("raise AssertionError('this claim needs real weights')", ("needs-weights",), None),
        ("# NEEDS_WEIGHTS\nraise AssertionError('so does this one')", (), None),
        ("print('after')", (), None),
    )
    result = run(pytester, "--nbval-lax", "--musicgen-standin", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*needs real weights*"])


@pytest.mark.timeout(300)
def test_papermill_kernels_inherit_standins(pytester):
    pytest.importorskip("papermill")
    notebook(
        pytester.path / "nb.ipynb",
        ("import os\nprint(os.environ['MUSICGEN_NB_STANDIN'])", (), None),
    )
    pytester.makepyfile(
        """
        import papermill

        def test_papermill(tmp_path):
            out = tmp_path / "out.ipynb"
            nb = papermill.execute_notebook("nb.ipynb", str(out), kernel_name="python3", progress_bar=False)
            assert nb.cells[0].outputs[0]["text"] == "1\\n"
        """
    )
    run(pytester, "--musicgen-standin").assert_outcomes(passed=1)


@pytest.mark.timeout(300)
def test_tagged_cells_run_without_standins(pytester):
    notebook(
        pytester.path / "nb.ipynb",
        ("x = 1", ("needs-weights",), None),
        ("assert x == 1", (), None),
    )
    run(pytester, "--nbval-lax").assert_outcomes(passed=2)


TIMING = (
    "import random\nprint(f'{random.uniform(1, 9):.3f} s elapsed')\n# NBVAL_CHECK_OUTPUT",
    (),
    "0.500 s elapsed\n",
)
TOKEN = (
    "import uuid\nprint('run', uuid.uuid4().hex)\n# NBVAL_CHECK_OUTPUT",
    (),
    "run 0123456789abcdef0123456789abcdef\n",
)


@pytest.mark.timeout(300)
def test_our_sanitize_rules_are_applied(pytester):
    notebook(pytester.path / "nb.ipynb", TIMING)
    run(pytester, "--nbval-lax").assert_outcomes(failed=1)  # nbval alone: timings differ
    run(pytester, "--nbval-lax", "--musicgen-standin").assert_outcomes(passed=1)
    run(pytester, "--nbval-lax", "--musicgen-sanitize").assert_outcomes(passed=1)


@pytest.mark.timeout(300)
def test_a_users_sanitize_file_is_applied_with_ours(pytester):
    notebook(pytester.path / "nb.ipynb", TIMING, TOKEN)
    theirs = pytester.path / "theirs.cfg"
    theirs.write_text("[uuids]\nregex: [0-9a-f]{32}\nreplace: UUID\n")
    result = run(pytester, "--nbval-lax", "--musicgen-standin", f"--nbval-sanitize-with={theirs}")
    result.assert_outcomes(passed=2)
    run(pytester, "--nbval-lax", "--musicgen-standin").assert_outcomes(passed=1, failed=1)


# ---------------------------------------------------------------------------- the worked example
def _pytest(*args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN, "-q", "-ra", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_tutorial_is_written_for_real_checkpoints_only():
    nb = nbformat.read(TUTORIAL / "musicgen_tutorial.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert 'mg.load("facebook/musicgen-small")' in text
    assert 'mg.load("facebook/musicgen-melody")' in text
    for word in ("tiny", "MUSICGEN_NB", "os.environ", "standin", "stand-in"):
        assert word not in text, f"the tutorial mentions {word!r}"
    workflow = (TUTORIAL / ".github" / "workflows" / "test-notebooks.yml").read_text()
    assert "pytest --nbval-lax --musicgen-standin ." in workflow


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_tutorial_passes_offline_with_standins():
    out = _pytest("--nbval-lax", "--musicgen-standin", "examples/tutorial/")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 skipped" in out.stdout and "needs real weights" in out.stdout
    assert " passed" in out.stdout and "failed" not in out.stdout


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_tutorial_without_the_flag_fails_with_the_unavailable_error():
    out = _pytest("--nbval-lax", "-x", "examples/tutorial/")
    assert out.returncode == 1
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)  # the traceback is coloured
    errors = [line for line in text.splitlines() if line.startswith("ModelUnavailableError: ")]
    assert errors, out.stdout[-3000:]
    assert "'facebook/musicgen-small' is not available offline" in errors[-1]
    assert "--musicgen-standin" in errors[-1]
    assert "FAILED examples/tutorial/musicgen_tutorial.ipynb::Cell 1" in text  # the first load


@pytest.mark.notebooks
@pytest.mark.timeout(600)
def test_tutorial_checked_outputs_are_compared(tmp_path):
    """The committed output of a checked cell is compared: alter it and the run fails.

    (The tutorial passes with its committed outputs: test_tutorial_passes_offline_with_standins.)
    """
    nb = nbformat.read(TUTORIAL / "musicgen_tutorial.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    checked = next(c for c in code if "# NBVAL_CHECK_OUTPUT" in c.source)
    nb.cells = code[: code.index(checked) + 1]  # import, load, check: no generation
    path = tmp_path / "first_cells.ipynb"
    checked.outputs[0]["text"] = checked.outputs[0]["text"].replace("4 codebooks", "5 codebooks")
    nbformat.write(nb, path)
    out = _pytest("--nbval-lax", "--musicgen-standin", str(path))
    assert out.returncode == 1, out.stdout[-3000:]
    assert "Cell outputs differ" in out.stdout and "5 codebooks" in out.stdout
    assert "1 failed, 2 passed" in out.stdout


# ---------------------------------------------------------------------------- round three
def test_a_missing_sanitize_file_is_a_short_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    for flags in ([], ["--musicgen-standin"]):
        result = run_inprocess(
            pytester, "--nbval-lax", "--nbval-sanitize-with", "missing.cfg", *flags
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        text = "\n".join(result.errlines + result.outlines)
        assert (
            "INTERNALERROR" not in text
            and "--nbval-sanitize-with missing.cfg: no such file" in text
        )
        assert len([line for line in result.errlines if line.strip()]) <= 3


@pytest.mark.timeout(300)
def test_a_kernel_that_never_imports_musicgen_nb_gets_transformers_standins(pytester):
    """What nbval starts: a fresh kernel whose code uses transformers alone."""
    notebook(
        pytester.path / "nb.ipynb",
        ("from transformers import AutoProcessor, MusicgenForConditionalGeneration", (), None),
        ("m = MusicgenForConditionalGeneration.from_pretrained('facebook/musicgen-small')\n"
         "p = AutoProcessor.from_pretrained('facebook/musicgen-small')", (), None),
        ("import sys\nprint(m.config.musicgen_nb_standin, 'musicgen_nb.models' in sys.modules)\n"
         "# NBVAL_CHECK_OUTPUT", (), "standin False\n"),
    )  # fmt: skip
    result = run(pytester, "--nbval-lax", "--musicgen-standin")
    result.assert_outcomes(passed=3)


@pytest.mark.timeout(300)
def test_dataset_standins_from_the_ini(pytester):
    pytester.makeini(
        "[pytest]\nmusicgen_standin_datasets =\n    org/set = synthetic n=2 seconds=1 genre=a,b\n"
    )
    pytester.makepyfile(
        """
        def test_load():
            from datasets import load_dataset

            rows = list(load_dataset("org/set", split="train", streaming=True))
            assert [str(r["genre"]) for r in rows] == ["a", "b"]
            assert rows[0]["audio"]["sampling_rate"] == 32000
        """
    )
    run(pytester, "--musicgen-standin").assert_outcomes(passed=1)


def test_bad_dataset_lines_and_a_missing_datasets_are_usage_errors(pytester, monkeypatch):
    pytester.makeini("[pytest]\nmusicgen_standin_datasets =\n    org/set = nowhere\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run_inprocess(pytester, "--musicgen-standin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*musicgen_standin_datasets in *tox.ini*line 1*'org/set' maps to*"]
    )
    pytester.makeini("[pytest]\nmusicgen_standin_datasets =\n    org/set = synthetic\n")
    monkeypatch.setitem(sys.modules, "datasets", None)
    result = run_inprocess(pytester, "--musicgen-standin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'datasets' package is not installed*musicgen-nb[[]datasets[]]*"])


def test_xdist_workers_and_their_kernels_get_one_startup_folder(pytester):
    """The Makefile's `pytest -n 2 --nbval-lax --musicgen-standin notebooks/`: each worker
    runs the plugin again; the kernels still start cleanly with stand-ins on."""
    pytest.importorskip("xdist")
    cell = (
        "import os, sys\n"
        "ours = [p for p in os.environ['PYTHONPATH'].split(os.pathsep) if 'musicgen-nb-startup-' in p]\n"
        "assert len(ours) == 1, ours\n"
        "assert sys._musicgen_nb_sitecustomize and os.environ['MUSICGEN_NB_STANDIN'] == '1'\n"
        "from musicgen_nb.checkpoints import hub_standins\n"
        "assert hub_standins.installed()\n"
    )
    for name in ("a.ipynb", "b.ipynb"):
        notebook(pytester.path / name, (cell, [], None))
    result = run(pytester, "-n", "2", "--nbval-lax", "--musicgen-standin", str(pytester.path))
    result.assert_outcomes(passed=2)
    assert "Error in sitecustomize" not in result.stderr.str()
