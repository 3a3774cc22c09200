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


def test_call_bytes_counts_one_window_and_grows_with_the_batch(tiny):
    from musicgen_nb.engine.memory import call_bytes

    one = call_bytes(tiny, 1, tiny.max_frames)
    assert one["total"] == one["kv"] + one["activations"] + one["codec"]
    assert one["kv"] == cache_bytes(tiny.model, 2, tiny.max_frames + 4, torch.float32)
    # past one window the cache stops growing: one window's cache is alive at a time
    assert call_bytes(tiny, 1, 50 * tiny.max_frames)["kv"] == one["kv"]
    assert call_bytes(tiny, 4, tiny.max_frames)["kv"] == 4 * one["kv"]


def test_largest_fit_is_the_boundary_of_the_estimate(tiny):
    from musicgen_nb.engine.memory import call_bytes, largest_fit

    free = call_bytes(tiny, 2, 120)["total"]
    longest = largest_fit(tiny, 2, 200, free)[0]
    assert call_bytes(tiny, 2, longest)["total"] <= free < call_bytes(tiny, 2, longest + 1)["total"]
    assert longest >= 120 and largest_fit(tiny, 4, 120, free)[1] == 2
    assert largest_fit(tiny, 1, 100, 10) == (0, 0)


def test_device_free_reads_the_faked_figure(tiny):
    from musicgen_nb.engine.memory import device_free
    from musicgen_nb.engine.precision import fake_device

    with fake_device("cuda", free_bytes=7 * 10**9):
        assert device_free(torch.device("cuda")) == 7 * 10**9
    with fake_device("cpu", free_bytes=123):
        assert device_free(torch.device("cpu")) == 123
    assert device_free(torch.device("cpu")) > 10**6  # the host's available memory


def test_release_and_out_of_memory_error():
    from musicgen_nb.engine.memory import OutOfMemory, release

    release(torch.device("cpu"))  # nothing held: a no-op off CUDA
    err = OutOfMemory("out of memory", partial="done")
    assert isinstance(err, MemoryError) and err.partial == "done"


def test_codec_term_grows_with_the_batch_decoded_in_one_call(tiny):
    """tokens.decode sends the whole batch through EnCodec at once: the codec term is per item."""
    from musicgen_nb.engine.memory import call_bytes

    one, three = call_bytes(tiny, 1, 120), call_bytes(tiny, 3, 120)
    assert three["codec"] == 3 * one["codec"] > 0


def test_device_free_on_cuda_counts_the_blocks_torch_keeps_cached(monkeypatch):
    """No GPU here: torch.cuda's figures are stood in for (an sm75 card on a torch < 2.4, where
    is_bf16_supported has no including_emulation=)."""
    from musicgen_nb.engine.memory import device_free
    from musicgen_nb.engine.precision import device_facts

    def old_is_bf16_supported():
        return True  # counts emulation, and takes no argument

    for name, value in dict(
        is_available=lambda: True, current_device=lambda: 0, mem_get_info=lambda i: (1000, 5000),
        get_device_capability=lambda i=None: (7, 5), memory_reserved=lambda d=None: 300,
        memory_allocated=lambda d=None: 100, is_bf16_supported=old_is_bf16_supported,
    ).items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, value)
    facts = device_facts(torch.device("cuda"))
    assert facts.capability == (7, 5) and facts.bf16_native is False
    assert device_free(torch.device("cuda")) == 1000 + 300 - 100


def test_release_collects_only_after_an_oom_or_with_much_cached(monkeypatch):
    """No GPU here: torch.cuda's figures are stood in for, and empty_cache is counted."""
    from musicgen_nb.engine.memory import RELEASE_CACHED, release

    calls, cached = [], [0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: cached[0])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(cached[0]))
    cuda = torch.device("cuda")
    release(cuda)  # little cached: nothing to do, no gc.collect per call
    release(cuda, force=True)  # after an out-of-memory error
    cached[0] = RELEASE_CACHED + 1
    release(cuda)  # much cached: handed back
    assert calls == [0, RELEASE_CACHED + 1]


def test_the_estimate_counts_the_static_steps_fused_copies(tiny):
    from musicgen_nb.engine.memory import call_bytes
    from musicgen_nb.engine.static import fused_weights, release

    dynamic = call_bytes(tiny, 1, 100)
    assert dynamic["fused"] == 0  # "auto" runs the dynamic step on the CPU
    tiny.step = "static"
    try:
        static = call_bytes(tiny, 1, 100)
    finally:
        tiny.step = "auto"
    lm = tiny.model.decoder
    layers = list(lm.model.decoder.layers)
    w, b, _, heads = fused_weights(lm, layers, True)
    copies = [w[i] for i in range(0, len(w), 6)] + [b[i] for i in range(0, len(b), 6)] + [heads]
    made = sum(t.numel() * t.element_size() for t in copies if t is not None)
    release(tiny.model)
    assert made <= static["fused"] <= 1.01 * made
    assert static["total"] == dynamic["total"] + static["fused"]
