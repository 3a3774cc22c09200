"""The weight layouts of the C++ linear: int8 and 4-bit packing, 4-bit quantization."""

from __future__ import annotations

import pytest
import torch

from musicgen_nb import _kernels as K


def test_pack_round_trip():
    w = torch.randint(-127, 128, (13, 70), dtype=torch.int8)
    p = K.pack_int8(w)
    assert p.shape == (4, 3, 4, 32) and p.is_contiguous()
    assert torch.equal(K.unpack_int8(p, 13, 70), w)
    assert p.reshape(4, 3, 4, 32)[3, :, 1:].eq(0).all()  # padding rows are zeros


def test_int4_pack_round_trip_and_layout():
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-7, 8, (13, 70), generator=g, dtype=torch.int8)
    p = K.pack_int4(q)
    assert p.shape == (4, 2, 4, 32) and p.dtype == torch.uint8 and p.is_contiguous()
    assert torch.equal(K.unpack_int4(p, 13, 70), q)
    assert p[3, :, 1:].eq(8 | 8 << 4).all()  # padding rows hold zeros (stored as 8)
    assert p[0, 0, 0, 5].item() == (int(q[0, 5]) + 8) | (int(q[0, 37]) + 8) << 4
    with pytest.raises(ValueError, match=r"\[-7, 7\], got values up to 8 in magnitude"):
        K.pack_int4(torch.full((4, 64), -8, dtype=torch.int8))
    with pytest.raises(
        ValueError, match=r"int8 \[out, in\].*got float32 tensor of shape \(13, 70\)"
    ):
        K.pack_int4(q.float())
    with pytest.raises(ValueError, match="got list"):
        K.pack_int4([[1]])
    with pytest.raises(
        ValueError, match=r"float weights \[out, in\], got float32 tensor of shape \(5,\)"
    ):
        K.quantize_int4(torch.ones(5))
    with pytest.raises(ValueError, match="got int8 tensor"):
        K.quantize_int4(q)


def test_quantize_int4_groups():
    """A scale per 64 inputs: a row of small weights next to a large one keeps its precision."""
    w = torch.cat([torch.full((1, 64), 0.01), torch.full((1, 64), 7.0)], dim=1)
    q, scale = K.quantize_int4(w)
    assert scale.shape == (1, 2) and q.tolist() == [[7] * 128]
    torch.testing.assert_close(scale, torch.tensor([[0.01 / 7, 1.0]]))
    q, scale = K.quantize_int4(torch.ones(3, 65))  # a short last group
    assert q.shape == (3, 65) and scale.shape == (3, 2)
