"""Stand-ins: the mapping for every known checkpoint, the switch, the notice, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import musicgen_nb as mg
from musicgen_nb.checkpoints import specs, standins
from musicgen_nb.checkpoints.loading import ModelUnavailableError
from musicgen_nb.checkpoints.offline import offline_checkpoint

ROOT = Path(__file__).resolve().parents[2]
KNOWN = list(specs.known())


@pytest.fixture
def standins_on(monkeypatch):
    monkeypatch.setenv(standins.ENV, "1")


@pytest.fixture
def standins_off(monkeypatch):
    monkeypatch.delenv(standins.ENV, raising=False)


@pytest.fixture
def no_hub(monkeypatch):
    """No hub and no hub cache: a real checkpoint can only come from a stand-in."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", os.devnull + "-nohub")


# ---------------------------------------------------------------------------- the mapping
def test_list_models_names_are_all_covered():
    df = mg.list_models()
    assert sorted(df["name"]) == sorted(KNOWN) and len(KNOWN) == 10
    for name, hub in zip(df["name"], df["checkpoint"], strict=True):
        assert standins.standin_for(name) is not None
        assert standins.standin_for(hub) == standins.standin_for(name)


@pytest.mark.parametrize(
    "name, want",
    [
        ("small", "standin"), ("medium", "standin"), ("large", "standin"),
        ("melody", "standin-melody"), ("melody-large", "standin-melody"),
        ("stereo-small", "standin-stereo"), ("stereo-medium", "standin-stereo"),
        ("stereo-large", "standin-stereo"),
        ("stereo-melody", "standin-stereo-melody"), ("stereo-melody-large", "standin-stereo-melody"),
    ],
)  # fmt: skip
def test_mapping_table(name, want):
    assert standins.standin_for(name) == want
    assert standins.standin_for(f"facebook/musicgen-{name}") == want


@pytest.mark.parametrize("name", KNOWN)
def test_every_known_checkpoint_loads_a_standin_of_its_kind(name, standins_on, no_hub):
    """Loaded under stand-ins, each name gets a model with the real one's layout."""
    real = specs.known()[name]["config"]
    s = mg.load(name)
    assert s.name == name and s.is_standin and s.standin == standins.standin_for(name)
    assert s.standin in specs.STANDIN_PRESETS
    # faithful: the real window (30 s of positions), rates, codebooks and channels
    assert s.max_duration == specs.known()[name]["meta"]["max_duration"] == 30.0
    assert s.frame_rate == 50 and s.model.config.musicgen_nb_standin == s.standin
    if s.is_melody:
        assert s.model.config.chroma_length == real["chroma_length"]
    assert s.is_melody == (real["model_type"] == "musicgen_melody")
    assert s.audio_channels == real["decoder"]["audio_channels"]
    assert s.num_codebooks == real["decoder"]["num_codebooks"]
    assert s.sample_rate == real["audio_encoder"]["sampling_rate"]
    assert s.meta["standin"] == s.standin and s.meta["name"] == name


def test_hub_id_keeps_the_requested_name(standins_on, no_hub):
    s = mg.load("facebook/musicgen-melody")
    assert s.name == "facebook/musicgen-melody" and s.standin == "standin-melody" and s.is_melody
    assert "stand-in 'standin-melody'" in repr(s) and "facebook/musicgen-melody" in repr(s)


@pytest.mark.parametrize("name", list(specs.OFFLINE))
def test_offline_names_are_not_replaced(name, standins_on):
    assert standins.standin_for(name) is None
    s = mg.load(name)
    assert s.name == name and not s.is_standin and s.standin is None


def test_local_directories_are_not_replaced(standins_on):
    path = offline_checkpoint("tiny-melody")
    assert standins.standin_for(path) is None and standins.standin_for(str(path)) is None
    s = mg.load(path)
    assert not s.is_standin and s.is_melody


def test_random_weights_builds_are_not_replaced(standins_on):
    assert standins.resolve("small", random_weights=True) == ("small", None)


def test_names_that_are_not_checkpoints_still_fail(standins_on):
    assert standins.standin_for("musicgen-huge") is None
    with pytest.raises(ValueError, match="musicgen-huge"):
        mg.load("musicgen-huge")
    assert standins.standin_for(3) is None
    with pytest.raises(TypeError, match="name_or_path"):
        mg.load(3)


@pytest.mark.parametrize(
    "hub_id, want",
    [
        ("someone/my-musicgen-finetune", "standin"),
        ("someone/musicgen-melody-jazz", "standin-melody"),
        ("someone/Stereo-Lofi", "standin-stereo"),
        ("someone/musicgen-stereo-melody-large-ft", "standin-stereo-melody"),
    ],
)
def test_unknown_hub_ids_get_the_standin_their_name_suggests(hub_id, want):
    assert standins.standin_for(hub_id) == want


def test_notice_says_when_the_kind_was_guessed():
    guessed = standins.notice(
        standins.Standin("someone/musicgen-melody-jazz", "standin-melody", True)
    )
    assert "'someone/musicgen-melody-jazz'" in guessed and "'standin-melody'" in guessed
    assert "guessed from the name: melody" in guessed
    known = standins.notice(standins.Standin("facebook/musicgen-small", "standin", False))
    assert "guessed" not in known and "\n" not in known


# ---------------------------------------------------------------------------- the switch
def test_off_by_default_a_real_checkpoint_is_unavailable(standins_off, no_hub):
    assert not standins.enabled()
    assert standins.resolve("facebook/musicgen-small") == ("facebook/musicgen-small", None)
    with pytest.raises(ModelUnavailableError) as err:
        mg.load("facebook/musicgen-small")
    assert "'facebook/musicgen-small'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "value, on", [("1", True), ("yes", True), (" TRUE ", True), ("0", False), ("", False)]
)
def test_environment_values(monkeypatch, value, on):
    monkeypatch.setenv(standins.ENV, value)
    assert standins.enabled() is on


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(standins.ENV, "maybe")
    with pytest.raises(ValueError, match=r"MUSICGEN_NB_STANDIN must be 1 .* got 'maybe'"):
        mg.load("small")


def test_use_standins_call_and_context_manager(monkeypatch):
    # setenv first, so that monkeypatch restores the variable's state from before this test,
    # not the value the plain call below leaves (which would leak stand-ins into later tests)
    monkeypatch.setenv(standins.ENV, "0")
    monkeypatch.delenv(standins.ENV)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # restored after the test
    path = os.environ["PYTHONPATH"]
    with standins.use_standins():
        assert os.environ["PYTHONPATH"].split(os.pathsep)[0].endswith("standin-startup")
        assert standins.enabled() and os.environ[standins.ENV] == "1"
        with standins.use_standins(False):
            assert not standins.enabled()
        assert standins.enabled()
    assert standins.ENV not in os.environ and os.environ["PYTHONPATH"] == path
    standins.use_standins()  # a plain call lasts
    assert standins.enabled()
    monkeypatch.setenv(standins.ENV, "0")
    with pytest.raises(TypeError, match="on must be True or False, got 'yes'"):
        standins.use_standins("yes")
    assert os.environ[standins.ENV] == "0"


def test_one_notice_per_process_naming_what_replaced_what():
    """A fresh process: two loads of real checkpoints, one notice, on stdout (not an error)."""
    code = (
        "import musicgen_nb as mg\n"
        "mg.testing.use_standins()\n"
        "a = mg.load('facebook/musicgen-small')\n"
        "b = mg.load('melody')\n"
        "print(a.standin, b.standin)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("musicgen-nb:")]
    assert out.stdout.splitlines()[-1].split() == ["standin", "standin-melody"]
    assert len(lines) == 1, out.stdout
    assert "musicgen-nb:" not in out.stderr
    assert "'facebook/musicgen-small' is replaced by the offline stand-in 'standin'" in lines[0]


# ---------------------------------------------------------------------------- provenance
def test_generations_and_sidecars_record_the_standin(standins_on, no_hub, tmp_path):
    s = mg.load("facebook/musicgen-small")
    g = s.generate("jazz", duration=0.5, seed=3, progress=False)
    assert g.model_name == "facebook/musicgen-small" and g.standin == "standin"
    (wav,) = g.save(tmp_path)
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["model"] == "facebook/musicgen-small" and meta["standin"] == "standin"
    assert "standin (random weights)" in mg.players.player(g)._repr_html_()


def test_real_loads_record_no_standin(standins_off, tiny, tmp_path):
    g = tiny.generate("jazz", duration=0.5, seed=3, progress=False)
    assert g.standin is None
    (wav,) = g.save(tmp_path)
    assert json.loads(wav.with_suffix(".json").read_text())["standin"] is None


@pytest.mark.parametrize("how", ["save_pretrained", "export_checkpoint"])
def test_a_folder_saved_from_a_standin_loads_as_a_standin(how, no_hub, tmp_path, monkeypatch):
    from musicgen_nb.audiocraft import export_checkpoint

    monkeypatch.setenv(standins.ENV, "1")
    s = mg.load("facebook/musicgen-small")
    folder = tmp_path / "saved"
    if how == "save_pretrained":
        s.model.save_pretrained(folder)
        s.processor.save_pretrained(folder)
    else:
        export_checkpoint(s, folder)
    monkeypatch.setenv(standins.ENV, "0")  # a plain local load: nothing replaces it
    back = mg.load(folder)
    assert back.is_standin and back.standin == "standin" and back.name == str(folder)
    (wav,) = back.generate("jazz", duration=0.2, seed=3, progress=False).save(tmp_path / "out")
    assert json.loads(wav.with_suffix(".json").read_text())["standin"] == "standin"
