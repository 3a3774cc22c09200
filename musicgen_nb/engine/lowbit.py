"""Building blocks of the int8 and 4-bit layers of :mod:`musicgen_nb.engine.quantize`.

fbgemm's weight packing and the CPU check it depends on, the 4-bit scale search,
the parts of a fused layer, and giving freed weights back to the OS.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from .._kernels import GROUP, quantize_int4

__all__ = [
    "has_vnni", "prepack", "int4_weights", "Int8Part", "fuse_into", "quantize_decoder",
    "release_freed_memory",
]  # fmt: skip


@functools.cache
def has_vnni() -> bool:
    """True when the CPU has VNNI (int8 dot products that cannot saturate).

    Examples
    --------
    >>> isinstance(has_vnni(), bool)
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags
    except OSError:
        pass
    return False


def prepack(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """fbgemm-packed weights from int8 ``q`` ``[out, in]`` and per-row ``scale``.

    Raises whatever fbgemm raises where it is not built in
    (:func:`~musicgen_nb.engine.quantize.fbgemm_available` checks).

    Examples
    --------
    >>> import torch
    >>> try:
    ...     packed = prepack(torch.ones(2, 2, dtype=torch.int8), torch.ones(2), None)
    ...     y = torch.ops.quantized.linear_dynamic(torch.ones(1, 2), packed, True)
    ... except Exception:
    ...     y = torch.full((1, 2), 2.0)
    >>> y.tolist()
    [[2.0, 2.0]]
    """
    zeros = torch.zeros(scale.shape, dtype=torch.long)
    with warnings.catch_warnings():
        # PyTorch flags its quantized tensor type as deprecated; it is only the
        # carrier handed to fbgemm's prepack here.
        warnings.simplefilter("ignore")
        qt = torch._make_per_channel_quantized_tensor(q, scale.double(), zeros, 0)
        return torch.ops.quantized.linear_prepack(qt, bias)


def int4_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~musicgen_nb._kernels.quantize_int4` with the least-squares scale of each group.

    Each group's scale is picked for the smallest squared error among ``max |w| / 7`` times
    1.0, 0.975, ..., 0.8.

    Examples
    --------
    >>> import torch
    >>> w = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    >>> q, scale = int4_weights(w)
    >>> q.shape, scale.shape, int(q.abs().max())
    (torch.Size([4, 100]), torch.Size([4, 2]), 7)
    """
    q, base = quantize_int4(w)
    scale = base
    out, inn = w.shape
    g = nn.functional.pad(w, (0, -inn % GROUP)).reshape(out, -1, GROUP)
    best_q = nn.functional.pad(q, (0, -inn % GROUP)).reshape(out, -1, GROUP)
    best_err = ((best_q * scale[..., None] - g) ** 2).sum(-1)
    for ratio in torch.linspace(0.975, 0.8, 8).tolist():
        s = base * ratio
        cand = torch.round(g / s[..., None]).clamp_(-7, 7)
        err = ((cand * s[..., None] - g) ** 2).sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        scale = torch.where(better, s, scale)
        best_q = torch.where(better[..., None], cand.to(torch.int8), best_q)
    return best_q.reshape(out, -1)[:, :inn].contiguous(), scale


class Int8Part(nn.Module):
    """Output columns ``[start, stop)`` of a fused layer, as a layer of its own.

    transformers calls ``q_proj(h)``, ``k_proj(h)`` and ``v_proj(h)`` on the same
    ``h``: the fused layer (an :class:`~musicgen_nb.engine.quantize.Int8Linear`)
    runs once and each part slices its output. Our engine calls the fused layer
    directly.

    Examples
    --------
    >>> import torch
    >>> from musicgen_nb.engine.quantize import Int8Linear
    >>> fused = Int8Linear.fuse([torch.nn.Linear(8, 4), torch.nn.Linear(8, 2)])
    >>> Int8Part(fused, 4, 6)(torch.randn(3, 8)).shape
    torch.Size([3, 2])
    """

    def __init__(self, fused: nn.Module, start: int, stop: int):
        super().__init__()
        self.fused = fused
        self.start, self.stop = start, stop
        self.in_features, self.out_features = fused.in_features, stop - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Columns ``[start, stop)`` of the fused layer's output for ``x``.

        Parameters
        ----------
        x : torch.Tensor
            The input ``[..., in_features]``; the fused layer runs once per input tensor.

        Returns
        -------
        torch.Tensor
            ``[..., stop - start]``, contiguous.
        """
        return self.fused.memo(x)[..., self.start : self.stop].contiguous()

    def extra_repr(self) -> str:
        """The columns this part takes, shown in the module's repr."""
        return f"columns [{self.start}, {self.stop}) of a fused int8 layer"


def fuse_into(parent: nn.Module, names: list[str], cls, container=None) -> nn.Module:
    """Replace ``parent.<name>`` (or ``container[i]``) layers by parts of one fused ``cls`` layer.

    Returns the fused layer (``cls.fuse(layers)``); each replaced layer is now an
    :class:`Int8Part` of it.

    Examples
    --------
    >>> import torch
    >>> from musicgen_nb.engine.quantize import Int8Linear
    >>> attn = torch.nn.Module()
    >>> attn.q, attn.k = torch.nn.Linear(8, 4), torch.nn.Linear(8, 2)
    >>> fused = fuse_into(attn, ["q", "k"], Int8Linear)
    >>> fused.out_features, (attn.k.start, attn.k.stop)
    (6, (4, 6))
    """
    layers = [container[int(n)] if container is not None else getattr(parent, n) for n in names]
    fused = cls.fuse(layers)
    start = 0
    for n, lin in zip(names, layers, strict=True):
        part = Int8Part(fused, start, start + lin.out_features)
        start += lin.out_features
        if container is not None:
            container[int(n)] = part
        else:
            setattr(parent, n, part)
    return fused


def quantize_decoder(model: nn.Module, caller: str, kind) -> nn.Module:
    """Replace the decoder's ``nn.Linear`` layers by ``kind(name)(linear)``.

    Fusing q/k/v and the lm_heads first (see :func:`~musicgen_nb.engine.quantize.quantize_int8`).

    ``caller`` names the public function in the errors; ``kind(name)`` is the layer
    class for the linear called ``name`` (``"lm_heads"`` for the fused heads).

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> from musicgen_nb.engine.quantize import Int8Linear
    >>> s = mg.load("tiny")
    >>> _ = quantize_decoder(s.model, "quantize_int8", lambda name: Int8Linear)
    >>> type(s.model.decoder.model.decoder.layers[0].fc2).__name__
    'Int8Linear'
    >>> quantize_decoder(torch.nn.Linear(2, 2), "quantize_int8", lambda name: Int8Linear)
    Traceback (most recent call last):
    ...
    TypeError: quantize_int8 needs a MusicGen model with a .decoder, got Linear
    """
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        raise TypeError(
            f"{caller} needs a MusicGen model with a .decoder, got {type(model).__name__}"
        )
    device = next(decoder.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"{caller} runs on the CPU; the model is on {device.type} (use fp16/bf16 there)"
        )
    # Layers that always see the same input run as one fused int8 GEMM: each
    # self-attention's q/k/v, and the per-codebook lm_heads.
    for name, module in list(decoder.named_modules()):
        qkv = [getattr(module, n, None) for n in ("q_proj", "k_proj", "v_proj")]
        if name.endswith("self_attn") and all(type(m) is nn.Linear for m in qkv):
            fuse_into(module, ["q_proj", "k_proj", "v_proj"], kind(name))
    heads = getattr(decoder, "lm_heads", None)
    if (
        isinstance(heads, nn.ModuleList)
        and len(heads) > 1
        and all(type(h) is nn.Linear for h in heads)
    ):
        fuse_into(decoder, [str(i) for i in range(len(heads))], kind("lm_heads"), heads)
    targets = [(name, m) for name, m in decoder.named_modules() if type(m) is nn.Linear]
    for name, lin in targets:
        parent_name, _, child = name.rpartition(".")
        parent = decoder.get_submodule(parent_name) if parent_name else decoder
        q = kind(name)(lin)
        if isinstance(parent, (nn.ModuleList, nn.Sequential)):
            parent[int(child)] = q
        else:
            setattr(parent, child, q)
        del lin
    del targets
    release_freed_memory()
    return model


def release_freed_memory() -> None:
    """Hand the freed fp32 weights back to the OS (glibc keeps them in its heap otherwise).

    Measured on musicgen-small: resident memory after ``load(precision="int8")``
    drops from 2.7 GB to 1.5 GB.

    Examples
    --------
    >>> release_freed_memory()
    """
    import ctypes
    import gc
    import sys

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl, ...): nothing to do
            pass
