"""Stand-ins at the transformers level: from_pretrained, Auto* and pipeline, in any interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musicgen_nb.checkpoints import hub_standins, specs, standin_startup, standins

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def standins_on(monkeypatch):
    monkeypatch.setenv(standins.ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_standins.install()
    hub_standins.patch_transformers()


def _python(code: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "name, cls, want",
    [
        ("facebook/musicgen-small", "MusicgenForConditionalGeneration", "standin"),
        ("facebook/musicgen-melody", "MusicgenMelodyForConditionalGeneration", "standin-melody"),
        ("facebook/musicgen-stereo-small", "AutoModelForTextToWaveform", "standin-stereo"),
        ("facebook/musicgen-stereo-melody", "AutoModelForTextToWaveform", "standin-stereo-melody"),
    ],
)
def test_from_pretrained_loads_the_standin_of_the_same_kind(standins_on, name, cls, want):
    import transformers

    model = getattr(transformers, cls).from_pretrained(name)
    real = specs.known()[specs.short_name(name)]["config"]
    assert model.config.musicgen_nb_standin == want
    assert model.config.musicgen_nb_requested == name
    assert model.config.model_type == real["model_type"]
    assert model.config.decoder.num_codebooks == real["decoder"]["num_codebooks"]
    assert model.config.decoder.audio_channels == real["decoder"]["audio_channels"]
    assert model.config.decoder.max_position_embeddings == 2048
    assert model.generation_config.max_length == 1500  # 30 s at 50 frames/s, as the real one


def test_processor_tokenizer_and_feature_extractor(standins_on):
    from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer

    processor = AutoProcessor.from_pretrained("facebook/musicgen-small")
    assert type(processor).__name__ == "MusicgenProcessor"
    assert AutoTokenizer.from_pretrained("facebook/musicgen-small")("jazz").input_ids
    fe = AutoFeatureExtractor.from_pretrained("facebook/musicgen-small")
    assert fe.sampling_rate == 32000


def test_other_names_and_off_switch_pass_through(standins_on, monkeypatch):
    assert hub_standins.hub_name("laion/clap-htsat-unfused") == ("laion/clap-htsat-unfused", None)
    assert hub_standins.hub_name("small") == ("small", None)  # not a hub id for transformers
    folder = str(ROOT)
    assert hub_standins.hub_name(folder) == (folder, None)
    monkeypatch.setenv(standins.ENV, "0")
    assert hub_standins.hub_name("facebook/musicgen-small") == ("facebook/musicgen-small", None)


def test_a_kernel_that_never_imports_musicgen_nb(tmp_path):
    """What nbval and papermill start: a plain interpreter with the plugin's PYTHONPATH."""
    folder = standin_startup.startup_dir(tmp_path)
    code = (
        "import sys\n"
        "from transformers import MusicgenForConditionalGeneration, AutoProcessor, pipeline\n"
        "m = MusicgenForConditionalGeneration.from_pretrained('facebook/musicgen-small')\n"
        "p = AutoProcessor.from_pretrained('facebook/musicgen-small')\n"
        "x = p(text=['lo-fi'], padding=True, return_tensors='pt')\n"
        "a = m.generate(**x, do_sample=True, guidance_scale=3, max_new_tokens=60)\n"
        "print('shape', tuple(a.shape), m.config.musicgen_nb_standin)\n"
        "synth = pipeline('text-to-audio', 'facebook/musicgen-small')\n"
        "out = synth('lo-fi', forward_params={'do_sample': True, 'max_new_tokens': 60})\n"
        "print('pipe', out['sampling_rate'], out['audio'].shape[-1] > 0)\n"
    )
    env = dict(os.environ, MUSICGEN_NB_STANDIN="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]))  # fmt: skip
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "shape (1, 1, " in out.stdout and "standin" in out.stdout
    assert "pipe 32000 True" in out.stdout
    notices = [line for line in out.stdout.splitlines() if line.startswith("musicgen-nb:")]
    assert len(notices) == 1 and "'facebook/musicgen-small'" in notices[0]


def test_without_standins_transformers_is_untouched(tmp_path):
    """The startup hook on PYTHONPATH, stand-ins off: from_pretrained is transformers' own."""
    folder = standin_startup.startup_dir(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = '1'\n")
    code = (
        "import os, sys, transformers\n"
        "from transformers import MusicgenForConditionalGeneration as M, pipeline\n"
        "print(getattr(M.from_pretrained, '_musicgen_nb_standin', False),\n"
        "      getattr(pipeline, '_musicgen_nb_standin', False), os.environ.get('CHAINED'),\n"
        "      'musicgen_nb' in sys.modules)\n"
    )
    paths = [str(folder), str(tmp_path / "other"), str(ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.pop(standins.ENV, None)
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "False", "1", "False"]  # and the hidden one still ran


def test_install_waits_for_transformers_to_be_imported(tmp_path):
    code = (
        "import sys, musicgen_nb\n"
        "print('transformers' in sys.modules, 'torch' in sys.modules)\n"
        "import transformers\n"
        "print(transformers.PreTrainedModel.from_pretrained._musicgen_nb_standin)\n"
    )
    env = dict(os.environ, MUSICGEN_NB_STANDIN="1", PYTHONPATH=str(ROOT))
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "False", "True"]


def test_a_10s_audio_prompt_fits_the_small_standin_in_one_window(standins_on):
    import musicgen_nb as mg

    s = mg.load("small")
    prompt = mg.audio.sine(220, 10.0, 32000)
    g = s.generate("x", duration=2.0, audio_prompt=prompt, audio_prompt_sr=32000, seed=1,
                   progress=False)  # fmt: skip
    assert s.max_duration == 30.0 and len(g.windows) == 1 and g.prompt_frames == 500
    assert g.audio.shape[-1] == 12 * 32000 and np.isfinite(g.audio).all()


def test_unknown_names_under_standins_say_unknown_and_list_known(standins_on):
    import musicgen_nb as mg

    with pytest.raises(ValueError, match=r"unknown model 'a/b/c'.*Known names: 'small'") as err:
        mg.load("a/b/c")
    assert "turn on stand-ins" not in str(err.value)


def test_a_probe_for_the_package_does_not_use_up_the_hook():
    """Libraries test for optional packages with find_spec; the hook waits for the import."""
    code = (
        "import importlib.util, sys\n"
        "from musicgen_nb.checkpoints import hub_standins\n"
        "hub_standins.install()\n"
        "assert importlib.util.find_spec('datasets') is not None and 'datasets' not in sys.modules\n"
        "import datasets\n"
        "print(datasets.load_dataset._musicgen_nb_standin)\n"
    )
    env = dict(os.environ, MUSICGEN_NB_STANDIN="1", PYTHONPATH=str(ROOT))
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True"]


def test_use_standins_reaches_kernels_started_from_python(tmp_path):
    """mg.testing.use_standins(), then a child interpreter (a papermill kernel) that never
    imports musicgen_nb: transformers loads the stand-in there too."""
    child = (
        "from transformers import AutoConfig; "
        "print(AutoConfig.from_pretrained('facebook/musicgen-melody').musicgen_nb_standin)"
    )
    code = (
        "import subprocess, sys\n"
        "import musicgen_nb as mg\n"
        "mg.testing.use_standins()\n"
        f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.pop(standins.ENV, None)
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "standin-melody"


def test_a_failing_patch_leaves_import_transformers_working():
    """A transformers the wrappers do not fit: one line on stderr, the import still works."""
    code = (
        "from musicgen_nb.checkpoints import hub_standins\n"
        "def broken():\n"
        "    raise AttributeError('no such entry point')\n"
        "hub_standins.patch_transformers = broken\n"
        "hub_standins.install()\n"
        "import transformers\n"
        "print(transformers.MusicgenForConditionalGeneration.__name__)\n"
    )
    env = dict(os.environ, MUSICGEN_NB_STANDIN="1", PYTHONPATH=str(ROOT))
    out = _python(code, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["MusicgenForConditionalGeneration"]
    assert out.stderr.strip().splitlines() == [
        "musicgen-nb: stand-ins not installed for transformers (AttributeError: no such entry "
        "point); transformers itself is unchanged"
    ]


def test_tuples_from_from_pretrained_are_marked(standins_on):
    from transformers import AutoConfig, MusicgenForConditionalGeneration

    model, info = MusicgenForConditionalGeneration.from_pretrained(
        "facebook/musicgen-small", output_loading_info=True
    )
    assert (
        model.config.musicgen_nb_requested == "facebook/musicgen-small" and "missing_keys" in info
    )
    config, unused = AutoConfig.from_pretrained(
        "facebook/musicgen-melody", return_unused_kwargs=True, foo=1
    )
    assert config.musicgen_nb_requested == "facebook/musicgen-melody" and unused == {"foo": 1}


def test_pipeline_without_a_task_stays_offline(standins_on, monkeypatch):
    monkeypatch.setenv("HF_HOME", os.devnull + "-nohub")  # no cached hub answers either
    from transformers import pipeline

    synth = pipeline(model="facebook/musicgen-small")
    assert synth.task == "text-to-audio"
    assert synth.model.config.musicgen_nb_standin == "standin"
