"""Weight layouts of the C++ linear: int8 and 4-bit weights packed for one sequential read.

A batch-1 decode step reads every weight once, so the linear is bound by memory
bandwidth; :func:`pack_int8` and :func:`pack_int4` lay the weights out so that
each thread reads its share in one pass. :func:`quantize_int4` makes the 4-bit
weights (a scale per :data:`GROUP` inputs of a row).
"""

from __future__ import annotations

import torch

__all__ = ["GROUP", "pack_int8", "unpack_int8", "quantize_int4", "pack_int4", "unpack_int4"]

GROUP = 64  # inputs per 4-bit weight scale


def pack_int8(w: torch.Tensor) -> torch.Tensor:
    """int8 weights ``[out, in]`` in the layout the C++ linear reads in one pass.

    Blocks of 4 output rows; within a block, for every 32 inputs, the 4 rows'
    32 bytes back to back: ``[ceil(out / 4), ceil(in / 32), 4, 32]``, padded with
    zeros. :func:`unpack_int8` undoes it.

    Examples
    --------
    >>> import torch
    >>> w = torch.arange(6, dtype=torch.int8).reshape(2, 3)
    >>> p = pack_int8(w)
    >>> p.shape, torch.equal(unpack_int8(p, 2, 3), w)
    (torch.Size([1, 1, 4, 32]), True)
    """
    out, inn = w.shape
    po, pi = -out % 4, -inn % 32
    w = torch.nn.functional.pad(w, (0, pi, 0, po))
    return w.reshape((out + po) // 4, 4, (inn + pi) // 32, 32).transpose(1, 2).contiguous()


def unpack_int8(packed: torch.Tensor, out: int, inn: int) -> torch.Tensor:
    """The ``[out, in]`` int8 weights inside :func:`pack_int8`'s layout.

    Examples
    --------
    >>> import torch
    >>> w = torch.arange(6, dtype=torch.int8).reshape(3, 2)
    >>> unpack_int8(pack_int8(w), 3, 2).tolist()
    [[0, 1], [2, 3], [4, 5]]
    """
    blocks, chunks = packed.shape[:2]
    return packed.transpose(1, 2).reshape(blocks * 4, chunks * 32)[:out, :inn].contiguous()


def quantize_int4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """4-bit weights: ``w ~= q * scale`` per group of :data:`GROUP` inputs of a row.

    Symmetric, ``q`` in ``[-7, 7]`` (int8), ``scale = max |w| / 7`` over the group
    (``[out, ceil(in / 64)]`` float32; a last, shorter group is padded with zeros).

    Examples
    --------
    >>> import torch
    >>> q, s = quantize_int4(torch.tensor([[0.7, -0.35, 0.1]]))
    >>> q.tolist(), s.shape
    ([[7, -4, 1]], torch.Size([1, 1]))
    """
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"quantize_int4 takes float weights [out, in], got {_describe(w)}")
    out, inn = w.shape
    g = torch.nn.functional.pad(w.detach().float(), (0, -inn % GROUP)).reshape(out, -1, GROUP)
    scale = (g.abs().amax(-1) / 7.0).clamp_min(1e-12)
    q = torch.round(g / scale[..., None]).clamp_(-7, 7).to(torch.int8)
    return q.reshape(out, -1)[:, :inn].contiguous(), scale


def _describe(x) -> str:
    """``float32 tensor of shape (5,)`` or the type's name, for error messages."""
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """4-bit weights ``[out, in]`` (int8 in ``[-7, 7]``) in the layout the C++ linear reads.

    Blocks of 4 output rows; within a block, for every 64 inputs, the 4 rows'
    32 bytes back to back, byte ``e`` holding input ``e`` in its low nibble and
    input ``e + 32`` in its high one, each stored as ``q + 8``:
    ``[ceil(out / 4), ceil(in / 64), 4, 32]`` uint8, padded with zeros (``8``).
    :func:`unpack_int4` undoes it.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[-7, 0, 7]], dtype=torch.int8)
    >>> p = pack_int4(q)
    >>> p.shape, p.dtype, torch.equal(unpack_int4(p, 1, 3), q)
    (torch.Size([1, 1, 4, 32]), torch.uint8, True)
    """
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"pack_int4 takes int8 [out, in] weights in [-7, 7], got {_describe(q)}")
    if q.numel() and q.abs().max() > 7:
        raise ValueError(
            f"pack_int4 takes int8 [out, in] weights in [-7, 7], got values up to "
            f"{int(q.abs().max())} in magnitude"
        )
    out, inn = q.shape
    u = torch.nn.functional.pad(q, (0, -inn % GROUP, 0, -out % 4)).to(torch.uint8) + 8
    u = u.reshape(u.shape[0] // 4, 4, -1, 2, 32)  # [blocks, row, group, half, 32]
    return (u[:, :, :, 0] | (u[:, :, :, 1] << 4)).transpose(1, 2).contiguous()


def unpack_int4(packed: torch.Tensor, out: int, inn: int) -> torch.Tensor:
    """The ``[out, in]`` 4-bit weights (int8 in ``[-7, 7]``) inside :func:`pack_int4`'s layout.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[3, -2], [0, 7]], dtype=torch.int8)
    >>> unpack_int4(pack_int4(q), 2, 2).tolist()
    [[3, -2], [0, 7]]
    """
    u = packed.transpose(1, 2)  # [blocks, 4, groups, 32]
    halves = torch.stack([u & 15, u >> 4], dim=3)  # [blocks, 4, groups, 2, 32]
    q = halves.reshape(packed.shape[0] * 4, -1).to(torch.int8) - 8
    return q[:out, :inn].contiguous()
