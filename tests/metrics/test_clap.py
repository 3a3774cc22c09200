"""CLAP on a tiny random config: unit embeddings, the score as a cosine, texts checked first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _clips import clips

import musicgen_nb as mg
from musicgen_nb import metrics as M
from musicgen_nb.metrics.clap import clap_audio, clap_text, features, load_clap


def test_clap_embeddings_are_unit_vectors_per_clip():
    x = clips(3)
    e = M.embed(x, 32000, model="tiny-clap")
    assert e.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(e[0], e[1])  # different audio, different embedding
    # mono, resampled to 48 kHz: a stereo copy at 48 kHz embeds the same
    stereo48 = np.repeat(mg.audio.resample(x, 32000, 48000), 2, axis=1)
    np.testing.assert_allclose(M.embed(stereo48, 48000, model="tiny-clap"), e, atol=1e-5)


def test_clap_score_is_the_cosine_in_range():
    x = clips(3)
    texts = ["lo-fi beat", "jazz piano", "rock drums"]
    score = M.clap_score(x, 32000, texts, model="tiny-clap")
    assert score.shape == (3,) and ((score >= -1) & (score <= 1)).all()
    model, _, tok = load_clap("tiny-clap")
    with torch.inference_mode():
        t = features(model.get_text_features(**tok(texts, padding=True, return_tensors="pt")))
    t = (t / t.norm(dim=-1, keepdim=True)).numpy()
    a = M.embed(x, 32000, model="tiny-clap")
    np.testing.assert_allclose(score, (a * t).sum(-1), atol=1e-6)
    assert M.clap_score(x, 32000, "jazz piano", model="tiny-clap")[1] == pytest.approx(score[1])
    assert M.clap_score(x, 32000, "epic choir", model="tiny-clap")[1] != pytest.approx(score[1])


def test_clap_score_takes_a_generation(tiny):
    g = tiny.generate(["jazz", "rock"], duration=0.5, seed=0, progress=False)
    np.testing.assert_allclose(
        M.clap_score(g, model="tiny-clap"),
        M.clap_score(g.audio, g.sample_rate, ["jazz", "rock"], model="tiny-clap"),
    )


def test_clap_loads_from_a_directory_like_a_hub_checkpoint(tmp_path):
    from transformers import ClapProcessor

    model, fe, tok = load_clap("tiny-clap")
    model.save_pretrained(tmp_path)
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp_path)
    x = clips(2)
    np.testing.assert_allclose(
        M.embed(x, 32000, model=str(tmp_path)), M.embed(x, 32000, model="tiny-clap"), atol=1e-6
    )


def test_clap_score_one_text_in_a_list_scores_every_clip():
    x = clips(2)
    np.testing.assert_array_equal(
        M.clap_score(x, 32000, ["jazz"], model="tiny-clap"),
        M.clap_score(x, 32000, "jazz", model="tiny-clap"),
    )


@pytest.mark.parametrize("count", [0, 3, 5])
def test_clap_score_refuses_a_count_other_than_1_or_n(count, tmp_path):
    texts = [f"text {i}" for i in range(count)]
    with pytest.raises(ValueError) as info:
        M.clap_score(clips(2), 32000, texts, model="tiny-clap")
    msg = str(info.value)
    assert "texts must be one string, or a list of 1 or 2 strings" in msg
    assert f"got {count} texts" in msg
    # Checked before any model runs: with a checkpoint that cannot load, the texts are still
    # what is reported (the audio embedding would fail first with an OSError).
    with pytest.raises(ValueError, match=f"got {count} texts"):
        M.clap_score(clips(2), 32000, texts, model=str(tmp_path / "no-such-clap"))


@pytest.mark.parametrize(
    "texts, exc, text",
    [
        (
            None,
            ValueError,
            "texts is required with an audio array: one string, or a list of 1 or 2",
        ),
        (["jazz", 5], TypeError, "texts[1] must be a string, got int 5"),
        (["jazz", None], TypeError, "unconditional clip has no text"),
        (5, TypeError, "texts must be one string, or a list of 1 or 2 strings"),
        ({"a": 1}, TypeError, "got dict"),
    ],
)
def test_clap_score_bad_texts(texts, exc, text):
    with pytest.raises(exc) as info:
        M.clap_score(clips(2), 32000, texts, model="tiny-clap")
    assert text in str(info.value)


# --------------------------------------------------------------------------- the public helpers
def test_load_clap_is_cached_and_seeded():
    assert load_clap("tiny-clap") is load_clap("tiny-clap")
    model, fe, tok = load_clap("tiny-clap")
    assert fe.sampling_rate == 48000 and tok("jazz").input_ids[0] == tok.bos_token_id
    load_clap.cache_clear()
    try:
        again, _, _ = load_clap("tiny-clap")
        for a, b in zip(model.parameters(), again.parameters(), strict=True):
            assert torch.equal(a, b)  # built from a fixed seed
    finally:
        load_clap.cache_clear()


def test_clap_audio_and_text_are_unit_vectors_of_one_space():
    a = clap_audio(clips(2), 32000, "tiny-clap")
    t = clap_text(["jazz", "rock"], "tiny-clap")
    assert a.shape == t.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a, M.embed(clips(2), 32000, model="tiny-clap"))


def test_features_takes_a_tensor_or_an_output():
    from types import SimpleNamespace

    t = torch.ones(1, 2)
    assert features(t) is t and features(SimpleNamespace(pooler_output=t)) is t


def test_clap_runs_on_the_device_asked_for():
    model, _, _ = load_clap("tiny-clap", "meta")  # a device with no data: where the weights are put
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert load_clap("tiny-clap") is load_clap("tiny-clap", torch.device("cpu"))
    assert next(load_clap("tiny-clap")[0].parameters()).device.type == "cpu"
    x = clips(2)
    on_cpu = M.clap_score(x, 32000, ["a", "b"], model="tiny-clap", device="cpu")
    np.testing.assert_array_equal(on_cpu, M.clap_score(x, 32000, ["a", "b"], model="tiny-clap"))
    np.testing.assert_array_equal(
        M.embed(x, 32000, model="tiny-clap", device="cpu"), clap_audio(x, 32000, "tiny-clap")
    )


def no_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache, whatever this machine has cached."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("MUSICGEN_NB_STANDIN", raising=False)


def test_a_clap_checkpoint_that_cannot_load_is_refused_at_once(monkeypatch, tmp_path):
    from musicgen_nb.checkpoints.loading import ModelUnavailableError
    from musicgen_nb.metrics.clap import require

    no_cache(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelUnavailableError, match="'laion/larger_clap_music' is not in the Hugging Face cache"
    ):
        M.metric("clap_score")
    with pytest.raises(
        ModelUnavailableError, match="'nobody/clap' is not in the Hugging Face cache"
    ):
        M.metric("clap_score", model="nobody/clap")
    assert not (tmp_path / "hub").exists()  # nothing was downloaded, or tried to be
    assert require("tiny-clap") == "tiny-clap" and require(str(tmp_path)) == str(tmp_path)


def test_a_misspelt_clap_name_fails_up_front(monkeypatch, tmp_path):
    from musicgen_nb._util.hub import hub_reachable
    from musicgen_nb.checkpoints.loading import ModelUnavailableError

    no_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if not hub_reachable(timeout=3.0):
        pytest.skip("the Hugging Face hub is not reachable from here")
    with pytest.raises(ModelUnavailableError, match="neither cached nor on the Hugging Face hub"):
        M.metric("clap_score", model="laion/larger_clap_musik")


def test_cuda_and_cuda_0_are_one_cache_key():
    from musicgen_nb.metrics.clap import torch_device

    assert torch_device("cuda") == torch_device("cuda:0") == torch_device(torch.device("cuda"))
    assert torch_device("cpu") == torch_device(None)
