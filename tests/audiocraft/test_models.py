"""musicgen_nb.audiocraft.MusicGen: audiocraft's documented calls, on our engine."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.audiocraft import MusicGen
from musicgen_nb.audiocraft.models import SHORT_NAMES


@pytest.fixture(scope="module")
def model():
    m = MusicGen.get_pretrained("tiny", device="cpu")
    return m


@pytest.fixture(scope="module")
def melody():
    return MusicGen.get_pretrained("tiny-melody", device="cpu")


def test_facts_and_defaults():
    model = MusicGen.get_pretrained("tiny", device="cpu")  # fresh: other tests set the shared one
    assert (model.sample_rate, model.frame_rate, model.audio_channels) == (32000, 50, 1)
    assert model.max_duration == 4.0 and model.device == torch.device("cpu")
    assert model.duration == 4.0  # audiocraft's 15 s, capped at a short window
    assert SHORT_NAMES["melody"] == "facebook/musicgen-melody"


def test_short_and_hub_names_on_standins(monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("small", "facebook/musicgen-small"):
        m = MusicGen.get_pretrained(name)
        assert m.session.standin == "standin" and m.max_duration == 30.0 and m.duration == 15.0
        assert m.extend_stride == 18.0
    stereo = MusicGen.get_pretrained("facebook/musicgen-stereo-small")
    assert stereo.audio_channels == 2


def test_generate_shapes_tokens_and_device(model):
    model.set_generation_params(duration=0.5)
    wav = model.generate(["jazz", "rock"])
    assert isinstance(wav, torch.Tensor) and wav.shape == (2, 1, 16000) and wav.device.type == "cpu"
    wav, tokens = model.generate(["jazz"], return_tokens=True)
    assert tokens.shape == (1, 4, 25) and tokens.dtype == torch.int64
    assert torch.equal(torch.from_numpy(model.session.decode(tokens.numpy())), wav)


def test_the_global_torch_seed_repeats_a_run(model):
    model.set_generation_params(duration=0.4)
    torch.manual_seed(7)
    a = model.generate(["jazz"])
    b = model.generate(["jazz"])
    torch.manual_seed(7)
    c = model.generate(["jazz"])
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_sampling_params_reach_the_engine(model):
    """audiocraft's keys in generation_params, and each one changes the codes as it should."""

    def codes(seed, **params):
        model.set_generation_params(duration=0.3, **params)
        torch.manual_seed(seed)
        return model.generate(["x"], return_tokens=True)[1]

    model.set_generation_params(duration=0.3, use_sampling=False, top_k=5, top_p=0.9,
                                temperature=0.5, cfg_coef=2.0)  # fmt: skip
    assert model.generation_params == {
        "use_sampling": False, "temp": 0.5, "top_k": 5, "top_p": 0.9, "cfg_coef": 2.0,
        "two_step_cfg": False, "cfg_coef_beta": None,
    }  # fmt: skip
    greedy = codes(1, use_sampling=False)
    assert torch.equal(greedy, codes(2, use_sampling=False))  # argmax: the seed does not matter
    assert torch.equal(greedy, codes(3, top_k=1))  # sampling from the top 1 is the argmax
    assert torch.equal(greedy, codes(4, temperature=0))  # temp 0 is the argmax, as in audiocraft
    assert not torch.equal(greedy, codes(5))  # sampling from 250
    assert not torch.equal(codes(6, cfg_coef=1.0, use_sampling=False), greedy)  # guidance used


def test_prompt_sample_rate_is_checked_first(model):
    model.set_generation_params(duration=1.0)
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="prompt_sample_rate must be an int >= 1 .Hz."):
            model.generate_continuation(torch.zeros(1, 320), bad)
    assert model.generate_continuation(torch.zeros(1, 3200), np.int64(32000)).shape == (1, 1, 32000)


def test_unconditional(model):
    model.set_generation_params(duration=0.3)
    wav, tokens = model.generate_unconditional(3, return_tokens=True)
    assert wav.shape == (3, 1, 9600) and tokens.shape == (3, 4, 15)


def test_continuation_includes_the_prompt_and_lasts_duration(model):
    model.set_generation_params(duration=1.0)
    prompt = torch.from_numpy(mg.audio.sine(220, 0.4, 16000))[None]  # [C, T] at 16 kHz
    wav, tokens = model.generate_continuation(prompt, 16000, return_tokens=True)
    assert wav.shape == (1, 1, 32000) and tokens.shape == (1, 4, 50)
    prompt_codes = model.session.encode(mg.audio.resample(prompt.numpy(), 16000, 32000), 32000)
    assert np.array_equal(tokens[:, :, :20].numpy(), prompt_codes)  # the prompt's tokens lead
    batch = torch.stack([prompt, prompt])
    assert model.generate_continuation(batch, 16000, descriptions=["a", None]).shape == (
        2,
        1,
        32000,
    )


def test_a_10s_prompt_on_the_small_standin_in_one_window(monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = MusicGen.get_pretrained("small")
    m.set_generation_params(duration=11.0)
    prompt = torch.from_numpy(mg.audio.sine(220, 10.0, 32000))[None]
    seen = []
    m.set_custom_progress_callback(lambda done, total: seen.append((done, total)))
    wav = m.generate_continuation(prompt, 32000, descriptions=["jazz"], progress=True)
    assert wav.shape == (1, 1, 11 * 32000)
    assert seen[-1][0] == seen[-1][1] == 50 + 3  # one window: 1 s of new frames + the delays


def test_progress_prints_like_audiocraft(model, capsys):
    model.set_custom_progress_callback(None)
    model.set_generation_params(duration=0.1)
    model.generate(["x"], progress=True)
    out = capsys.readouterr().out
    assert "     8 /      8" in out and "\r" in out


def test_long_form_uses_extend_stride(model):
    model.set_generation_params(duration=6.0, extend_stride=2.0)
    wav, tokens = model.generate(["x"], return_tokens=True)
    assert wav.shape == (1, 1, 6 * 32000) and tokens.shape == (1, 4, 300)


def test_with_chroma_tensor_list_and_none(melody):
    melody.set_generation_params(duration=0.4)
    tune = torch.from_numpy(mg.audio.melody_tone(["C4", "E4"], 0.2, 32000))[None]
    assert melody.generate_with_chroma(["a"], tune, 32000).shape == (1, 1, 12800)
    wav, tokens = melody.generate_with_chroma(["a", "b"], [tune, None], 32000, return_tokens=True)
    assert wav.shape == (2, 1, 12800) and tokens.shape == (2, 4, 20)
    torch.manual_seed(3)
    one = melody.generate_with_chroma(["a", "b"], torch.stack([tune, tune]), 32000)
    torch.manual_seed(3)
    assert not torch.equal(one, melody.generate_with_chroma(["a", "b"], [tune, None], 32000))


def test_with_chroma_runs_one_batch_when_every_item_has_a_melody(melody):
    melody.set_generation_params(duration=0.2)
    tune = torch.from_numpy(mg.audio.melody_tone(["C4", "E4"], 0.2, 32000))[None]
    calls = []
    melody.set_custom_progress_callback(lambda done, total: calls.append(done))
    melody.generate_with_chroma(["a", "b", "c"], [tune, tune, tune], 32000, progress=True)
    assert calls == list(range(1, 10 + 3 + 1))  # one pass over the steps, not three
    calls.clear()
    melody.generate_with_chroma(["a", "b"], [tune, None], 32000, progress=True)
    assert calls == 2 * list(range(1, 10 + 3 + 1))  # a None item: item by item
    melody.set_custom_progress_callback(None)


def test_with_chroma_on_a_text_model_raises_like_audiocraft(model):
    with pytest.raises(RuntimeError, match="needs a melody checkpoint"):
        model.generate_with_chroma(["a"], [None], 32000)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.set_generation_params(extend_stride=4), "extend_stride must be below"),
        (lambda m: m.set_generation_params(duration=-1), "duration must be > 0"),
        (lambda m: m.set_generation_params(top_k=-1), "top_k must be an int"),
        (lambda m: m.set_generation_params(use_sampling="yes"), "use_sampling must be True"),
        (lambda m: m.generate("jazz"), "descriptions must be a list"),
        (lambda m: m.generate_unconditional(0), "num_samples must be an int >= 1"),
        (lambda m: m.generate_continuation(torch.zeros(1, 1, 1, 10), 32000), r"prompt must be \[B, C, T\]"),
        (lambda m: m.generate_continuation(torch.zeros(1, 32000 * 5), 32000), "must be shorter than duration"),
        (lambda m: m.generate_continuation(torch.zeros(2, 1, 320), 32000, ["a"]), "one item per prompt"),
        (lambda m: m.set_custom_progress_callback(5), "progress_callback must be callable"),
    ],
)  # fmt: skip
def test_bad_arguments_get_clear_errors(model, call, match):
    model.set_generation_params(duration=1.0)
    with pytest.raises((ValueError, TypeError), match=match):
        call(model)


def test_no_audiocraft_torchaudio_or_xformers_imported(model):
    assert not {"audiocraft", "torchaudio", "xformers"} & set(sys.modules)
