"""What the metric models share: audio inputs, seeded builds, stand-ins for hub names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_nb.metrics.common import audio_input, mono_at, seeded, standin


def test_audio_input_takes_arrays_or_a_generation(tiny):
    x = np.zeros((1, 1, 10), np.float32)
    assert audio_input(x, 8000) == (x, 8000)
    with pytest.raises(ValueError, match="sr is required with an audio array"):
        audio_input(x, None)
    g = tiny.generate("jazz", duration=0.5, seed=0, progress=False)
    audio, sr = audio_input(g, None)
    assert audio is g.audio and sr == g.sample_rate
    assert audio_input(g, 16000)[1] == 16000  # an explicit rate wins


def test_mono_at_averages_channels_and_resamples():
    x = np.stack([np.ones((1, 3200)), np.zeros((1, 3200))], axis=1)  # [1, 2, 3200]
    out = mono_at(x.astype(np.float32), 32000, 32000)
    np.testing.assert_allclose(out, 0.5)
    assert mono_at(x.astype(np.float32), 32000, 16000).shape == (1, 1600)
    with pytest.raises(ValueError, match="sr must be a positive integer sample rate in Hz, got 0"):
        mono_at(x, 0, 16000)


def test_seeded_builds_the_same_weights_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = seeded(lambda: torch.nn.Linear(3, 3))
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    b = seeded(lambda: torch.nn.Linear(3, 3))
    assert torch.equal(a.weight, b.weight) and not a.training


def test_standin_replaces_hub_names_only_when_enabled(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MUSICGEN_NB_STANDIN", raising=False)
    assert standin("laion/larger_clap_music", "tiny-clap") == "laion/larger_clap_music"
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    assert standin("laion/larger_clap_music", "tiny-clap") == "tiny-clap"
    assert standin(str(tmp_path), "tiny-clap") == str(tmp_path)  # a local directory is kept
    assert standin("tiny-ast", "tiny-ast") == "tiny-ast"
