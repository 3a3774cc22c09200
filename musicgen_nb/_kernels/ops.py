"""The kernels' Python entry points: the C++ op where it loads, else its PyTorch reference."""

from __future__ import annotations

import torch

from . import build
from .packing import unpack_int4, unpack_int8
from .reference import attend_reference, linear_int4_reference, linear_int8_reference

__all__ = ["attend", "linear_int8"]


def attend(q, k, v, k_cache, k_scale, v_cache, v_scale, pos: int, scaling: float):
    """The C++ kernel where it loads, else :func:`~musicgen_nb._kernels.attend_reference`.

    Same arguments and result as :func:`~musicgen_nb._kernels.attend_reference`.

    Examples
    --------
    >>> import torch
    >>> kc, ks = torch.zeros(1, 2, 4, 2, dtype=torch.int8), torch.zeros(1, 2, 4)
    >>> vc, vs = kc.clone(), ks.clone()
    >>> q = torch.ones(1, 4)
    >>> attend(q, q, q * 2, kc, ks, vc, vs, 0, 0.7).tolist()
    [[2.0, 2.0, 2.0, 2.0]]
    """
    if build.load():
        return torch.ops.musicgen_nb.attend_int8(
            q, k, v, k_cache, k_scale, v_cache, v_scale, pos, scaling
        )
    return attend_reference(q, k, v, k_cache, k_scale, v_cache, v_scale, pos, scaling)


def linear_int8(x, packed, scale, bias=None, gelu=False, ln_weight=None, ln_bias=None, eps=1e-5, residual=None):  # fmt: skip
    """The C++ linear on packed weights where it loads, else its PyTorch reference.

    ``packed`` holds :func:`~musicgen_nb._kernels.pack_int8` (or
    :func:`~musicgen_nb._kernels.pack_int4`) weights; without the kernel the
    weights are unpacked and :func:`~musicgen_nb._kernels.linear_int8_reference`
    (or :func:`~musicgen_nb._kernels.linear_int4_reference`) runs.

    Examples
    --------
    >>> import torch
    >>> from musicgen_nb._kernels import pack_int8
    >>> w = torch.tensor([[127, 0], [0, -127]], dtype=torch.int8)
    >>> linear_int8(torch.tensor([[1.0, -1.0]]), pack_int8(w), torch.tensor([0.5, 1.0]) / 127).tolist()
    [[0.5, 1.0]]
    """
    args = (bias, gelu, ln_weight, ln_bias, eps, residual)
    if build.load():
        return torch.ops.musicgen_nb.linear_int8(x, packed, scale, *args)
    if packed.dtype == torch.uint8:
        q = unpack_int4(packed, scale.shape[0], x.shape[-1])
        return linear_int4_reference(x, q, scale, *args)
    return linear_int8_reference(x, unpack_int8(packed, scale.numel(), x.shape[-1]), scale, *args)
