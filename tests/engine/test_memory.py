"""Memory: the key/value cache size and the out-of-memory message."""

from __future__ import annotations

import torch

import musicgen_nb as mg
from musicgen_nb.engine import cache_bytes, oom_message


def test_cache_bytes(tiny):
    cfg = tiny.model.config.decoder
    expected = 2 * cfg.num_hidden_layers * 4 * cfg.hidden_size * 100 * 4
    assert cache_bytes(tiny.model, 4, 100, torch.float32) == expected


def test_oom_message_names_smaller_model_and_dtype(tiny, monkeypatch):
    msg = oom_message(tiny, batch=3, duration=12.0)
    assert "out of memory" in msg and "'tiny'" in msg
    assert "precision='bf16'" in msg and "now 3" in msg and "now 12 s" in msg
    monkeypatch.setattr(tiny, "name", "facebook/musicgen-large")
    msg = oom_message(tiny)
    assert "mg.load('medium')" in msg


def test_oom_message_names_both_half_precisions_and_the_smaller_models(tiny, monkeypatch):
    """The one message (it replaced generation's copy): both half precisions, the device's
    first; the smaller model of every larger one, melody included."""
    msg = oom_message(tiny, batch=1, duration=None)
    assert "precision='bf16') or precision='fp16'" in msg
    assert "fewer prompts" not in msg and "shorter duration" not in msg
    for name, smaller in [
        ("melody", "small"),
        ("stereo-melody", "stereo-small"),
        ("large", "medium"),
    ]:
        monkeypatch.setattr(tiny, "name", f"facebook/musicgen-{name}")
        assert f"a smaller model (mg.load('{smaller}'))" in oom_message(tiny)
    big = mg.MusicGen(tiny.model, tiny.processor, name="facebook/musicgen-large", precision="fp32")
    msg = oom_message(big, 4, 30)
    assert "mg.load('medium')" in msg and "precision='fp16'" in msg
    assert "fewer prompts per call (now 4)" in msg and "(now 30 s)" in msg
    monkeypatch.setattr(tiny, "precision", "bf16")
    assert "half precision" not in oom_message(tiny)
