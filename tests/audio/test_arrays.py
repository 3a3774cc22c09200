"""Tests for musicgen_nb.audio.arrays: coercion, batching, finiteness and channel layout."""

import numpy as np
import pytest
import torch

from musicgen_nb import audio
from musicgen_nb.audio.arrays import check_finite, to_float32, to_numpy


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((100,), (1, 1, 100)), ((2, 100), (1, 2, 100)), ((3, 2, 100), (3, 2, 100))],
)
def test_as_batch_shapes(shape, expected):
    x = np.random.default_rng(0).standard_normal(shape)
    out = audio.as_batch(x)
    assert out.shape == expected
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(shape), x, rtol=1e-6)


def test_as_batch_accepts_torch_with_grad():
    t = torch.ones(2, 50, requires_grad=True) * 0.5
    out = audio.as_batch(t)
    assert isinstance(out, np.ndarray) and out.shape == (1, 2, 50)
    assert np.all(out == 0.5)


def test_as_batch_scales_int16_pcm():
    out = audio.as_batch(np.array([0, 16384, -32768], dtype=np.int16))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, -1.0])


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (np.zeros((1, 1, 1, 4)), ValueError, "shape"),
        (np.zeros(0), ValueError, "empty"),
        (np.array([0.0, np.nan]), ValueError, "non-finite"),
        (np.array([0.0, np.inf]), ValueError, "non-finite"),
        ("noise.wav", TypeError, "str"),
        (np.array(["a", "b"]), TypeError, "dtype"),
        (np.zeros(3, dtype=complex), TypeError, "complex"),
    ],
)
def test_as_batch_rejects(bad, exc, match):
    with pytest.raises(exc, match=match) as info:
        audio.as_batch(bad, name="melody")
    assert "melody" in str(info.value)


def test_as_batch_detects_channels_last():
    with pytest.raises(ValueError, match=r"\[samples, channels\].*\.T"):
        audio.as_batch(np.zeros((1000, 2)))


def test_match_channels():
    mono = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    stereo = audio.match_channels(mono, 2)
    assert stereo.shape == (1, 2, 4)
    np.testing.assert_array_equal(stereo[0, 0], stereo[0, 1])
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(audio.match_channels(x, 1), [[[0.5, 0.5]]])
    assert audio.match_channels(x, 2) is x
    with pytest.raises(ValueError, match="channels"):
        audio.match_channels(np.zeros((1, 3, 4)), 2)
    with pytest.raises(ValueError, match="channels"):
        audio.match_channels(mono, 0)


def test_one_item_picks_a_clip_and_names_problems():
    from musicgen_nb.audio import one_item

    batch = np.stack([np.zeros((1, 10)), np.full((1, 10), np.nan)])
    assert one_item(batch, 1).tolist() == [[0.0] * 10]  # NaN made finite for display
    assert one_item(np.ones(5)).shape == (1, 5)
    with pytest.raises(ValueError, match=r"batch of 2 items.*pass item=0\.\.1"):
        one_item(batch)
    with pytest.raises(ValueError, match="item=2 is out of range"):
        one_item(batch, 2)
    with pytest.raises(
        ValueError, match=r"at most 8 channels\. Did you pass \[samples, channels\]"
    ):
        one_item(np.zeros((100, 2)), max_channels=8)


def test_non_finite_is_reported_accurately():
    x = np.zeros(10)
    x[[2, 5]] = np.nan
    x[7] = -np.inf
    with pytest.raises(ValueError, match=r"2 NaN and 1 inf \(the first at index \(2,\)\)"):
        audio.as_batch(x, name="melody")
    with pytest.raises(ValueError, match=r"melody holds values up to 1e\+300, beyond float32"):
        audio.as_batch(np.array([0.0, 1e300]), name="melody")


def test_to_numpy_takes_tensors_and_names_bad_input():
    assert to_numpy(torch.ones(3, dtype=torch.bfloat16), "x").dtype == np.float32
    assert to_numpy([1, 2], "x").dtype.kind == "i"
    with pytest.raises(TypeError, match="melody must be a numeric array or tensor, got NoneType"):
        to_numpy(None, "melody")
    with pytest.raises(
        TypeError, match=r"melody must hold real numbers \(int or float\), got dtype"
    ):
        to_numpy(np.array([1j]), "melody")


def test_to_float32_scales_pcm_and_casts_floats():
    np.testing.assert_allclose(to_float32(np.array([0, 255], dtype=np.uint8)), [-1.0, 127 / 128])
    x = np.ones(3, dtype=np.float32)
    assert to_float32(x) is x


def test_check_finite_accepts_finite_and_ints():
    check_finite(np.zeros(3), "x")
    check_finite(np.array([1, 2]), "x")  # ints are always finite
    with pytest.raises(ValueError, match=r"x holds non-finite values: 0 NaN and 1 inf"):
        check_finite(np.array([np.inf]), "x")
