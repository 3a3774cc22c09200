"""Tests for musicgen_nb.attention.weights: the captured weights and their accessors."""

import numpy as np
import pytest

from musicgen_nb.attention import Attentions

K = 4
ATOL = 5e-3  # float16 storage


@pytest.fixture(scope="module")
def captured(tiny):
    return tiny.generate("x", duration=2, seed=0, trace=True, attentions=True, progress=False)


@pytest.fixture(scope="module")
def plain(tiny):
    return tiny.generate("x", duration=2, seed=0, progress=False)


def _check_self(sa):
    """Lower triangular, float16, every row sums to 1 over the keys that exist."""
    assert sa.dtype == np.float16
    f = sa.astype(np.float32)
    assert np.abs(np.triu(f, 1)).max() == 0
    np.testing.assert_allclose(f.sum(-1), 1.0, atol=ATOL)
    assert (f >= 0).all()


def test_capture_does_not_change_codes(captured, plain):
    np.testing.assert_array_equal(captured.codes, plain.codes)


def test_shapes_and_metadata(captured, tiny):
    a = captured.attentions
    assert isinstance(a, Attentions)
    n = 100 + K - 1  # BOS + delayed frames, last position never fed
    tok = tiny.processor.tokenizer
    tokens = tok.convert_ids_to_tokens(tok("x").input_ids)
    assert a.layers == [0, 1] and a.heads is None
    assert a.text_tokens == [tokens]
    assert a.cross.shape == (2, 1, n, len(tokens)) and a.cross.dtype == np.float16
    assert a.self_attn.shape == (2, 1, n, n)
    assert a.prefix_len == 0 and a.frame_rate == 50 and a.steps == n == a.positions
    np.testing.assert_allclose(a.times[:3], [0, 0.02, 0.04])
    assert "layers=[0, 1]" in repr(a) and a.nbytes == a.cross.nbytes + a.self_attn.nbytes


def test_cross_rows_sum_to_one(captured):
    a = captured.attentions
    sums = a.cross.astype(np.float32).sum(-1)  # [layers, batch, steps]
    np.testing.assert_allclose(sums, 1.0, atol=ATOL)
    assert (a.cross >= 0).all()


def test_self_attention_lower_triangular_rows_sum_to_one(captured):
    _check_self(captured.attentions.self_attn)
    # the first query (BOS) can only see itself
    np.testing.assert_allclose(
        captured.attentions.self_attn[:, :, 0, 0].astype(np.float32), 1.0, atol=ATOL
    )


def test_accessors(captured):
    a = captured.attentions
    c = a.cross_for(1, 0)
    assert c.dtype == np.float32 and c.shape == (a.steps, len(a.text_tokens[0]))
    np.testing.assert_array_equal(c, a.cross[1, 0].astype(np.float32))
    np.testing.assert_array_equal(a.self_for(0, 0), a.self_attn[0, 0].astype(np.float32))
    with pytest.raises(ValueError, match="captured layers: \\[0, 1\\]"):
        a.cross_for(5, 0)
    with pytest.raises(ValueError, match="item must be in \\[0, 1\\)"):
        a.self_for(0, 1)
    with pytest.raises(TypeError, match="layer must be an int"):
        a.self_for("0")


def test_layer_and_head_selection(tiny, plain):
    g = tiny.generate(
        "x", duration=2, seed=0, attentions=True, attention_layers=[-1], attention_heads=[0, 2],
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(g.codes, plain.codes)
    a = g.attentions
    assert a.layers == [1] and a.heads == [0, 2]
    assert a.cross.shape == (1, 1, 103, 3) and a.self_attn.shape == (1, 1, 103, 103)
    _check_self(a.self_attn)
    np.testing.assert_allclose(a.cross.astype(np.float32).sum(-1), 1.0, atol=ATOL)
    with pytest.raises(ValueError, match="captured layers: \\[1\\]"):
        a.self_for(0)


def test_head_average_is_mean_of_heads(tiny):
    kw = dict(duration=0.3, seed=0, attentions=True, attention_layers=1, progress=False)
    every = tiny.generate("jazz", **kw).attentions
    single = [tiny.generate("jazz", attention_heads=h, **kw).attentions for h in range(4)]
    mean_cross = np.mean([s.cross.astype(np.float32) for s in single], axis=0)
    mean_self = np.mean([s.self_attn.astype(np.float32) for s in single], axis=0)
    np.testing.assert_allclose(every.cross.astype(np.float32), mean_cross, atol=2e-3)
    np.testing.assert_allclose(every.self_attn.astype(np.float32), mean_self, atol=2e-3)
    # heads differ from each other: the selection is real
    assert (
        np.abs(single[0].cross.astype(np.float32) - single[1].cross.astype(np.float32)).max() > 1e-3
    )


def test_batch_padding_and_unconditional_items(tiny):
    g = tiny.generate(
        ["x", "a much longer prompt", None], duration=0.3, seed=0, attentions=True, progress=False
    )
    a = g.attentions
    lens = [len(t) for t in a.text_tokens]
    assert lens[0] < lens[1] and lens[2] == 0
    assert a.cross.shape[-1] == lens[1]
    cross = a.cross.astype(np.float32)
    assert (cross[:, 0, :, lens[0] :] == 0).all()  # padding keys
    np.testing.assert_allclose(cross[:, :2].sum(-1), 1.0, atol=ATOL)
    assert (cross[:, 2] == 0).all()  # no text: nothing cross-attended
    assert a.cross_for(0, 0).shape[1] == lens[0]
    _check_self(a.self_attn)


def test_melody_prefix(tiny_melody):
    g = tiny_melody.generate("x", duration=0.5, seed=0, attentions=True, progress=False)
    a = g.attentions
    ntok = len(a.text_tokens[0])
    assert a.cross is None
    assert a.chroma_len == 235 and a.prefix_len == 235 + ntok
    n = a.prefix_len + 25 + K - 1
    assert a.self_attn.shape == (2, 1, n, n) and a.steps == 25 + K - 1
    _check_self(a.self_attn)
    with pytest.raises(ValueError, match="no cross-attention"):
        a.cross_for(0, 0)


def test_long_form_captures_first_window(tiny):
    g = tiny.generate(
        "x", duration=4.2, extend_stride=0.5, seed=0, attentions=True, attention_layers=0,
        progress=False,
    )  # fmt: skip
    assert len(g.windows) == 2
    n = 200 + K - 1  # tiny's window is 200 frames
    assert g.attentions.self_attn.shape == (1, 1, n, n)
    _check_self(g.attentions.self_attn)


def test_matches_transformers_eager_attention(tiny):
    """The captured weights are the ones transformers' eager attention computes."""
    import copy

    import torch

    import musicgen_nb as mg
    from musicgen_nb.conditioning import encode_text

    prompts = ["jazz", "a longer rock prompt"]
    g = tiny.generate(
        prompts, duration=0.5, seed=0, guidance_scale=1.0, attentions=True, progress=False
    )
    a = g.attentions
    T = g.codes.shape[-1]
    seq = mg.patterns.interleave(g.codes, mg.patterns.build("delay", K, T), tiny.special_id)
    bos = np.full((len(prompts), K, 1), tiny.special_id)
    ids = np.concatenate([bos, seq], -1)[..., : T + K - 1]  # the positions fed to the decoder
    decoder = copy.deepcopy(tiny.model.decoder)  # eager on a copy: the shared model is untouched
    decoder.config._attn_implementation = "eager"
    hidden, mask = encode_text(tiny, prompts)
    with torch.no_grad():
        out = decoder(
            input_ids=torch.as_tensor(ids).reshape(-1, T + K - 1), encoder_hidden_states=hidden,
            encoder_attention_mask=mask.long(), output_attentions=True, return_dict=True,
        )  # fmt: skip
    for i, layer in enumerate(a.layers):
        ref_self = out.attentions[layer].mean(1).numpy()
        ref_cross = out.cross_attentions[layer].mean(1).numpy()
        np.testing.assert_allclose(a.self_attn[i].astype(np.float32), ref_self, atol=2e-3)
        np.testing.assert_allclose(a.cross[i].astype(np.float32), ref_cross, atol=2e-3)


def test_stopped_run_keeps_what_was_captured(tiny):
    import threading

    stop = threading.Event()
    g = tiny.generate(
        "x", duration=1, seed=0, attentions=True, progress=False, stop=stop,
        callback=lambda done, total: stop.set() if done >= 10 else None,
    )  # fmt: skip
    assert g.interrupted
    a = g.attentions
    assert a.self_attn.shape == (2, 1, 11, 11) and a.cross.shape[:3] == (2, 1, 11)
    _check_self(a.self_attn)
    np.testing.assert_allclose(a.cross.astype(np.float32).sum(-1), 1.0, atol=ATOL)


def test_capture_does_not_change_codes_in_half_precision_or_int8():
    """Capture computes the weights beside the fused attention: bf16 (53.6% of codes agreed
    before, on 2 s of tiny) and int8 (kernel path) give the same codes with it as without."""
    import musicgen_nb as mg

    for precision in ("bf16", "int8"):
        s = mg.load("tiny", precision=precision)
        kw = dict(duration=2.0, seed=0, progress=False)
        plain = s.generate(["jazz", "rock"], **kw)
        got = s.generate(["jazz", "rock"], attentions=True, **kw)
        np.testing.assert_array_equal(got.codes, plain.codes)
        rows = got.attentions.self_attn[0, 0].astype(np.float32).sum(-1)
        np.testing.assert_allclose(rows, 1.0, atol=2e-2)
