"""Tests for musicgen_nb.tokens on the offline `tiny` checkpoint, plus token arithmetic."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _capped import capped_error, capped_ok

from musicgen_nb import audio, tokens


@pytest.fixture(scope="module")
def sound():
    return audio.melody_tone(["C4", "G4"], 0.5, 32000)  # 1 s at 32 kHz


@pytest.fixture(scope="module")
def stereo(tiny):
    """A stereo session over tiny's real EnCodec: 8 decoder codebooks, left/right interleaved."""
    return SimpleNamespace(
        model=tiny.model, sample_rate=tiny.sample_rate, frame_rate=tiny.frame_rate,
        num_codebooks=2 * tiny.num_codebooks, audio_channels=2, codebook_size=tiny.codebook_size,
    )  # fmt: skip


# ---------------------------------------------------------------------------- encode
def test_encode_shapes(tiny, sound):
    assert tiny.sample_rate == 32000 and tiny.frame_rate == 50
    one = tokens.encode(tiny, sound, 32000)
    assert one.shape == (1, 4, 50) and one.dtype == np.int64
    assert one.min() >= 0 and one.max() < tiny.codebook_size
    np.testing.assert_array_equal(tokens.encode(tiny, sound[None], 32000), one)  # [C, N]
    batch = tokens.encode(tiny, np.stack([sound, sound * 0.5])[:, None], 32000)  # [B, C, N]
    assert batch.shape == (2, 4, 50)
    np.testing.assert_array_equal(batch[0], one[0])
    np.testing.assert_array_equal(tokens.encode(tiny, torch.from_numpy(sound), 32000), one)


@pytest.mark.parametrize("n", [640, 641, 1000, 6400])
def test_encode_frame_count_is_ceil(tiny, n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    assert tokens.encode(tiny, x, 32000).shape[-1] == -(-n // 640)


def test_encode_resamples(tiny):
    x16 = audio.melody_tone(["C4", "G4"], 0.5, 16000)
    codes = tokens.encode(tiny, x16, 16000)
    assert codes.shape == (1, 4, 50)


def test_encode_with_a_wrong_rate_is_refused_before_resampling():
    # 1 s at 32 kHz declared as 7 Hz is 76 minutes: 146 M samples to resample, and EnCodec
    # would need about 16-26 GB for them (it took 77 s and 14 GB before this check).
    msg, peak = capped_error("s = mg.load('tiny')\ns.encode(mg.audio.sine(440, 1.0, 32000), 7)")
    assert "32,000 samples at sr=7 Hz are 4571.43 s (76.2 min) of audio" in msg
    assert "resampling them to 32000 Hz makes shape (1, 1, 32000) into (1, 1, 146285715)" in msg
    assert "which needs about 0.8 GB, and encoding it with EnCodec about 26.3 GB more" in msg
    assert "Check sr: it must be the audio's own sample rate (common: 16000" in msg
    assert peak < 800e6, peak  # tiny loaded; the 585 MB resampled audio was never made


def test_encode_at_the_models_own_rate_checks_memory_too():
    # 20 minutes at 32 kHz need no resampling, but EnCodec would need about 6.9 GB for them on
    # tiny (53 GB on the released checkpoints): refused under a 2.5 GB cap before it starts.
    msg, peak = capped_error(
        "s = mg.load('tiny')\ns.encode(np.zeros(20 * 60 * 32000, np.float32), 32000)"
    )
    assert "38,400,000 samples at sr=32000 Hz are 1200.00 s (20.0 min) of audio" in msg
    assert "encoding it with EnCodec needs about 6.9 GB, but only" in msg
    assert "pass shorter audio (about" in msg
    assert peak < 800e6, peak
    # what it says fits does fit
    fits = float(msg.split("(about ")[1].split(" s fits")[0].replace(",", ""))
    n = int(fits * 0.9 * 32000)
    out = capped_ok(f"s = mg.load('tiny')\nprint(s.encode(np.zeros({n}, np.float32), 32000).shape)")
    assert f"(1, 4, {-(-n // 640)})" in out


def test_encoder_bytes_per_sample_bounds_a_measured_encode():
    # Peak RSS of encoding 120 s on tiny in a fresh process, against the estimate.
    out = capped_ok(
        "from musicgen_nb.tokens import encoder_bytes_per_sample\n"
        "s = mg.load('tiny')\n"
        "x = np.random.default_rng(0).standard_normal((1, 1, 120 * 32000), dtype=np.float32)\n"
        "s.encode(0.1 * x[..., :32000], 32000)\n"
        "base = peak_rss()\n"
        "s.encode(0.1 * x, 32000)\n"
        "peak = peak_rss()\n"
        "print(peak - base, encoder_bytes_per_sample(s.model.audio_encoder.config) * x.size)\n"
    )
    used, bound = map(float, out.split())
    assert 0.5 * bound < used <= bound, (used, bound)  # a bound, and not a loose one


def test_encode_stereo_input_to_mono_model_averages(tiny, sound):
    both = tokens.encode(tiny, np.stack([sound, sound]), 32000)
    np.testing.assert_array_equal(both, tokens.encode(tiny, sound, 32000))


def test_different_sounds_give_different_codes(tiny):
    a = tokens.encode(tiny, audio.sine(220, 1.0, 32000), 32000)
    b = tokens.encode(tiny, audio.sine(1760, 1.0, 32000), 32000)
    assert (a != b).mean() > 0.5


# ---------------------------------------------------------------------------- decode
def test_decode_shapes_and_round_trip(tiny, sound):
    codes = tokens.encode(tiny, sound, 32000)
    wav = tokens.decode(tiny, codes)
    assert wav.shape == (1, 1, 50 * 640) and wav.dtype == np.float32
    assert np.isfinite(wav).all()
    assert tokens.decode(tiny, codes[0]).shape == (1, 1, 32000)  # [K, frames] -> batch of 1
    again = tokens.encode(tiny, wav, 32000)
    assert again.shape == codes.shape


def test_different_codes_decode_to_different_audio(tiny):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2048, size=(1, 4, 20))
    b = rng.integers(0, 2048, size=(1, 4, 20))
    wa, wb = tokens.decode(tiny, a), tokens.decode(tiny, b)
    assert np.abs(wa - wb).max() > 10 * np.abs(wa).max() * 1e-3
    both = tokens.decode(tiny, np.concatenate([a, b]))
    np.testing.assert_allclose(both[0], wa[0], atol=1e-5)
    np.testing.assert_allclose(both[1], wb[0], atol=1e-5)


def test_codebook_ablation(tiny):
    codes = np.random.default_rng(1).integers(0, 2048, size=(1, 4, 25))
    full = tokens.decode(tiny, codes)
    np.testing.assert_array_equal(tokens.decode(tiny, codes, num_codebooks=4), full)
    outs = [tokens.decode(tiny, codes, num_codebooks=k) for k in (1, 2, 3)]
    for k, out in enumerate(outs, start=1):
        assert out.shape == full.shape
        assert not np.allclose(out, full, atol=1e-6), f"k={k} equals the full decode"
    assert not np.allclose(outs[0], outs[1], atol=1e-6)
    # only the first k codebooks matter: changing codebook 3 leaves k=2 unchanged
    changed = codes.copy()
    changed[:, 3] = (changed[:, 3] + 1) % 2048
    np.testing.assert_array_equal(tokens.decode(tiny, changed, num_codebooks=2), outs[1])


def test_decode_errors(tiny):
    good = np.zeros((1, 4, 5), dtype=np.int64)
    with pytest.raises(
        ValueError, match=r"codes must lie in \[0, 2048\), got values in \[2048, 2048\]"
    ):
        tokens.decode(tiny, np.full((1, 4, 5), 2048))
    with pytest.raises(ValueError, match=r"got values in \[-1, 0\]"):
        tokens.decode(tiny, good - (np.arange(5) == 0))
    with pytest.raises(ValueError, match=r"codes must be \[batch, 4, frames\].*\(1, 3, 5\)"):
        tokens.decode(tiny, good[:, :3])
    with pytest.raises(ValueError, match="frames >= 1"):
        tokens.decode(tiny, good[..., :0])
    with pytest.raises(TypeError, match="integer code ids, got dtype float"):
        tokens.decode(tiny, good.astype(float))
    for k in (0, 5, 2.0):
        with pytest.raises(ValueError, match=r"num_codebooks must be an integer in 1\.\.4"):
            tokens.decode(tiny, good, num_codebooks=k)


def test_session_methods_delegate(tiny, sound):
    codes = tiny.encode(sound, 32000)
    np.testing.assert_array_equal(codes, tokens.encode(tiny, sound, 32000))
    np.testing.assert_array_equal(tiny.decode(codes, num_codebooks=2),
                                  tokens.decode(tiny, codes, num_codebooks=2))  # fmt: skip


# ---------------------------------------------------------------------------- stereo
def test_stereo_interleaves_left_and_right(tiny, stereo):
    left, right = audio.sine(220, 0.5, 32000), audio.sine(1760, 0.5, 32000)
    codes = tokens.encode(stereo, np.stack([left, right]), 32000)
    assert codes.shape == (1, 8, 25)
    np.testing.assert_array_equal(codes[:, 0::2], tokens.encode(tiny, left, 32000))
    np.testing.assert_array_equal(codes[:, 1::2], tokens.encode(tiny, right, 32000))
    wav = tokens.decode(stereo, codes)
    assert wav.shape == (1, 2, 25 * 640)
    np.testing.assert_allclose(wav[:, :1], tokens.decode(tiny, codes[:, 0::2]), atol=1e-6)
    np.testing.assert_allclose(wav[:, 1:], tokens.decode(tiny, codes[:, 1::2]), atol=1e-6)
    coarse = tokens.decode(stereo, codes, num_codebooks=1)
    np.testing.assert_allclose(
        coarse[:, 1:], tokens.decode(tiny, codes[:, 1::2], num_codebooks=1), atol=1e-6
    )
    mono_in = tokens.encode(stereo, left, 32000)  # mono input duplicated to both channels
    np.testing.assert_array_equal(mono_in[:, 0::2], mono_in[:, 1::2])


# ---------------------------------------------------------------------------- arithmetic
def test_arithmetic():
    assert tokens.bits_per_code(2048) == 11
    assert tokens.bits_per_code() == 11
    assert tokens.bits_per_code(2) == 1
    assert tokens.bitrate() == 2200.0
    assert tokens.bitrate(num_codebooks=8) == 4400.0
    assert tokens.tokens_per_second() == 200.0
    assert tokens.num_frames(10.0) == 500
    assert tokens.num_frames(1.1) == 55  # 1.1 * 50 = 55.00000000000001
    assert tokens.num_frames(0.07) == 4  # 3.5000000000000004 -> 4
    assert tokens.num_frames(0.019) == 1
    assert tokens.num_frames(1.0, frame_rate=7.8125) == 8
    assert tokens.compression_ratio() == pytest.approx(32000 * 16 / 2200)
    assert tokens.compression_ratio(channels=2, num_codebooks=8) == pytest.approx(
        tokens.compression_ratio()
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: tokens.bits_per_code(1), "codebook_size must be an integer >= 2, got 1"),
        (lambda: tokens.num_frames(0), "duration must be a positive number, got 0"),
        (lambda: tokens.num_frames(-1.0), "duration"),
        (lambda: tokens.bitrate(frame_rate=float("inf")), "frame_rate"),
        (lambda: tokens.tokens_per_second(num_codebooks=2.5), "num_codebooks"),
        (lambda: tokens.compression_ratio(bit_depth=0), "bit_depth"),
    ],
)
def test_arithmetic_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---------------------------------------------------------------------------- usage
def test_codebook_usage_known_entropy():
    uniform4 = np.tile(np.arange(4), 8)  # 32 codes, uniform over 4 -> 2 bits
    constant = np.full(32, 7)
    half = np.repeat([1, 2], 16)  # 1 bit
    skewed = np.array([5] * 24 + [6] * 8)  # p = 3/4, 1/4
    df = tokens.codebook_usage(np.stack([uniform4, constant, half, skewed]), codebook_size=16)
    assert list(df.columns) == [
        "codebook", "entropy_bits", "unique_codes", "usage", "top_codes", "top_counts"
    ]  # fmt: skip
    np.testing.assert_allclose(
        df.entropy_bits, [2.0, 0.0, 1.0, -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))]
    )
    assert df.unique_codes.tolist() == [4, 1, 2, 2]
    np.testing.assert_allclose(df.usage, [4 / 16, 1 / 16, 2 / 16, 2 / 16])
    assert df.top_codes[3] == [5, 6] and df.top_counts[3] == [24, 8]
    assert df.top_codes[0] == [0, 1, 2, 3]  # ties: lower code first


def test_codebook_usage_pools_batch_and_limits_top():
    codes = np.zeros((2, 2, 10), dtype=int)
    codes[1, 1] = 1  # codebook 1: item 0 all 0, item 1 all 1 -> pooled, 1 bit
    df = tokens.codebook_usage(codes, codebook_size=2048, top=1)
    assert df.entropy_bits.tolist() == [0.0, 1.0]
    assert df.top_codes.tolist() == [[0], [0]] and df.top_counts.tolist() == [[20], [10]]
    df = tokens.codebook_usage(np.arange(4).reshape(1, 1, 4), codebook_size=4, top=2)
    assert df.entropy_bits[0] == pytest.approx(2.0) and df.top_codes[0] == [0, 1]
    assert df.usage[0] == 1.0
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        tokens.codebook_usage(np.array([[0, 4]]), codebook_size=4)
    with pytest.raises(TypeError, match="integer"):
        tokens.codebook_usage(np.zeros((1, 4)), codebook_size=4)


def test_num_frames_tolerates_float_error():
    assert tokens.num_frames(0.1 * 3, frame_rate=50) == 15
    assert tokens.num_frames(2.0, frame_rate=50) == 100
