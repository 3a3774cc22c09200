"""Embeddings: EnCodec latents (no extra weights), any callable, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _capped import capped_error
from _clips import clips

from musicgen_nb import metrics as M
from musicgen_nb.metrics.embed import encodec_latents


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


def test_encodec_latents_resample_and_match_channels(tiny):
    x = clips(2)
    stereo16 = np.repeat(x[:, :, ::2], 2, axis=1)  # 16 kHz, two channels
    got = encodec_latents(stereo16, 16000, tiny)
    assert got.shape == encodec_latents(x, 32000, tiny).shape
    assert np.isfinite(got).all()
    with pytest.raises(ValueError, match="sr must be a positive integer sample rate in Hz"):
        encodec_latents(x, -1, tiny)
