"""The decode engine: same tokens as transformers' generate, capture, chunks, OOM message."""

from __future__ import annotations

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb import engine
from musicgen_nb import generation as G
from musicgen_nb.engine import Decoder, Sampler, _linear_fn, cache_bytes, oom_message

PROMPTS = ["lo-fi beat", "jazz piano"]
FRAMES = 30


class _CodesSpy:
    """Keep the codes transformers' generate hands to EnCodec."""

    def __init__(self, model):
        self.enc = model.audio_encoder
        self.codes = None

    def __enter__(self):
        orig = self.enc.decode

        def decode(codes, *args, **kwargs):
            self.codes = codes[0].clone()
            return orig(codes, *args, **kwargs)

        self.enc.decode = decode
        return self

    def __exit__(self, *exc):
        del self.enc.decode


def _ours(s, gs, seed, **kw):
    sampler = Sampler(guidance_scale=gs, **kw)
    with torch.inference_mode():
        cond = G.conditioning(s, PROMPTS, negative=None, guidance_scale=gs)
        gen = torch.Generator().manual_seed(seed)
        out, *_ = G.run_window(
            s, cond, batch=len(PROMPTS), prefix=None, frames=FRAMES, sampler=sampler, generator=gen,
            progress=G._Progress(1, False, None), trace=None, capture=None, stop=None,
        )  # fmt: skip
    return out


def _reference(s, gs, seed, **kw):
    inputs = s.processor(text=PROMPTS, padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    with torch.inference_mode(), _CodesSpy(s.model) as spy:
        s.model.generate(
            **inputs,
            do_sample=True,
            guidance_scale=gs,
            max_new_tokens=FRAMES + s.num_codebooks - 1,
            **kw,
        )
    return spy.codes


SAMPLING = [dict(top_k=250), dict(top_k=0, top_p=0.9), dict(top_k=50, temperature=0.7)]


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
@pytest.mark.parametrize("gs", [1.0, 3.0])
@pytest.mark.parametrize("kw", SAMPLING, ids=["top_k", "top_p", "temp"])
def test_same_tokens_as_transformers(request, name, gs, kw):
    s = request.getfixturevalue(name)
    ours = _ours(s, gs, 11, **kw)
    ref = _reference(s, gs, 11, **kw)
    assert ours.shape == ref.shape == (2, s.num_codebooks, FRAMES)
    assert torch.equal(ours, ref)


def test_seed_changes_tokens(tiny):
    assert not torch.equal(_ours(tiny, 3.0, 1, top_k=250), _ours(tiny, 3.0, 2, top_k=250))


def _cond(s, gs=3.0):
    return G.conditioning(s, PROMPTS, negative=None, guidance_scale=gs)


def _tokens(s, rows, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, s.codebook_size, (rows, s.num_codebooks, n), generator=g)


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
def test_chunk_equals_steps(request, name):
    """Feeding n tokens at once (causal chunk after earlier positions) matches one at a time."""
    s = request.getfixturevalue(name)
    with torch.inference_mode():
        cond = _cond(s)
        rows = cond.hidden.shape[0]
        toks = _tokens(s, rows, 9)
        a = Decoder(s.model, cond, max_len=12)
        a.step(toks[:, :, :1])
        chunk = a.step(toks[:, :, 1:9])
        b = Decoder(s.model, cond, max_len=12)
        for t in range(9):
            last = b.step(toks[:, :, t : t + 1])
    torch.testing.assert_close(chunk, last, rtol=1e-4, atol=1e-4)


def test_logits_match_transformers_forward(tiny):
    """One engine step equals the transformers decoder's forward on the same inputs."""
    s = tiny
    with torch.inference_mode():
        cond = _cond(s, gs=1.0)
        toks = _tokens(s, 2, 5)
        dec = Decoder(s.model, cond, max_len=8)
        for t in range(5):
            ours = dec.step(toks[:, :, t : t + 1])
        ref = _forward_logits(s, toks, cond)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def _forward_logits(s, toks, cond):
    """transformers' decoder forward on ``toks`` ``[2, K, n]``: last-position logits ``[2, K, V]``."""
    ref = s.model.decoder(
        input_ids=toks.reshape(2 * s.num_codebooks, toks.shape[-1]),
        encoder_hidden_states=cond.hidden,
        encoder_attention_mask=cond.mask.long(),
    ).logits[:, -1]
    return ref.reshape(2, s.num_codebooks, -1)


def test_layers_run_compiled_and_equal_python(tiny):
    """The layers run through TorchScript here, with the same logits as the Python function."""
    assert isinstance(engine._compiled(), torch.jit.ScriptFunction)
    with torch.inference_mode():
        cond = _cond(tiny)
        toks = _tokens(tiny, cond.hidden.shape[0], 6)
        scripted, python = (
            Decoder(tiny.model, cond, max_len=8),
            Decoder(tiny.model, cond, max_len=8),
        )
        python.run = engine._layers
        assert scripted.run is not python.run
        for t in range(6):
            a = scripted.step(toks[:, :, t : t + 1])
            b = python.step(toks[:, :, t : t + 1])
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_bf16_logits_match_transformers_forward():
    s = mg.load("tiny", precision="bf16")
    assert s.model.decoder.lm_heads[0].weight.dtype == torch.bfloat16
    with torch.inference_mode():
        cond = _cond(s, gs=1.0)
        toks = _tokens(s, 2, 4)
        dec = Decoder(s.model, cond, max_len=6)
        assert dec.table.mode == engine._LINEAR
        for t in range(4):
            ours = dec.step(toks[:, :, t : t + 1])
        ref = _forward_logits(s, toks, cond)
    torch.testing.assert_close(ours.float(), ref.float(), rtol=0.05, atol=0.05)


def test_int8_without_fbgemm_dequantizes():
    """Int8 layers without fbgemm weights run dequantized: same logits as transformers' forward."""
    from musicgen_nb.quantize import Int8Linear

    s = mg.load("tiny", precision="int8")
    for m in s.model.decoder.modules():
        if isinstance(m, Int8Linear):
            m.qweight, m.packed, m.backend = m.int8_weight(), None, "dequantize"
    with torch.inference_mode():
        cond = _cond(s, gs=1.0)
        toks = _tokens(s, 2, 4)
        dec = Decoder(s.model, cond, max_len=6)
        assert dec.table.mode == engine._DEQUANT and dec.table.fused_qkv
        for t in range(4):
            ours = dec.step(toks[:, :, t : t + 1])
        ref = _forward_logits(s, toks, cond)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_unsupported_layers_are_refused():
    s = mg.load("tiny")
    layer = s.model.decoder.model.decoder.layers[1]
    layer.fc2 = torch.nn.Sequential(layer.fc2)
    with pytest.raises(TypeError, match="fc2: every linear of the decoder must be nn.Linear"):
        Decoder(s.model, _cond(s), max_len=4)
    layer.activation_fn = torch.nn.ReLU()
    with pytest.raises(TypeError, match="exact GELU"):
        Decoder(s.model, _cond(s), max_len=4)


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
def test_capture_keeps_logits_and_records(request, name):
    s = request.getfixturevalue(name)
    layers = [0, len(s.model.decoder.model.decoder.layers) - 1]
    with torch.inference_mode():
        cond = _cond(s)
        rows = cond.hidden.shape[0]
        toks = _tokens(s, rows, 4)
        plain = Decoder(s.model, cond, max_len=6)
        cap = Decoder(
            s.model, cond, max_len=6, capture={"layers": layers, "heads": [0, 1], "rows": 2}
        )
        for t in range(4):
            a = plain.step(toks[:, :, t : t + 1])
            b = cap.step(toks[:, :, t : t + 1])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert sorted(cap.captured_self) == layers
    first = cap.captured_self[layers[0]]
    assert len(first) == 4 + (1 if s.is_melody else 0)
    assert first[-1].shape[0] == 2 and first[-1].dtype == torch.float16
    if s.is_melody:
        assert cap.captured_cross == {}
    else:
        assert sorted(cap.captured_cross) == layers
        w = cap.captured_cross[layers[0]][-1].float()
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-2, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_linear_fn_matches_module(dtype, bias, rows):
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 80, bias=bias).to(dtype)
    x = torch.randn(rows, 48, dtype=dtype)
    fn = _linear_fn(lin)
    with torch.inference_mode():
        y = fn(x)
        assert y.is_contiguous()
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(y, lin(x), rtol=tol, atol=tol)


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


# ----------------------------------------------------------------- sampling numerics
def _branches(seed=0, rows=2, vocab=64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 4, vocab, generator=g) * 3 for _ in range(3)]


@pytest.mark.parametrize("scale", [2e4, 3e5])
def test_extreme_guidance_keeps_the_distribution(scale):
    from musicgen_nb.engine import EXTREME_SCALE, Sampler, guide

    assert scale > EXTREME_SCALE
    c, u, _ = _branches()
    sampler = Sampler(guidance_scale=scale, temperature=1.0)
    guided, _, _ = guide(torch.cat([c, u]), 2, sampler)
    ref = (u.double() + scale * (c.double() - u.double())).softmax(-1)
    torch.testing.assert_close(guided.softmax(-1), ref, atol=1e-9, rtol=0)
    assert (guided.amax(-1) == 0).all() and not guided.isnan().any()


@pytest.mark.parametrize("beta", [0.3, 2.0, 5e4])
def test_extreme_double_guidance_keeps_the_distribution(beta):
    from musicgen_nb.engine import Sampler, guide

    c, m, u = _branches(1)
    scale = 3e4
    sampler = Sampler(guidance_scale=scale, cfg_coef_beta=beta)
    guided, _, _ = guide(torch.cat([c, m, u]), 2, sampler)
    c, m, u = c.double(), m.double(), u.double()
    ref = (u + scale * (m + beta * (c - m) - u)).softmax(-1)
    torch.testing.assert_close(guided.softmax(-1), ref, atol=1e-9, rtol=0)


def test_limits_are_the_argmax():
    from musicgen_nb.engine import Sampler, guide, sample, warp

    c, u, _ = _branches(2)
    for sampler in (
        Sampler(guidance_scale=1e308),
        Sampler(guidance_scale=1e308, temperature=1e-300),
    ):
        guided, _, _ = guide(torch.cat([c, u]), 2, sampler)
        tokens, probs = sample(warp(guided, sampler), sampler, torch.Generator().manual_seed(0))
        assert torch.equal(tokens, (c - u).argmax(-1)) and (probs.amax(-1) == 1).all()
    cold = Sampler(guidance_scale=1.0, temperature=1e-45, top_p=0.5)
    tokens, probs = sample(warp(c, cold), cold, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, c.argmax(-1)) and not probs.isnan().any()


def test_small_temperature_keeps_the_distribution():
    from musicgen_nb.engine import EXTREME_TEMPERATURE, Sampler, warp

    c, _, _ = _branches(3)
    t = EXTREME_TEMPERATURE / 2
    out = warp(c, Sampler(temperature=t, top_k=0))
    torch.testing.assert_close(out.softmax(-1), (c.double() / t).softmax(-1), atol=1e-9, rtol=0)


def test_half_precision_guidance_does_not_overflow():
    from musicgen_nb.engine import Sampler, guide

    c, u, _ = _branches(4)
    sampler = Sampler(guidance_scale=5000.0)  # 5000 * |c - u| passes fp16's 65504
    guided, _, _ = guide(torch.cat([c, u]).half(), 2, sampler)
    assert guided.dtype == torch.float32 and guided.isfinite().all()
