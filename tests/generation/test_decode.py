"""Tests for musicgen_nb.generation.decode: codes to audio of exactly the asked length."""

import numpy as np
from _capped import run_capped
from _devices import tolerance


def gen(s, prompt="jazz", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 1)
    return s.generate(prompt, **kw)


def test_done_when_shapes(tiny):
    g = gen(tiny, duration=2, seed=1)
    assert g.audio.shape == (1, 1, 64000) and g.audio.dtype == np.float32
    assert g.codes.shape == (1, 4, 100) and g.codes.dtype == np.int64
    assert np.isfinite(g.audio).all()
    assert ((g.codes >= 0) & (g.codes < 2048)).all()


def test_timings(tiny):
    g = gen(tiny, duration=1)
    for key in ("text_encode_s", "decode_loop_s", "codec_decode_s", "steps", "steps_per_s"):
        assert key in g.timings
    assert g.timings["steps"] == 53 and g.timings["steps_per_s"] > 0


def test_long_audio_is_decoded_in_bounded_pieces():
    # 2.5 minutes: a one-piece decode needs ~1.5 GB more than the cap allows.
    proc = run_capped(
        "from musicgen_nb.generation import decode_long\n"
        "s = mg.load('tiny')\n"
        "codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 7500))\n"
        "wav = decode_long(s, codes)\n"
        "print(wav.shape, bool(np.isfinite(wav).all()))\n",
        gb=1.8,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "(1, 1, 4800000) True"


def test_decode_in_pieces_matches_one_piece(tiny):
    from musicgen_nb.generation import DECODE_CHUNK, decode_long

    codes = np.random.default_rng(1).integers(0, 2048, (1, 4, 2 * DECODE_CHUNK + 300))
    tol = tolerance(tiny.model.audio_encoder.dtype, tiny.device)  # EnCodec runs in fp32
    np.testing.assert_allclose(decode_long(tiny, codes), tiny.decode(codes), **tol)


def test_assemble_builds_the_generation(tiny):
    from musicgen_nb.generation import make_request
    from musicgen_nb.generation.decode import assemble
    from musicgen_nb.generation.windows import inputs, plan, run_windows

    req = make_request(tiny, ["a", "b"], duration=0.5, seed=[4, 5], trace=True, progress=False)
    got, p = inputs(tiny, req, plan(tiny, req))
    g = assemble(tiny, req, p, got, run_windows(tiny, req, p, got))
    assert g.audio.shape == (2, 1, 16000) and g.codes.shape == (2, 4, 25)
    assert g.seed == [4, 5] and g.params["windows"] == 1 and g.trace is not None
    assert g.timings["codec_decode_s"] > 0 and g.versions["musicgen_nb"]
