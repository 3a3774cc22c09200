"""Tests for musicgen_nb.generation.pipeline (generate and run): generate end to end, seeds and conditioning."""

import numpy as np
import pytest


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


def test_batch_with_unconditional(tiny):
    g = tiny.generate(["jazz", None, "rock"], duration=1, seed=3, progress=False)
    assert g.audio.shape == (3, 1, 32000) and g.codes.shape == (3, 4, 50)
    assert g.prompts == ["jazz", None, "rock"]
    alone = tiny.generate(None, duration=1, seed=3, progress=False)
    assert alone.prompts == [None] and alone.codes.shape == (1, 4, 50)


def test_same_seed_same_result_and_fresh_seed_recorded(tiny):
    a, b = gen(tiny, seed=5, duration=1), gen(tiny, seed=5, duration=1)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.audio, b.audio)
    c = gen(tiny, seed=6, duration=1)
    assert (a.codes != c.codes).any()
    d = tiny.generate("jazz", duration=1, progress=False)
    assert isinstance(d.seed, int) and d.seed >= 0
    again = gen(tiny, seed=d.seed, duration=1)
    np.testing.assert_array_equal(d.codes, again.codes)


def test_conditioning_matters(tiny):
    base = gen(tiny, "lo-fi beat", duration=1, seed=2)
    other = gen(tiny, "epic orchestral choir", duration=1, seed=2)
    assert (base.codes != other.codes).mean() > 0.2
    neg = gen(tiny, "lo-fi beat", duration=1, seed=2, negative_prompt="drums")
    assert (base.codes != neg.codes).mean() > 0.2
    unguided = gen(tiny, "lo-fi beat", duration=1, seed=2, guidance_scale=1.0)
    assert (base.codes != unguided.codes).mean() > 0.2


SEED_PROMPTS = ["lo-fi beat", "epic orchestral choir with a long name", None, "jazz"]


MELODY_PROMPTS = ["lo-fi beat", "jazz piano", "rock drums", "ambient pad"]


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_batched_equals_alone_per_item(request, name, guidance_scale):
    s = request.getfixturevalue(name)
    prompts = MELODY_PROMPTS if s.is_melody else SEED_PROMPTS
    if s.is_melody:
        assert len({len(s.processor.tokenizer(p).input_ids) for p in prompts}) == 1
    seeds = [7, 7, 123, 2**31 + 5]
    kw = dict(duration=1.0, guidance_scale=guidance_scale, progress=False)
    batched = s.generate(prompts, seed=seeds, **kw)
    assert batched.seed == seeds
    for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        alone = s.generate(prompt, seed=seed, **kw)
        assert alone.seed == seed
        np.testing.assert_array_equal(batched.codes[i], alone.codes[0])
        np.testing.assert_array_equal(batched.audio[i], alone.audio[0])


def test_item_does_not_depend_on_batch_mates_or_order(tiny):
    kw = dict(duration=1.0, progress=False)
    a = tiny.generate(["jazz", "rock", "ambient"], seed=[1, 2, 3], **kw)
    b = tiny.generate(["ambient", "metal", "jazz"], seed=[3, 9, 1], **kw)
    np.testing.assert_array_equal(a.codes[0], b.codes[2])
    np.testing.assert_array_equal(a.codes[2], b.codes[0])
    assert (a.codes[1] != b.codes[1]).any()


def test_int_seed_means_seed_plus_index(tiny):
    kw = dict(duration=1.0, progress=False)
    g = tiny.generate(["jazz", "jazz", "jazz"], seed=40, **kw)
    assert g.seed == [40, 41, 42]
    # same prompt, different seeds: the items differ
    assert (g.codes[0] != g.codes[1]).any() and (g.codes[1] != g.codes[2]).any()
    explicit = tiny.generate(["jazz", "jazz", "jazz"], seed=[40, 41, 42], **kw)
    np.testing.assert_array_equal(g.codes, explicit.codes)
    np.testing.assert_array_equal(g.codes[0], tiny.generate("jazz", seed=40, **kw).codes[0])
    fresh = tiny.generate(["a", "b"], **kw)
    assert len(fresh.seed) == 2 and fresh.seed[1] == fresh.seed[0] + 1


def test_generate_is_run_of_make_request(tiny):
    from musicgen_nb.generation import make_request, run

    kw = dict(duration=0.5, seed=[3, 4], progress=False)
    g = gen(tiny, ["jazz", None], **kw)
    again = run(tiny, make_request(tiny, ["jazz", None], **kw))
    np.testing.assert_array_equal(g.codes, again.codes)
    np.testing.assert_array_equal(g.audio, again.audio)
    with pytest.raises(TypeError, match="on_frames"):
        tiny.generate("x", duration=0.5, on_frames=print)  # not an option of generate


def test_run_takes_only_a_request(tiny):
    from musicgen_nb.generation import run

    with pytest.raises(TypeError, match="req must be a Request from make_request.*got str"):
        run(tiny, "jazz")


def test_out_of_memory_keeps_the_windows_done_and_pins_nothing(tiny):
    """An OOM raised in window 2 (from the step hook, where a CUDA OOM strikes): the error
    says what fits, keeps windows 0-1 as a partial result, and reaches no decoder, even
    held as ``sys.last_value`` the way Jupyter holds it."""
    import sys

    import torch
    from _devices import live_caches, live_decoders, release_static_pools

    from musicgen_nb.engine.memory import OutOfMemory

    def hook(done, total):
        if done == 350:  # window 2 runs steps 327..409
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    release_static_pools()  # other tests' static-step pools outlive their calls by design
    with pytest.raises(OutOfMemory) as info:
        tiny.generate("jazz", duration=8.0, seed=0, progress=False, callback=hook)
    sys.last_value = err = info.value
    try:
        assert live_decoders() == 0 and live_caches(tiny) == 0
        assert err.__context__ is None and err.__cause__ is None
        assert "out of memory" in str(err) and "the estimate fits" in str(err)
        part = err.partial
        assert part.interrupted and part.windows == [(0, 200), (120, 320)]
        full = tiny.generate("jazz", duration=8.0, seed=0, progress=False)
        np.testing.assert_array_equal(part.codes, full.codes[..., :320])
        assert part.audio.shape[-1] == 320 * tiny.hop_length
    finally:
        del sys.last_value


def test_out_of_memory_in_the_first_window_has_no_partial(tiny):
    import torch

    from musicgen_nb.engine.memory import OutOfMemory

    def hook(done, total):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(OutOfMemory) as info:
        tiny.generate("jazz", duration=1.0, seed=0, progress=False, callback=hook)
    assert info.value.partial is None


def test_out_of_memory_in_the_final_codec_decode_keeps_every_code(tiny, monkeypatch):
    """The windows are done and EnCodec's decode runs out (simulated where a CUDA OOM strikes,
    the codec's decode): OutOfMemory, not torch's raw error, with all the codes on the CPU."""
    import sys

    import torch
    from _devices import live_decoders

    from musicgen_nb.engine.memory import OutOfMemory

    def decode(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    full = tiny.generate("jazz", duration=1.0, seed=0, progress=False)
    monkeypatch.setattr(tiny.model.audio_encoder, "decode", decode)
    with pytest.raises(OutOfMemory) as info:
        tiny.generate("jazz", duration=1.0, seed=0, progress=False)
    sys.last_value = err = info.value
    try:
        assert err.__context__ is None and live_decoders() == 0
        assert "EnCodec's final decode" in str(err) and err.partial is None
        assert err.codes.device.type == "cpu"
        np.testing.assert_array_equal(err.codes.numpy(), full.codes)
    finally:
        del sys.last_value
