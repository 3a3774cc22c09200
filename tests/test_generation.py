import json
import math
import threading

import numpy as np
import pytest
from _capped import capped_error, on_small_disk, run_capped

import musicgen_nb as mg
from musicgen_nb.generation import fit_chroma, num_frames


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


@pytest.mark.parametrize("duration", [0.5, 1.234, 3.99])
def test_duration_is_exact(tiny, duration):
    g = gen(tiny, duration=duration)
    assert g.audio.shape[-1] == round(duration * 32000)
    assert g.codes.shape[-1] == math.ceil(duration * 50 - 1e-6)
    # every delay step is counted inside: frames + K - 1 steps
    assert g.timings["steps"] == g.codes.shape[-1] + 4 - 1


def test_num_frames_tolerates_float_error():
    assert num_frames(0.1 * 3, 50) == 15
    assert num_frames(2.0, 50) == 100


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


def test_greedy_is_deterministic_without_seed(tiny):
    a = tiny.generate("jazz", duration=0.5, do_sample=False, progress=False)
    b = tiny.generate("jazz", duration=0.5, do_sample=False, progress=False)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_timings(tiny):
    g = gen(tiny, duration=1)
    for key in ("text_encode_s", "decode_loop_s", "codec_decode_s", "steps", "steps_per_s"):
        assert key in g.timings
    assert g.timings["steps"] == 53 and g.timings["steps_per_s"] > 0


def test_progress_bar_counts_steps(tiny, capsys):
    calls = []
    gen(tiny, duration=0.5, progress=True, callback=lambda done, total: calls.append((done, total)))
    err = capsys.readouterr().err
    assert "generating" in err and "/28" in err  # 25 frames + 3 delay steps
    assert calls == [(i, 28) for i in range(1, 29)]
    gen(tiny, duration=0.5, progress=False)
    assert capsys.readouterr().err == ""


def test_callback_and_keyboard_interrupt_keep_partial_result(tiny):
    seen = []

    def cb(done, total):
        seen.append((done, total))
        if done == 30:
            raise KeyboardInterrupt

    g = gen(tiny, duration=2, callback=cb)
    assert g.interrupted
    assert seen[-1] == (30, 103)
    # 30 steps done: frames complete in all 4 codebooks = 30 - 3
    assert g.codes.shape == (1, 4, 27)
    assert g.audio.shape[-1] == 27 * 640
    full = gen(tiny, duration=2)
    np.testing.assert_array_equal(g.codes, full.codes[..., :27])


def test_stop_event_stops_at_next_step(tiny):
    stop = threading.Event()

    def cb(done, total):
        if done == 10:
            stop.set()

    g = gen(tiny, duration=2, callback=cb, stop=stop)
    assert g.interrupted and g.codes.shape[-1] == 7


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(duration=0), ValueError, "duration must be > 0"),
        (dict(duration=-1), ValueError, "duration must be > 0"),
        (dict(duration=float("nan")), ValueError, "duration must be a finite"),
        (dict(duration="10"), TypeError, "duration must be a number"),
        (dict(temperature=0), ValueError, "temperature must be > 0"),
        (dict(top_k=-1), ValueError, "top_k must be >= 0"),
        (dict(top_k=2.5), TypeError, "top_k must be an int"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \[0, 1\]"),
        (dict(top_p=-0.1), ValueError, r"top_p must be in \[0, 1\]"),
        (dict(guidance_scale=0.5), ValueError, "guidance_scale must be >= 1"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite"),
        (dict(seed=-3), ValueError, "seed must be None or an int"),
        (dict(do_sample="yes"), TypeError, "do_sample must be True or False"),
        (
            dict(melody=np.zeros(32000), melody_sr=32000),
            ValueError,
            "melody= needs a melody checkpoint",
        ),
        (dict(cfg_coef_beta=1.0), ValueError, "cfg_coef_beta needs a melody checkpoint"),
        (dict(audio_prompt=np.zeros((1, 1, 1, 100)), audio_prompt_sr=32000), ValueError, "audio"),
        (dict(audio_prompt=np.zeros(3200)), ValueError, "audio_prompt_sr is required"),
        (dict(negative_prompt=["a", "b"]), ValueError, "negative_prompt must be one text"),
        (
            dict(negative_prompt="a", guidance_scale=1),
            ValueError,
            "negative_prompt needs guidance_scale",
        ),
        (dict(extend_stride=10), ValueError, "extend_stride must be in"),
    ],
)
def test_bad_parameters_raise_clear_errors(tiny, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gen(tiny, **{"duration": 1, **kwargs})


def test_bad_prompts(tiny):
    with pytest.raises(TypeError, match="prompts must be"):
        tiny.generate(42, duration=1)
    with pytest.raises(ValueError, match="must not be an empty list"):
        tiny.generate([], duration=1)


# ----------------------------------------------------------------------------- save
def test_save_writes_files_and_provenance(tiny, tmp_path):
    g = tiny.generate(["jazz trio", "rock"], duration=1, seed=4, progress=False)
    paths = g.save(tmp_path)
    assert [p.suffix for p in paths] == [".wav", ".wav"]
    import soundfile as sf

    data, sr = sf.read(paths[0], always_2d=True)
    assert sr == 32000 and data.shape[0] == 32000
    meta = json.loads(paths[0].with_suffix(".json").read_text())
    assert meta["prompt"] == "jazz trio" and meta["seed"] == 4 and meta["model"] == "tiny"
    assert meta["params"]["guidance_scale"] == 3.0 and meta["params"]["top_k"] == 250
    assert {"musicgen_nb", "transformers", "torch"} <= set(meta["versions"])
    assert len(meta["sha256"]) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_save_never_overwrites(tiny, tmp_path):
    g = gen(tiny, duration=0.5)
    first = g.save(tmp_path)[0]
    before = first.read_bytes()
    second = g.save(tmp_path)[0]
    assert first != second and second.exists() and first.read_bytes() == before
    assert second.with_suffix(".json").exists()


def test_save_flac_and_loudness(tiny, tmp_path):
    g = gen(tiny, duration=1)
    path = g.save(tmp_path, fmt="flac", loudness=-14.0)[0]
    assert path.suffix == ".flac"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["loudness_lufs"] == -14.0
    with pytest.raises(ValueError, match="fmt must be one of"):
        g.save(tmp_path, fmt="mp3")


def test_repr_and_html(tiny):
    g = gen(tiny, duration=0.5)
    assert "Generation(1 x 0.50 s" in repr(g)
    html = g._repr_html_()
    assert "<audio" in html and "jazz" in html


# ------------------------------------------------------------------- continuation
def test_continuation_prefix_equals_encoded_prompt(tiny):
    rng = np.random.default_rng(0)
    prompt = (rng.standard_normal(16000) * 0.2).astype(np.float32)  # 0.5 s at 32 kHz
    g = tiny.generate(
        "jazz", audio_prompt=prompt, audio_prompt_sr=32000, duration=1.0, seed=0, progress=False
    )
    enc = tiny.encode(prompt, 32000)
    assert g.prompt_frames == enc.shape[-1] == 25
    np.testing.assert_array_equal(g.codes[..., : g.prompt_frames], enc)
    assert g.codes.shape[-1] == 25 + 50
    assert g.audio.shape[-1] == 25 * 640 + 32000


def test_continuation_other_rate_and_stereo_prompt(tiny):
    prompt = (
        np.random.default_rng(1).standard_normal((2, 8000)).astype(np.float32) * 0.1
    )  # stereo, 16 kHz
    g = tiny.generate(
        "rock", audio_prompt=prompt, audio_prompt_sr=16000, duration=0.5, seed=0, progress=False
    )
    assert g.prompt_frames == 25 and g.codes.shape[-1] == 50


def test_prompt_longer_than_window_is_refused(tiny):
    long = np.zeros(int(32000 * 4.5), dtype=np.float32)
    with pytest.raises(ValueError, match="window is 4 s"):
        tiny.generate("x", audio_prompt=long, audio_prompt_sr=32000, duration=1, progress=False)


# ------------------------------------------------------------------- long-form
def test_long_form_windows_overlap_and_exact_length(tiny, capsys):
    g = tiny.generate("ambient", duration=10.0, seed=0, extend_stride=2.4, progress=True)
    assert g.audio.shape[-1] == 320000 and g.codes.shape[-1] == 500
    assert len(g.windows) >= 3
    window = tiny.max_frames
    pairs = zip(g.windows, g.windows[1:], g.window_codes, g.window_codes[1:], strict=False)
    for (_, e0), (s1, e1), prev, cur in pairs:
        assert e1 - s1 <= window and s1 < e0
        overlap = e0 - s1
        np.testing.assert_array_equal(cur[..., :overlap], prev[..., -overlap:])
        np.testing.assert_array_equal(g.codes[..., s1:e1], cur)
    steps = g.timings["steps"]
    assert steps == 500 + 3 * len(g.windows)  # new frames + 3 delay steps per window
    assert f"/{steps}" in capsys.readouterr().err  # one bar over all windows


def test_default_stride_is_sixty_percent_of_window(tiny):
    g = gen(tiny, duration=8.0)  # 400 frames, 200-frame window, stride 0.6 * 4 s = 120 frames
    assert g.windows == [(0, 200), (120, 320), (200, 400)]
    assert g.codes.shape[-1] == 400 and g.params["windows"] == 3


# ------------------------------------------------------------------- melody
def tune(notes, sr=32000, dur=0.5):
    from musicgen_nb import audio

    return audio.melody_tone(notes, dur, sr)


def test_melody_changes_the_codes(tiny_melody):
    a = tune(["C4", "E4", "G4", "C5"])
    b = tune(["F#4", "A#4", "C#5", "D#4"])
    ga = tiny_melody.generate(
        "piano", melody=a, melody_sr=32000, duration=2, seed=0, progress=False
    )
    gb = tiny_melody.generate(
        "piano", melody=b, melody_sr=32000, duration=2, seed=0, progress=False
    )
    assert (ga.codes != gb.codes).mean() > 0.2
    plain = tiny_melody.generate("piano", duration=2, seed=0, progress=False)
    assert (ga.codes != plain.codes).mean() > 0.2


def test_melody_stereo_other_rate_short_and_long(tiny_melody):
    stereo = np.stack([tune(["C4", "G4"], sr=44100)] * 2)
    g = tiny_melody.generate(
        "piano", melody=stereo, melody_sr=44100, duration=2, seed=0, progress=False
    )
    assert g.audio.shape == (1, 1, 64000)
    long = tune(["C4", "E4", "G4"] * 6, dur=0.5)  # 9 s melody, 2 s output
    g2 = tiny_melody.generate(
        "piano", melody=long, melody_sr=32000, duration=2, seed=0, progress=False
    )
    assert g2.codes.shape[-1] == 100


def test_fit_chroma_loops_a_short_melody():
    chroma = np.eye(12, dtype=np.float32)[[0, 4, 7]]  # 3 frames
    out = fit_chroma(chroma, 8)
    assert out.shape == (8, 12)
    assert out.argmax(-1).tolist() == [0, 4, 7, 0, 4, 7, 0, 4]
    assert fit_chroma(chroma, 2, start=2).argmax(-1).tolist() == [7, 0]


def test_double_cfg_on_melody(tiny_melody):
    m = tune(["C4", "E4", "G4"])
    base = tiny_melody.generate(
        "piano", melody=m, melody_sr=32000, duration=1, seed=0, progress=False
    )
    beta = tiny_melody.generate(
        "piano", melody=m, melody_sr=32000, duration=1, seed=0, progress=False, cfg_coef_beta=5.0
    )
    assert (base.codes != beta.codes).any()
    assert beta.params["cfg_coef_beta"] == 5.0


# ------------------------------------------------------------------- stereo layout
@pytest.fixture(scope="module")
def tiny_stereo(tiny):
    from musicgen_nb import checkpoints

    model = checkpoints.build_random(
        checkpoints.tiny_spec(stereo=True), init_scale=checkpoints.TINY_INIT_SCALE
    )
    return mg.MusicGen(model, tiny.processor, name="tiny-stereo")


def test_stereo_delay_matches_transformers(tiny_stereo):
    import torch

    s = tiny_stereo
    assert s.num_codebooks == 8 and s.audio_channels == 2
    g = s.generate(["jazz", "rock"], duration=1.0, seed=11, progress=False)
    assert g.codes.shape == (2, 8, 50) and g.audio.shape == (2, 2, 32000)
    assert g.timings["steps"] == 50 + 3  # codebook pairs share a delay: 3 delay steps
    # Each item has its own generator (seed 11 + i): compare it with transformers alone.
    for i, prompt in enumerate(["jazz", "rock"]):
        inputs = s.processor(text=[prompt], padding=True, return_tensors="pt")
        torch.manual_seed(11 + i)
        with torch.inference_mode():
            ref = s.model.generate(
                **inputs, do_sample=True, guidance_scale=3.0, top_k=250, max_new_tokens=53
            )
        np.testing.assert_allclose(g.audio[i : i + 1], ref.numpy(), atol=1e-5)


def test_oom_message_names_smaller_model_and_dtype(tiny):
    from musicgen_nb.generation import oom_message

    big = mg.MusicGen(tiny.model, tiny.processor, name="facebook/musicgen-large", precision="fp32")
    msg = oom_message(big, batch=4, duration=30)
    assert (
        "mg.load('medium')" in msg
        and "precision='fp16'" in msg
        and "fewer prompts" in msg
        and "30 s" in msg
    )


# ======================================================================= hardening
# --------------------------------------------------------- 1. sizes, under a memory cap
CAP_GB = 2.5  # loading tiny and generating 1 s peaks at about 1.1 GB of address space


def expect_error(code: str, exc: str, match: str, **kw):
    msg, _ = capped_error(code, exc, **{"gb": CAP_GB, **kw})
    out = f"CAUGHT {msg}"
    assert __import__("re").search(match, out), out
    return out


def test_prompt_with_a_wrong_rate_is_refused_from_samples_over_sr():
    # 1 s at 32 kHz declared as 7 Hz is 4571 s: resampling it would need ~18 GB.
    out = expect_error(
        "s = mg.load('tiny')\n"
        "s.generate('x', duration=0.5, audio_prompt=mg.audio.sine(440, 1.0, 32000), "
        "audio_prompt_sr=7, progress=False)",
        "ValueError",
        r"audio_prompt is 4571\.43 s \(32000 samples at audio_prompt_sr=7 Hz\).*window is 4 s",
    )
    assert "check audio_prompt_sr" in out


def test_huge_duration_is_refused_at_once_with_the_reason():
    out = expect_error(
        "mg.load('tiny').generate('x', duration=1e6, progress=False)",
        "ValueError",
        r"duration must be <= 10800 s \(3 hours.*in seconds\), got 1e\+06 s.*50,000,000 frames",
        timeout=120,
    )
    assert "audio_prompt=" in out


def test_an_hour_is_accepted_and_planned(tiny):
    from musicgen_nb.generation import _plan, _request

    req = _request(
        tiny, "x", duration=3600.0, guidance_scale=3.0, temperature=1.0, top_k=250, top_p=0.0,
        do_sample=True, seed=1, melody=None, melody_sr=None, audio_prompt=None,
        audio_prompt_sr=None, negative_prompt=None, cfg_coef_beta=None, extend_stride=None,
        progress=False, trace=False, attentions=False, attention_layers=None,
        attention_heads=None, attention_budget_mb=512.0, callback=None, stop=None,
    )  # fmt: skip
    plan = _plan(tiny, req)
    assert plan.total_frames == 180_000 and plan.windows[-1][1] == 180_000
    starts = [a for a, _ in plan.windows]
    assert starts == sorted(starts) and all(b - a <= tiny.max_frames for a, b in plan.windows)


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
    np.testing.assert_allclose(decode_long(tiny, codes), tiny.decode(codes), atol=1e-5)


def test_melody_with_a_wrong_rate_computes_only_the_frames_needed():
    # 1 s declared as 8 Hz is a 67-minute melody; only ~2 s of chroma is read.
    proc = run_capped(
        "s = mg.load('tiny-melody')\n"
        "g = s.generate('x', duration=1, melody=mg.audio.sine(440, 1.0, 32000), melody_sr=8, "
        "seed=0, progress=False)\n"
        "print(g.melody_chroma.shape)\n",
        gb=CAP_GB,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "(1, 235, 12)"  # chroma_length frames, not 31,250


def test_long_text_and_huge_batch_are_refused_before_work():
    expect_error(
        "mg.load('tiny').generate('la ' * 400_000, duration=1, progress=False)",
        "ValueError",
        r"prompt 0 is 1,200,000 characters long.*at most 512 tokens",
    )
    expect_error(
        "mg.load('tiny').generate(['x'] * 2000, duration=600, progress=False)",
        "ValueError",
        r"duration=600 s for 2000 prompt\(s\) needs about .* GB .* available",
    )


def test_chroma_frames_follow_the_windows(tiny_melody):
    m = tune(["C4", "E4", "G4"] * 40, dur=0.5)  # 60 s of melody
    g = tiny_melody.generate("x", melody=m, melody_sr=32000, duration=6, seed=0, progress=False)
    # last window starts at frame 100 -> chroma frame round(100 / 50 * 7.8125) = 16
    assert g.windows[-1][0] == 100 and g.melody_chroma.shape[1] == 16 + 235


# --------------------------------------------------------- 3. types, up front
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(progress="no"), TypeError, "progress must be True or False, got str 'no'"),
        (dict(trace="yes"), TypeError, "trace must be True or False, got str 'yes'"),
        (dict(attentions="no"), TypeError, "attentions must be True or False"),
        (dict(progress=1), TypeError, "progress must be True or False, got int 1"),
        (dict(callback=5), TypeError, r"callback must be None or a callable .* got int 5"),
        (dict(stop="yes"), TypeError, r"stop must be None or an object with is_set\(\)"),
        (dict(seed=2**64), ValueError, r"seed must be None or an int in \[0, 2\*\*64\)"),
        (dict(seed=-1), ValueError, r"seed must be None or an int in \[0, 2\*\*64\)"),
        (dict(seed=1.5), TypeError, r"seed must be None or an int in \[0, 2\*\*64\), got float"),
        (dict(seed="1"), TypeError, "seed must be None or an int"),
        (dict(duration=0.01), ValueError, r"duration must be at least one frame \(0.02 s"),
        (dict(duration=1e-6), ValueError, "duration must be at least one frame"),
        (
            dict(duration=10**400),
            ValueError,
            "duration must be a finite number .* int of 401 digits",
        ),
        (dict(duration=1e6), ValueError, r"duration must be <= 10800 s"),
        (dict(audio_prompt=np.zeros(3200), audio_prompt_sr=0), ValueError, "audio_prompt_sr must"),
        (dict(audio_prompt=np.zeros(3200), audio_prompt_sr="32k"), TypeError, "audio_prompt_sr"),
        (dict(audio_prompt="prompt.wav", audio_prompt_sr=32000), TypeError, "audio_prompt must"),
        (dict(audio_prompt=np.zeros((3, 1, 3200)), audio_prompt_sr=32000), ValueError, "3 items"),
        (dict(melody_sr=32000), ValueError, "melody_sr was given without melody="),
        (dict(top_k=True), TypeError, "top_k must be an int"),
    ],
)
def test_every_argument_is_checked_before_any_step(tiny, kwargs, exc, match):
    steps = []
    kwargs.setdefault("callback", lambda done, total: steps.append(done))
    with pytest.raises(exc, match=match):
        gen(tiny, **{"duration": 1, **kwargs})
    assert steps == []


def test_largest_seed_works(tiny):
    a = gen(tiny, duration=0.1, seed=2**64 - 1)
    b = gen(tiny, duration=0.1, seed=np.uint64(2**64 - 1))
    assert a.seed == 2**64 - 1 and np.array_equal(a.codes, b.codes)


def test_one_frame_is_consistent(tiny):
    g = gen(tiny, duration=0.02)
    assert g.codes.shape == (1, 4, 1) and g.audio.shape == (1, 1, 640)


def test_extreme_temperature_tends_to_argmax(tiny):
    greedy = gen(tiny, duration=0.5, do_sample=False)
    cold = gen(tiny, duration=0.5, temperature=1e-45, trace=True)
    np.testing.assert_array_equal(cold.codes, greedy.codes)
    assert np.isfinite(cold.audio).all()
    assert np.isfinite(cold.trace["entropy"]).all() and (cold.trace["chosen_prob"] > 0.99).all()


def test_extreme_guidance_is_finite_and_deterministic(tiny):
    a = gen(tiny, duration=0.5, guidance_scale=1e308, seed=1)
    b = gen(tiny, duration=0.5, guidance_scale=1e308, seed=2)
    c = gen(tiny, duration=0.5, guidance_scale=1e308, do_sample=False)
    # so sharp that sampling is the argmax whatever the seed
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codes, c.codes)
    huge = gen(tiny, duration=0.5, guidance_scale=1e300, temperature=1e300, top_p=0.9)
    assert huge.codes.shape == (1, 4, 25) and np.isfinite(huge.audio).all()


def test_extreme_double_guidance_on_melody(tiny_melody):
    m = tune(["C4", "E4"])
    for beta in (0.0, 0.5, 1e308):
        g = tiny_melody.generate(
            "x", melody=m, melody_sr=32000, duration=0.5, seed=0, progress=False,
            guidance_scale=1e200, cfg_coef_beta=beta,
        )  # fmt: skip
        assert ((g.codes >= 0) & (g.codes < 2048)).all()


# --------------------------------------------------------- 2. saving
def fake(audio_seconds=0.5, batch=1, prompts=None, **kw):
    """A Generation without a model: saving does not need one."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((batch, 1, int(32000 * audio_seconds))) * 0.1).astype(np.float32)
    return mg.Generation(
        audio=audio, sample_rate=32000, codes=np.zeros((batch, 4, 1), dtype=np.int64),
        prompts=prompts or ["x"] * batch, params={}, seed=1, timings={}, **kw,
    )  # fmt: skip


def pairs_ok(folder):
    """Every audio file has its sidecar, every sidecar names its audio, and no temp is left."""
    names = {p.name for p in folder.iterdir()}
    audio = {n for n in names if n.endswith((".wav", ".flac"))}
    side = {n for n in names if n.endswith(".json")}
    for a in audio:
        stem = a.rsplit(".", 1)[0]
        assert f"{stem}.json" in side, f"{a} has no sidecar"
        assert json.loads((folder / f"{stem}.json").read_text())["file"] == a
    return audio, side, [n for n in names if n.startswith(".")]


def test_save_wav_then_flac_never_orphans(tiny, tmp_path):
    g = gen(tiny, duration=0.1)
    wav = g.save(tmp_path)[0]
    flac = g.save(tmp_path, fmt="flac")[0]
    assert (wav.name, flac.name) == ("jazz_seed1.wav", "jazz_seed1-1.flac")
    audio, side, temps = pairs_ok(tmp_path)
    assert len(audio) == len(side) == 2 and temps == []
    (tmp_path / "other.json").write_text("{}")  # a stray sidecar name blocks its audio name too
    from musicgen_nb.audio import unique_path

    assert unique_path(tmp_path / "other.wav", companions=[".json"]).name == "other-1.wav"


def test_save_files_follow_the_umask(tmp_path):
    import os

    for mask in (0o022, 0o077, 0o002):
        old = os.umask(mask)
        try:
            paths = fake().save(tmp_path / oct(mask))
        finally:
            os.umask(old)
        for p in (paths[0], paths[0].with_suffix(".json")):
            assert p.stat().st_mode & 0o777 == 0o666 & ~mask, (p, oct(p.stat().st_mode))


def test_interrupted_generation_is_saved_as_partial(tmp_path):
    path = fake(interrupted=True).save(tmp_path)[0]
    assert path.name == "x_seed1_partial.wav"
    assert json.loads(path.with_suffix(".json").read_text())["interrupted"] is True


def test_nothing_to_save_is_said(tmp_path):
    with pytest.raises(ValueError, match="nothing to save: .*interrupted before its first"):
        fake(audio_seconds=0, interrupted=True).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_checks_its_arguments_before_writing(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="directory .*file' is a file, not a folder"):
        fake().save(f)
    with pytest.raises(ValueError, match=r"loudness must be a loudness in LUFS <= 0.*got 5.0"):
        fake().save(tmp_path / "d", loudness=5)
    with pytest.raises(TypeError, match="loudness must be a number"):
        fake().save(tmp_path / "d", loudness="-14")
    with pytest.raises(TypeError, match="directory must be a file path"):
        fake().save(None)
    with pytest.raises(ValueError, match="directory is an empty string; give a folder"):
        fake().save("")
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


SAVER = """
import sys, time, numpy as np, musicgen_nb as mg
from pathlib import Path
folder, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
g = mg.Generation(audio=np.zeros((1, 1, 3200), np.float32), sample_rate=32000,
                  codes=np.zeros((1, 4, 1), np.int64), prompts=["x"], params={}, seed=1, timings={})
g.save(folder.parent / "warm")  # the first save imports the audio libraries
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for _ in range(n):
    print(g.save(folder, fmt="wav" if _ % 2 else "flac")[0].name, flush=True)
"""


def test_concurrent_saves_to_one_folder_all_succeed(tmp_path):
    import subprocess
    import sys

    folder, go = tmp_path / "out", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(folder), str(go), "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    for p in procs:  # every process is at the start line
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    names = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        names += out.split()
    assert len(names) == 80 and len(set(names)) == 80
    audio, side, temps = pairs_ok(folder)
    assert len(audio) == len(side) == 80 and temps == []


KILLER = """
import sys, numpy as np, musicgen_nb as mg
g = mg.Generation(audio=np.random.default_rng(0).standard_normal((4, 1, 32000 * 5)).astype(np.float32) * 0.1,
                  sample_rate=32000, codes=np.zeros((4, 4, 1), np.int64), prompts=["a", "b", "c", "d"],
                  params={}, seed=1, timings={})
g.save(sys.argv[2], fmt="flac")  # warm up: the first save imports the audio libraries
print("ready", flush=True)
while True:
    g.save(sys.argv[1], fmt="flac")
"""


def test_kill_9_mid_save_never_leaves_audio_without_sidecar(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "out"
    folder.mkdir()
    rng = random.Random(0)
    mid_save = kills = 0
    # Kill until two kills have landed mid-save (a kill between saves proves nothing);
    # the invariant is checked after every kill.
    while mid_save < 2 and kills < 40:
        kills += 1
        p = subprocess.Popen(
            [sys.executable, "-c", KILLER, str(folder), str(tmp_path / "warm")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        temps_before = len(pairs_ok(folder)[2])  # checked after every kill
        mid_save += temps_before > 0
    audio, _, temps = pairs_ok(folder)
    assert len(audio) > 0 and mid_save >= 1 and temps, f"{mid_save} of {kills} kills mid-save"


NOSPACE = """import sys, numpy as np, musicgen_nb as mg, os
g = mg.Generation(audio=np.random.default_rng(0).standard_normal((1, 1, 32000)).astype(np.float32) * 0.1,
                  sample_rate=32000, codes=np.zeros((1, 4, 1), np.int64), prompts=["x"], params={},
                  seed=1, timings={})
saved = []
try:
    for _ in range(5):
        saved += g.save(sys.argv[1])
except OSError as e:
    assert e.errno == 28
    print("ERROR", e)
print("SAVED", len(saved))
print("FILES", sorted(os.listdir(sys.argv[1])))
"""


def test_full_disk_says_no_space_names_the_path_and_cleans_up(tmp_path):
    mnt, lines = on_small_disk(tmp_path, "96k", NOSPACE)
    assert lines["ERROR"].startswith("no space left on device writing ")
    assert str(mnt) in lines["ERROR"] and "x_seed1" in lines["ERROR"]
    files = eval(lines["FILES"])
    assert not [f for f in files if f.startswith(".")]  # no temp files
    stems = {f.rsplit(".", 1)[0] for f in files}
    assert len(files) == 2 * int(lines["SAVED"]) == 2 * len(stems)  # only complete pairs


# --------------------------------------------------------------------------- per-item seeds
# Each batch item samples from its own generator: an item never depends on its batch-mates.
SEED_PROMPTS = ["lo-fi beat", "epic orchestral choir with a long name", None, "jazz"]


# Melody checkpoints attend to the padded text prefix (as transformers and audiocraft do),
# so there an item is independent of its batch-mates when their prompts have the same
# number of tokens; musicgen_nb.grid batches them that way.
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


def test_per_item_seeds_in_provenance_and_files(tiny, tmp_path):
    g = tiny.generate(["jazz", "rock"], seed=[5, 9], duration=0.5, progress=False)
    assert [g.provenance(i)["seed"] for i in range(2)] == [5, 9]
    paths = g.save(tmp_path)
    assert [p.name for p in paths] == ["jazz_seed5_0.wav", "rock_seed9_1.wav"]
    assert json.loads(paths[1].with_suffix(".json").read_text())["seed"] == 9


def test_per_item_seeds_hold_across_long_form_windows(tiny):
    kw = dict(duration=8.0, extend_stride=3.0, progress=False)
    batched = tiny.generate(["jazz", "rock"], seed=[3, 4], **kw)
    alone = tiny.generate("rock", seed=4, **kw)
    assert batched.params["windows"] > 1
    np.testing.assert_array_equal(batched.codes[1], alone.codes[0])


@pytest.mark.parametrize(
    "seed, exc, match",
    [
        ([1], ValueError, "one seed per prompt \\(2\\), got 1"),
        ([1, 2, 3], ValueError, "one seed per prompt \\(2\\), got 3"),
        ([1, -2], ValueError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got -2"),
        ([1, "2"], TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got str"),
        ([True, 2], TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got bool"),
        ([1, None], ValueError, "seed lists must hold ints"),
        (1.5, TypeError, "seed must be None or an int in \\[0, 2\\*\\*64\\), got float"),
        (2**64 - 1, ValueError, "gives item i the seed 18446744073709551615 \\+ i"),
    ],
)
def test_bad_per_item_seeds(tiny, seed, exc, match):
    with pytest.raises(exc, match=match):
        tiny.generate(["a", "b"], seed=seed, duration=0.5, progress=False)
