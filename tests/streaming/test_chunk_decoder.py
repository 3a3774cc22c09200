"""Chunk decoding: pieces join into the one-pass decode (exact and context methods)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from musicgen_nb.streaming import ChunkDecoder, snr_db


@pytest.mark.parametrize("method", ["exact", "context"])
@pytest.mark.parametrize("step", [1, 7, 50])
def test_chunk_decoder_matches_the_one_pass_decode(tiny, method, step):
    codes = np.random.default_rng(step).integers(0, 2048, (2, 4, 131))
    ref = tiny.decode(codes)
    d = ChunkDecoder(tiny, method=method)
    parts = []
    for i in range(0, codes.shape[-1], step):
        d.push(codes[..., i : i + step])
        parts.append(d.pull())
        assert d.emitted == d.ready() >= min(d.frames, i + step) - d.hold
    parts.append(d.pull(final=True))
    out = np.concatenate(parts, axis=-1)
    assert out.shape == ref.shape
    assert snr_db(ref, out) >= 30
    if method == "exact":
        assert snr_db(ref, out) >= 100  # the same arithmetic, up to float rounding
        assert d.hold <= 8  # frames held back: at most 0.16 s
    # What the overlap costs: frames decoded twice, per frame of audio.
    assert 0 < d.overlap_frames / codes.shape[-1] < (60 if method == "context" else 15)


@pytest.mark.parametrize("method", ["exact", "context"])
def test_an_interrupted_pull_can_be_pulled_again(tiny, method, monkeypatch):
    """A KeyboardInterrupt after a piece is decoded, before it is returned, leaves the decoder
    as it was: pulling again gives the same audio, and the pieces still join exactly."""
    codes = np.random.default_rng(3).integers(0, 2048, (1, 4, 90))
    ref = tiny.decode(codes)
    d = ChunkDecoder(tiny, method=method)
    decode = getattr(ChunkDecoder, f"_{method}")
    calls = []

    def interrupted_once(self, *args):
        wav = decode(self, *args)
        calls.append(1)
        if len(calls) == 2:  # the second piece: decoded, then Ctrl-C
            raise KeyboardInterrupt
        return wav

    monkeypatch.setattr(ChunkDecoder, f"_{method}", interrupted_once)
    parts = []
    for i in range(0, 90, 30):
        d.push(codes[..., i : i + 30])
        try:
            parts.append(d.pull())
        except KeyboardInterrupt:
            parts.append(d.pull())  # the same frames again
    parts.append(d.pull(final=True))
    out = np.concatenate(parts, axis=-1)
    assert len(calls) == 5 and out.shape == ref.shape
    assert snr_db(ref, out) >= (100 if method == "exact" else 30)


def test_chunk_decoder_needs_its_layers(tiny):
    with pytest.raises(ValueError, match="method must be 'auto', 'exact' or 'context'"):
        ChunkDecoder(tiny, method="fast")
    assert ChunkDecoder(tiny).method == "exact"


def test_context_decoding_alone_is_not_exact(tiny):
    """Without carried state and context, a chunk's edges differ from the full decode:
    the reason for ChunkDecoder."""
    codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 100))
    ref = tiny.decode(codes)
    naive = np.concatenate([tiny.decode(codes[..., i : i + 25]) for i in range(0, 100, 25)], -1)
    assert snr_db(ref, naive) < snr_db(ref, ref + 1e-6)
    assert not np.allclose(ref, naive, atol=1e-6)


@pytest.mark.slow
def test_chunk_decoder_on_the_small_architecture():
    import musicgen_nb as mg

    s = mg.load("small", random_weights=True, precision="int8")
    codes = np.random.default_rng(1).integers(0, 2048, (1, 4, 160))
    ref = s.decode(codes)
    d = ChunkDecoder(s)
    parts = []
    for i in range(0, 160, 50):
        d.push(codes[..., i : i + 50])
        parts.append(d.pull())
    parts.append(d.pull(final=True))
    assert snr_db(ref, np.concatenate(parts, -1)) >= 30


def test_snr_db():
    x = np.sin(np.arange(500) / 7)
    assert snr_db(x, x) == np.inf
    assert snr_db(x, 0.9 * x) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="one shape"):
        snr_db(x, x[:-1])


@pytest.mark.parametrize(
    "threads, exc",
    [(0, ValueError), (-1, ValueError), ("2", TypeError), (10**6, ValueError), (1.5, TypeError),
     (True, TypeError), (len(os.sched_getaffinity(0)) + 1, ValueError)],
)  # fmt: skip
def test_threads_are_checked_by_name(tiny, threads, exc):
    with pytest.raises(
        exc, match=r"^threads must be an int in \[1, \d+\], got .*; or None"
    ) as info:
        ChunkDecoder(tiny, threads=threads)
    assert type(info.value) is exc  # (the CPUs this process may use, not os.cpu_count())
    assert ChunkDecoder(tiny, threads=None).threads is None
