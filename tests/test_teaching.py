"""Callouts: shown on random weights, absent on a trained (non-random) checkpoint."""

import json
import shutil
import subprocess
import sys

import pytest

import musicgen_nb as mg
from musicgen_nb import checkpoints
from musicgen_nb.teaching import FACTS, Callout, callout, has_random_weights


def test_random_weight_models_get_every_callout(tiny, tiny_melody):
    assert tiny.random_weights and tiny_melody.random_weights
    for s in (tiny, tiny_melody):
        for topic, fact in FACTS.items():
            note = callout(s, topic)
            assert isinstance(note, Callout) and note.fact is fact
            text = str(note)
            assert s.name in text and fact.shows in text and fact.source in text
            assert fact.why in note._repr_markdown_()


def test_random_weights_flag_from_load():
    s = mg.load("tiny", random_weights=True)
    assert s.random_weights and callout(s, "audio") is not None


def test_trained_checkpoint_gets_no_callout(tmp_path):
    """A checkpoint that is not marked random loads through the same path and shows nothing."""
    src = checkpoints.offline_checkpoint("tiny")
    dst = tmp_path / "my-finetune"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "musicgen_nb.json").read_text())
    meta.update(name="my-finetune", checkpoint="my-finetune")
    (dst / "musicgen_nb.json").write_text(json.dumps(meta))
    s = mg.load(dst)
    assert not s.random_weights and not has_random_weights(s)
    assert all(callout(s, topic) is None for topic in FACTS)


def test_standin_flag_counts_as_random(tiny):
    class Standin:
        random_weights = False
        is_standin = True
        name = "facebook/musicgen-small"

    assert has_random_weights(Standin())
    assert "'facebook/musicgen-small' has random weights" in str(callout(Standin(), "audio"))


def test_html_is_escaped_and_formats_code(tiny):
    html = callout(tiny, "guidance")._repr_html_()
    assert html.startswith('<div class="mg-callout"')
    assert "<code>classifier_free_guidance.training_dropout</code>" in html
    assert "`" not in html


def test_every_fact_names_a_source():
    for topic, fact in FACTS.items():
        assert "(" in fact.source and fact.shows and fact.why, topic


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match=r"topic must be one of .*'audio'.* got 'nope'"):
        callout(tiny, "nope")
    with pytest.raises(TypeError, match="s must be a loaded model"):
        callout("tiny", "audio")


def test_core_import_has_no_widgets():
    code = "import sys, musicgen_nb.teaching; print('ipywidgets' in sys.modules, 'plotly' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_scratch_gives_a_new_empty_folder_each_call(tmp_path):
    a = mg.teaching.scratch("08_experiments", "exercise1", root=tmp_path)
    (a / "clip.wav").write_bytes(b"x")
    b = mg.teaching.scratch("08_experiments", "exercise1", root=tmp_path)
    assert a != b and not any(b.iterdir())
    assert a.parent == b.parent == tmp_path / "musicgen-nb" / "08_experiments"


def test_scratch_defaults_to_the_temp_dir(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert mg.teaching.scratch("00_quickstart").parent == tmp_path / "musicgen-nb" / "00_quickstart"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x" * 65, 3])
def test_scratch_refuses_names_that_leave_its_folder(bad, tmp_path):
    with pytest.raises(ValueError, match=r"notebook must be 1-64 letters"):
        mg.teaching.scratch(bad, root=tmp_path)
    assert not (tmp_path / "musicgen-nb").exists()


def test_solutions_off_by_default_and_on_by_flag_or_env(capsys, monkeypatch):
    monkeypatch.delenv(mg.teaching.SOLUTIONS_ENV, raising=False)
    assert mg.teaching.solutions(False) is False
    assert "set SOLUTIONS = True" in capsys.readouterr().out
    assert mg.teaching.solutions(True) is True and capsys.readouterr().out == ""
    monkeypatch.setenv(mg.teaching.SOLUTIONS_ENV, "1")
    assert mg.teaching.solutions(False) is True
    with pytest.raises(TypeError, match="flag must be True or False"):
        mg.teaching.solutions("yes")
