"""The static-shape step: the same tokens as the dynamic step and transformers' generate, its
buffers reused (same addresses) across steps, windows and calls, no host sync in a step, the
step choice, int8 on the pooled cache, the linear form (F.linear, or the dynamic step's W @ x.T)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _engine import PROMPTS, make_cond, tokens
from torch.utils._python_dispatch import TorchDispatchMode

import musicgen_nb as mg
from musicgen_nb.conditioning import conditioning
from musicgen_nb.engine import Decoder, Sampler, guide, sample, warp
from musicgen_nb.engine import static as S
from musicgen_nb.engine.graphs import eager, pool_of
from musicgen_nb.generation.loop import Progress, run_window

FRAMES = 24


@pytest.fixture(scope="module")
def tiny_int8():
    return mg.load("tiny", precision="int8")


@pytest.fixture(autouse=True)
def _no_pool_from_other_tests(tiny):
    """Each test starts with no pool, graphs or fused copies on the shared ``tiny``, whatever
    ran before it in this worker."""
    S.release(tiny.model)
    yield
    S.release(tiny.model)


def _window(s, step, sampler, seed, prefix=None, frames=FRAMES):
    s.step = step
    try:
        with torch.inference_mode():
            cond = conditioning(s, PROMPTS, negative=None, guidance_scale=sampler.guidance_scale)
            gen = torch.Generator().manual_seed(seed)
            out, *_, dec = run_window(
                s, cond, batch=len(PROMPTS), prefix=prefix, frames=frames, sampler=sampler,
                generator=gen, progress=Progress(1, False, None), trace=None, capture=None,
                stop=None,
            )  # fmt: skip
    finally:
        s.step = "auto"
    return out, dec


def _transformers(s, sampler, seed, frames=FRAMES):
    inputs = s.processor(text=PROMPTS, padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    kept = {}
    enc, orig = s.model.audio_encoder, s.model.audio_encoder.decode

    def decode(codes, *args, **kwargs):
        kept["codes"] = codes[0].clone()
        return orig(codes, *args, **kwargs)

    enc.decode = decode
    try:
        with torch.inference_mode():
            s.model.generate(
                **inputs, do_sample=sampler.do_sample, guidance_scale=sampler.guidance_scale,
                top_k=sampler.top_k, max_new_tokens=frames + s.num_codebooks - 1,
            )  # fmt: skip
    finally:
        del enc.decode
    return kept["codes"]


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampled"])
def test_static_gives_the_dynamic_steps_and_transformers_tokens(request, name, do_sample):
    s = request.getfixturevalue(name)
    sampler = Sampler(guidance_scale=3.0, top_k=250, do_sample=do_sample)
    static, dec = _window(s, "static", sampler, 7)
    dynamic, old = _window(s, "dynamic", sampler, 7)
    assert type(dec) is S.StaticDecoder and type(old) is Decoder
    assert static.shape == (2, s.num_codebooks, FRAMES)
    assert torch.equal(static, dynamic)
    assert torch.equal(static, _transformers(s, sampler, 7))


@pytest.mark.parametrize("name", ["tiny", "tiny_melody"])
def test_a_known_prefix_is_fed_as_one_causal_chunk(request, name):
    """An audio prompt (and a melody's conditioning before it): positions > 0 fed at once."""
    s = request.getfixturevalue(name)
    prefix = tokens(s, 2, 6, seed=3)
    sampler = Sampler(top_k=50)
    static, _ = _window(s, "static", sampler, 5, prefix=prefix)
    dynamic, _ = _window(s, "dynamic", sampler, 5, prefix=prefix)
    assert torch.equal(static[..., :6], prefix) and torch.equal(static, dynamic)


def _steps(dec, s, n, seed=0):
    """n steps from BOS with seeded sampling; the logits of each step (cloned) and the tokens."""
    rows = dec.rows
    g = torch.Generator().manual_seed(seed)
    logits = dec.step(torch.full((rows, s.num_codebooks, 1), s.special_id))
    seen, drawn = [], []
    for _ in range(n):
        seen.append(logits.clone())
        guided, _, _ = guide(logits, rows // 2, Sampler())
        tok, _ = sample(warp(guided, Sampler()), Sampler(), g)
        drawn.append(tok)
        logits = dec.step(tok.repeat(2, 1)[:, :, None])
    return torch.stack(seen), torch.stack(drawn)


def test_the_whole_cache_span_of_the_graphs_gives_the_same_tokens(tiny):
    """The shapes a CUDA graph records (attention over the whole cache), run eagerly here."""
    cond = make_cond(tiny)
    with torch.inference_mode():
        whole = S.StaticDecoder(tiny.model, cond, max_len=40, whole=True)
        assert whole.span_total == 64 and whole.span == 64 and not whole.graphs
        assert whole.cross_bias.shape[-1] % 16 == 0  # the text padded to a bucket, masked
        a, ta = _steps(whole, tiny, 30)
        b, tb = _steps(Decoder(tiny.model, cond, max_len=40), tiny, 30)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert torch.equal(ta, tb)


def _addresses(dec):
    kept = (
        dec.k_cache,
        dec.v_cache,
        dec.mask,
        dec.index,
        dec.tokens,
        dec.positions,
        dec.cross_bias,
    )
    return [t.data_ptr() for t in kept + tuple(dec.cross_k) + tuple(dec.cross_v)]


def test_buffers_keep_their_addresses_across_steps_windows_and_calls(tiny):
    cond = make_cond(tiny)
    with torch.inference_mode():
        first = S.StaticDecoder(tiny.model, cond, max_len=40, whole=True)
        where = _addresses(first)
        logits = first.step(torch.full((4, 4, 1), tiny.special_id))
        for t in range(5):
            logits = first.step(logits.argmax(-1)[:, :, None])
            assert _addresses(first) == where and first.index.tolist() == [t + 2]
        first.finish()  # the window is over: its pool goes to the next decoder
        again = S.StaticDecoder(tiny.model, cond, max_len=33, whole=True)  # same 64-bucket
        assert _addresses(again) == where and again.index.tolist() == [0]
        assert bool((again.mask == torch.finfo(torch.float32).min).all())  # reset for the window
    pool = S.Pool()
    assert pool.buffer("k", (2, 64), torch.float32, torch.device("cpu"), at_least=1).shape == (
        2,
        64,
    )
    kept = pool.buffer("k", (2, 64), torch.float32, torch.device("cpu"))
    assert pool.buffer("k", (2, 32), torch.float32, torch.device("cpu"), at_least=1) is kept
    assert pool.buffer("k", (2, 128), torch.float32, torch.device("cpu"), at_least=1) is not kept
    # two generate calls of one session reuse one cache
    tiny.step = "static"
    try:
        tiny.generate("jazz", duration=0.3, seed=0, progress=False)
        k = pool_of(tiny.model.decoder).buffers["k"].data_ptr()
        tiny.generate("rock", duration=0.3, seed=1, progress=False)
        assert pool_of(tiny.model.decoder).buffers["k"].data_ptr() == k
    finally:
        tiny.step = "auto"


def test_a_decoder_running_beside_another_gets_its_own_buffers(tiny):
    """Two static decoders of one model interleaved in one thread (or in two) do not share a cache."""
    cond = make_cond(tiny)
    with torch.inference_mode():
        a = S.StaticDecoder(tiny.model, cond, max_len=20)
        b = S.StaticDecoder(tiny.model, cond, max_len=20)  # a has not finished
        assert a.k_cache.data_ptr() != b.k_cache.data_ptr()
        ref = Decoder(tiny.model, cond, max_len=20)
        feed = tokens(tiny, 4, 6, seed=3)
        for i in range(6):  # interleaved: a and b each see only their own positions
            la, lb, lr = (d.step(feed[:, :, i : i + 1]) for d in (a, b, ref))
            torch.testing.assert_close(la, lr, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(lb, lr, rtol=1e-4, atol=1e-4)
        a.finish()
        c = S.StaticDecoder(tiny.model, cond, max_len=20)  # a is done: c takes the model's pool
        assert c.pool is a.pool and c.k_cache.data_ptr() == a.k_cache.data_ptr()
        with pytest.raises(RuntimeError, match="taken by a later decoder of the same model"):
            a.step(feed[:, :, :1])
        there = {}
        t = threading.Thread(target=lambda: there.update(d=S.StaticDecoder(tiny.model, cond, 20)))
        t.start()
        t.join()
        assert there["d"].k_cache.data_ptr() != c.k_cache.data_ptr()  # c still runs


def _stream(s, out):
    """One stream's decode, in a fresh thread (as streams and the Studio run each job)."""

    def job():
        _, dec = _window(s, "static", Sampler(top_k=50), 1, frames=8)
        out.append(dec.k_cache)  # held: a freed cache's address could come back by chance

    t = threading.Thread(target=job)
    t.start()
    t.join()


def test_two_streams_one_after_the_other_reuse_one_cache(tiny):
    seen = []
    _stream(tiny, seen)
    _stream(tiny, seen)
    assert len(seen) == 2 and seen[0] is seen[1] and seen[0].data_ptr() == seen[1].data_ptr()


def test_threads_taking_one_models_pool_at_once_get_one_holder_each(tiny):
    cond = make_cond(tiny)
    start, made, errors = threading.Barrier(6), [], []

    def job():
        try:
            start.wait()
            with torch.inference_mode():
                dec = S.StaticDecoder(tiny.model, cond, max_len=12)
                dec.step(torch.full((4, 4, 1), tiny.special_id))
                made.append(dec)
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(e)

    workers = [threading.Thread(target=job) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == [] and len(made) == 6
    assert len({d.k_cache.data_ptr() for d in made}) == 6  # nobody shares a running cache
    assert sum(d.pool is pool_of(tiny.model.decoder) for d in made) == 1


def test_a_cache_that_no_longer_fits_is_freed_before_the_new_one():
    import weakref

    pool, cpu = S.Pool(), torch.device("cpu")
    old = [weakref.ref(pool.buffer(n, (2, 64), torch.float32, cpu)) for n in ("k", "v")]
    k = pool.buffer("k", (2, 128), torch.float32, cpu)
    assert [r() is None for r in old] == [True, True]  # neither old k nor old v is alive
    assert list(pool.buffers) == ["k"] and k.shape == (2, 128)


def test_text_buckets_keep_their_own_buffers_and_a_short_window_a_short_span(tiny):
    from musicgen_nb.conditioning import conditioning

    short = make_cond(tiny)
    long = conditioning(tiny, ["a very long prompt " * 6] * 2, negative=None, guidance_scale=3.0)
    with torch.inference_mode():
        a = S.StaticDecoder(tiny.model, short, max_len=600, graphs=True, recorder=eager)
        a.finish()
        b = S.StaticDecoder(tiny.model, long, max_len=40, graphs=True, recorder=eager)
        b.finish()
        c = S.StaticDecoder(tiny.model, short, max_len=40, graphs=True, recorder=eager)
    sa, sb = a.cross_bias.shape[-1], b.cross_bias.shape[-1]
    assert sa != sb and {f"cross_k{sa}", f"cross_k{sb}"} <= set(c.pool.buffers)
    assert c.cross_k[0].data_ptr() == a.cross_k[0].data_ptr()  # the first bucket's, not a new one
    assert a.span_total == c.span_total == 640 and (a.span, c.span) == (640, 256)
    assert a.graph_key() == (640, sa, 4) and c.graph_key() == (256, sa, 4)
    assert b.graph_key() == (256, sb, 4)


def _greedy(dec, s, n):
    logits, out = dec.step(torch.full((4, 4, 1), s.special_id)), []
    for _ in range(n):
        tok = logits.argmax(-1)[:2]
        out.append(tok)
        logits = dec.step(tok.repeat(2, 1)[:, :, None])
    return torch.stack(out)


def test_the_graph_path_replays_the_dynamic_steps_tokens(tiny):
    """The graph path (capture, replay from the pool) with an eager recorder on the CPU:
    two windows and a second call of another length give the dynamic step's tokens."""
    cond = make_cond(tiny)
    with torch.inference_mode():
        for max_len, n in ((40, 30), (40, 30), (90, 60)):
            dec = S.StaticDecoder(tiny.model, cond, max_len=max_len, graphs=True, recorder=eager)
            got = _greedy(dec, tiny, n)
            dec.finish()
            assert dec.graph_key() in dec.pool.graphs
            assert torch.equal(got, _greedy(Decoder(tiny.model, cond, max_len=max_len), tiny, n))
    assert len(pool_of(tiny.model.decoder).graphs) == 1  # 40 and 90 share one span bucket


#: Ops that read a tensor back to the host (.item(), bool(t), ...), or do so inside them.
SYNCING = ("_local_scalar_dense", "item", "multinomial", "nonzero", "masked_select", "unique")


class _HostReads(TorchDispatchMode):
    """The ops called (top level) that read values back to the host: a sync each on a GPU."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__.split("_unique")[0] in SYNCING:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_step_and_its_sampling_read_nothing_back_to_the_host(tiny):
    """What would be a host sync per step on a GPU. torch.multinomial did two (its checks)."""
    cond = make_cond(tiny)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    with torch.inference_mode():
        dec = S.StaticDecoder(tiny.model, cond, max_len=20, whole=True)
        logits = dec.step(torch.full((4, 4, 1), tiny.special_id))
        with _HostReads() as spy:
            for _ in range(3):
                guided, _, _ = guide(logits, 2, Sampler())
                tok, _ = sample(warp(guided, Sampler()), Sampler(), gens)
                logits = dec.step(tok.repeat(2, 1)[:, :, None])
        assert spy.reads == []
        for sync in (lambda: float(logits.max()), lambda: torch.multinomial(logits[0, 0].exp(), 1)):
            with _HostReads() as spy:
                sync()
            assert spy.reads, "the spy sees a host read"


def test_the_step_is_chosen_by_name(tiny):
    assert S.check_step("dynamic") == "dynamic" and tiny.step == "auto"
    with pytest.raises(ValueError, match=r"step must be one of \('auto', 'static', 'dynamic'\)"):
        mg.load("tiny", step="fast")
    assert mg.load("tiny", step="dynamic").step == "dynamic"
    cond = make_cond(tiny)
    capture = {"layers": [0], "heads": None, "rows": 1}
    assert type(S.make_decoder(tiny.model, cond, 8, capture=capture)) is Decoder
    assert type(S.make_decoder(tiny.model, cond, 8, step="dynamic")) is Decoder
    assert type(S.make_decoder(tiny.model, cond, 8)) is Decoder  # auto: dynamic on the CPU
    assert type(S.make_decoder(tiny.model, cond, 8, step="static")) is S.StaticDecoder
    assert S.resolve_step("auto", torch.device("cuda")) == "static"
    with pytest.raises(
        ValueError, match=r"graphs=True needs a CUDA device \(or a recorder\), not cpu"
    ):
        S.StaticDecoder(tiny.model, cond, 8, graphs=True)


def test_int8_keeps_its_kernels_on_the_pooled_cache(tiny_int8):
    sampler = Sampler(top_k=250)
    static, dec = _window(tiny_int8, "static", sampler, 3)
    dynamic, _ = _window(tiny_int8, "dynamic", sampler, 3)
    assert not dec.fp and torch.equal(static, dynamic)
    again, dec2 = _window(tiny_int8, "static", sampler, 3)
    assert dec2.k_cache.data_ptr() == dec.k_cache.data_ptr() and torch.equal(again, static)


def test_generate_is_the_same_with_either_step():
    static, dynamic = mg.load("tiny", step="static"), mg.load("tiny", step="dynamic")
    a = static.generate(PROMPTS, duration=0.5, seed=[1, 2], progress=False)
    b = dynamic.generate(PROMPTS, duration=0.5, seed=[1, 2], progress=False)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert pool_of(dynamic.model.decoder) is None  # the dynamic step pools nothing
    assert pool_of(static.model.decoder) is not None  # the static call left its pool...
    S.release(static.model)
    assert pool_of(static.model.decoder) is None  # ...and release drops it


def _logits(dec, s, n):
    """n greedy steps from BOS: every step's logits (cloned)."""
    logits, seen = dec.step(torch.full((4, 4, 1), s.special_id)), []
    for _ in range(n):
        seen.append(logits.clone())
        logits = dec.step(logits.argmax(-1)[:2].repeat(2, 1)[:, :, None])
    return torch.stack(seen)


def test_the_linears_run_as_f_linear_and_matvec_gives_the_dynamic_steps_logits_bit_for_bit(tiny):
    """The default linear form (x @ W.T, transformers') gives the dynamic step's greedy tokens
    over 90 positions of a 128-position cache (past the first 64-bucket); ``matvec=True`` runs
    the dynamic step's W @ x.T and gives its logits exactly."""
    cond = make_cond(tiny)
    with torch.inference_mode():
        ref = _logits(Decoder(tiny.model, cond, max_len=100), tiny, 90)
        fast = S.StaticDecoder(tiny.model, cond, max_len=100)
        assert not fast.matvec and fast.k_cache.shape[3] == 128
        got = _logits(fast, tiny, 90)
        fast.finish()
        same = _logits(S.StaticDecoder(tiny.model, cond, max_len=100, matvec=True), tiny, 90)
    assert torch.equal(got.argmax(-1), ref.argmax(-1)) and not torch.equal(got, ref)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(same, ref)
