"""Metrics: Fréchet distance against closed forms, CLAP and AST on tiny random configs, EnCodec latents."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from _capped import capped_error

import musicgen_nb as mg
from musicgen_nb import metrics as M

RNG = np.random.default_rng(0)


def clips(n=3, sr=32000, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    freqs = rng.uniform(200, 2000, size=n)
    tone = np.sin(2 * np.pi * freqs[:, None] * t)[:, None, :]
    return (0.3 * tone + 0.05 * rng.normal(size=tone.shape)).astype(np.float32)


# --------------------------------------------------------------------------- Fréchet distance
def with_moments(n, mean, cov, seed):
    """n samples whose sample mean and (N - 1) covariance are exactly ``mean`` and ``cov``."""
    d = len(mean)
    z = np.random.default_rng(seed).normal(size=(n, d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T  # cov = I
    return z @ np.linalg.cholesky(cov).T + mean


def closed_form(m1, s1, m2, s2):
    """The textbook formula with scipy's general sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def random_cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fad_of_a_set_with_itself_is_zero():
    x = RNG.normal(size=(300, 16)) * 3 + 5
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert M.frechet_distance(x, x.copy()) == M.frechet_distance(x, x)


@pytest.mark.parametrize("d", [1, 4, 32])
def test_fad_of_two_gaussians_matches_the_closed_form(d):
    m1, m2 = RNG.normal(size=d), RNG.normal(size=d) + 1
    s1, s2 = random_cov(d, 1), random_cov(d, 2)
    x, y = with_moments(200, m1, s1, 3), with_moments(150, m2, s2, 4)
    got = M.frechet_distance(x, y)
    assert got == pytest.approx(closed_form(m1, s1, m2, s2), rel=1e-8)
    assert got == pytest.approx(M.gaussian_frechet(m1, s1, m2, s2), rel=1e-9)
    assert M.frechet_distance(y, x) == pytest.approx(got, rel=1e-9)  # symmetric


def test_one_dimensional_closed_form():
    # (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert M.gaussian_frechet([0.0], [[9.0]], [2.0], [[1.0]]) == pytest.approx(4 + (3 - 1) ** 2)


def test_sqrtm_stays_real_on_near_singular_covariances():
    # rank-deficient covariances: a general sqrtm of S1 @ S2 picks up imaginary noise
    a = RNG.normal(size=(64, 3))
    s1 = a @ a.T
    s2 = s1 + 1e-12 * np.eye(64)
    d = M.gaussian_frechet(np.zeros(64), s1, np.zeros(64), s2)
    assert np.isfinite(d) and 0.0 <= d < 1e-6


def test_fad_refuses_too_few_samples():
    x, y = RNG.normal(size=(10, 16)), RNG.normal(size=(40, 16))
    with pytest.raises(ValueError, match="x has N=10 embeddings of dimension D=16"):
        M.frechet_distance(x, y)
    assert M.frechet_distance(x, y, allow_singular=True) > 0
    with pytest.raises(ValueError, match="covariance needs N >= 2"):
        M.frechet_distance(x[:1], y, allow_singular=True)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros((5, 2, 2)), np.zeros((5, 2)), r"x must be embeddings \[N, D\]"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "same dimension, got 2 and 3"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "x holds NaN or inf"),
    ],
)
def test_fad_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        M.frechet_distance(x, y, allow_singular=True)


# --------------------------------------------------------------------------- CLAP
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
    model, _, tok = M._clap("tiny-clap")
    with torch.inference_mode():
        t = M._features(model.get_text_features(**tok(texts, padding=True, return_tensors="pt")))
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

    model, fe, tok = M._clap("tiny-clap")
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


# --------------------------------------------------------------------------- KL (AST stand-in)
def test_kl_of_identical_distributions_is_zero():
    p = RNG.dirichlet(np.ones(10), size=4)
    np.testing.assert_array_equal(M.kl(p, p), np.zeros(4))
    x = clips(3)
    np.testing.assert_array_equal(M.kl_divergence(x, x, 32000, classifier="tiny-ast"), 0.0)


def test_kl_divergence_is_kl_of_the_tagger_distributions():
    gen, ref = clips(3, seed=1), clips(3, seed=2)
    p = M.label_distribution(ref, 32000, classifier="tiny-ast")
    q = M.label_distribution(gen, 32000, classifier="tiny-ast")
    assert p.shape == (3, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    got = M.kl_divergence(gen, ref, 32000, classifier="tiny-ast")
    np.testing.assert_allclose(got, scipy.stats.entropy(p, q, axis=-1), rtol=1e-6)
    assert (got > 0).all()
    # a reference at another sample rate
    ref16 = mg.audio.resample(ref, 32000, 16000)
    np.testing.assert_allclose(
        M.kl_divergence(gen, ref16, 32000, ref_sr=16000, classifier="tiny-ast"), got, rtol=1e-3
    )


def test_ast_loads_from_a_directory(tmp_path):
    model, fe = M._ast("tiny-ast")
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    x = clips(2)
    np.testing.assert_allclose(
        M.label_distribution(x, 32000, classifier=str(tmp_path)),
        M.label_distribution(x, 32000, classifier="tiny-ast"),
        atol=1e-7,
    )


def test_kl_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.kl(np.ones(3) / 3, np.ones(4) / 4)
    with pytest.raises(ValueError, match="same number of clips, got 2 and 3"):
        M.kl_divergence(clips(2), clips(3), 32000, classifier="tiny-ast")


# --------------------------------------------------------------------------- EnCodec latents, callables, chroma
def test_encodec_embedding_with_a_wrong_rate_is_refused_before_resampling():
    code = (
        "s = mg.load('tiny')\n"
        "mg.metrics.embed(mg.audio.sine(440, 1.0, 32000), sr=7, model='encodec', musicgen=s)"
    )
    msg, peak = capped_error(code)
    assert "32,000 samples at sr=7 Hz are 4571.43 s (76.2 min) of audio" in msg
    assert "which needs about 0.8 GB, and embedding it with EnCodec about 26.3 GB more" in msg
    assert "Check sr:" in msg
    assert peak < 800e6, peak


def test_encodec_latents_need_no_extra_weights(tiny):
    x = clips(2)
    e = M.embed(x, 32000, model="encodec", musicgen=tiny)
    enc = tiny.model.audio_encoder
    with torch.inference_mode():
        lat = enc.encoder(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(e, lat.mean(-1), rtol=1e-5, atol=1e-6)
    frames = M.embed(x, 32000, model=tiny, pool="frames")
    assert frames.shape == (2 * lat.shape[-1], lat.shape[1])
    np.testing.assert_allclose(frames[: lat.shape[-1]], lat[0].T, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs musicgen="):
        M.embed(x, 32000, model="encodec")


def test_any_callable_embeds():
    x = clips(4)
    e = M.embed(x, 32000, model=lambda a, sr: a.std(axis=-1))
    np.testing.assert_allclose(e, x.std(axis=-1))
    with pytest.raises(ValueError, match=r"must return \[N, D\] for N clips"):
        M.embed(x, 32000, model=lambda a, sr: a.std())


def test_embed_bad_input():
    with pytest.raises(TypeError, match="model must be 'clap'"):
        M.embed(clips(1), 32000, model=3)
    with pytest.raises(ValueError, match="sr is required"):
        M.embed(clips(1), model="tiny-clap")
    with pytest.raises(ValueError, match="pool must be 'mean' or 'frames'"):
        M.embed(clips(1), 32000, pool="max")


def test_chroma_similarity_is_exposed():
    assert M.chroma_similarity is mg.melody.similarity
    a = mg.melody.chroma(clips(1)[0], 32000)
    assert M.chroma_similarity(a, a) == pytest.approx(1.0)


def test_row_metrics():
    fns = M.row_metrics(["loudness", M.metric("clap_score", model="tiny-clap")])
    assert list(fns) == ["loudness", "clap_score"]
    x = clips(1)[0]
    assert fns["loudness"](x, 32000, "jazz") == pytest.approx(mg.audio.loudness(x, 32000))
    assert np.isnan(fns["clap_score"](x, 32000, None))
    with pytest.raises(ValueError, match="named callables"):
        M.row_metrics([lambda a, sr, p: 0.0])
    assert list(M.row_metrics({"zero": lambda a, sr, p: 0.0})) == ["zero"]
