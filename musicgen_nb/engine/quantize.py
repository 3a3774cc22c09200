"""Int8 (and 4-bit) weights for the decoder's linear layers (CPU).

:func:`quantize_int8` replaces every ``nn.Linear`` of the MusicGen decoder (self- and
cross-attention q/k/v/out projections, ``fc1``, ``fc2`` and the ``lm_heads``) by an
:class:`Int8Linear`: symmetric int8 weights with one scale per output channel. The text
encoder, EnCodec, the embeddings and the layer norms stay in fp32.

Each call quantizes its input on the fly and accumulates in int32, so a decode step reads a
quarter of the fp32 weight bytes. That is what makes it fast: a batch-1 decode step is bound by
memory bandwidth, not arithmetic. Three backends, chosen once per layer
(:attr:`Int8Linear.backend`):

* ``"kernel"``: our C++ int8 linear (:mod:`musicgen_nb._kernels`), with one input scale per
  row and weights laid out for one sequential read. Used wherever the kernels build (x86-64
  Linux with a C++ compiler).
* ``"fbgemm"``: PyTorch's x86 int8 GEMM library, one input scale per call (7-bit inputs on
  CPUs without VNNI). The fallback without a compiler, or with ``MUSICGEN_NB_KERNELS=0``.
* ``"dequantize"``: int8 weights turned back into floats at each call, where neither exists
  (non-x86 builds): slower than fp32, with the int8 memory.

Memory (the decoder's linear weights, counted from the stored configs):

========  ==========  ==========  ==========  ==========
model     fp32 (GB)   int8 (GB)   saved (GB)  int4 (GB)
========  ==========  ==========  ==========  ==========
small     1.64        0.41        1.23        0.23
medium    7.30        1.82        5.47        1.03
melody    5.49        1.37        4.11        0.78
large     12.95       3.24        9.71        1.83
========  ==========  ==========  ==========  ==========

Measured on musicgen-small (random weights): the process holds 1.5 GB after
``load(precision="int8")`` against 2.7 GB in fp32, and peaks at 2.05 GB while generating 5 s
against 3.15 GB. Each self-attention's q/k/v projections, and the four lm_heads, run as one
fused GEMM (same outputs: the input's quantization depends only on the input).

4-bit weights (:func:`quantize_int4`, ``mg.load(..., precision="int4")``): the transformer
layers' linears get 4-bit weights with a float32 scale per 64 inputs (:class:`Int4Linear`, our
kernel only), the lm_heads stay int8. A step then reads ~0.57 bytes per weight instead of 1, at
~10% error per layer instead of ~0.8%.

Accuracy: relative error per layer on random inputs ~0.8% with the kernel (8-bit inputs, a scale
per row), ~1.6% with fbgemm; on musicgen-small (random weights) under teacher forcing, mean KL to
fp32 well under 0.01 nats per token (``benchmarks/bench_generate.py``). Trained weights have
activation outliers that one scale per input row handles less well: check on a real checkpoint.
"""

from __future__ import annotations

import functools
import warnings
import weakref

import torch
from torch import nn

from .. import _kernels
from .._kernels import GROUP, pack_int4, pack_int8, quantize_kv, unpack_int4, unpack_int8
from .lowbit import Int8Part, has_vnni, int4_weights, prepack, quantize_decoder

__all__ = [
    "Int8Linear", "Int4Linear", "Int8Part", "quantize_int8", "quantize_int4", "linear_bytes",
    "kernel_available", "fbgemm_available", "int4_unavailable",
]  # fmt: skip


def kernel_available() -> bool:
    """True when our C++ int8 linear is built and loaded (:func:`musicgen_nb._kernels.load`).

    Examples
    --------
    >>> isinstance(kernel_available(), bool)
    True
    """
    return _kernels.load()


def int4_unavailable() -> str:
    """Why 4-bit weights cannot run here (the message of the errors that refuse them).

    Examples
    --------
    >>> "use precision='int8'" in int4_unavailable()
    True
    """
    return (
        "precision='int4' runs only on musicgen-nb's C++ kernel on the CPU, which is not "
        f"available here ({_kernels.status()['reason']}); use precision='int8'"
    )


@functools.cache
def fbgemm_available() -> bool:
    """True when PyTorch's fbgemm int8 linear ops exist and run on this machine.

    Examples
    --------
    >>> isinstance(fbgemm_available(), bool)
    True
    """
    try:
        q = torch.ones(2, 2, dtype=torch.int8)
        packed = prepack(q, torch.ones(2), None)
        torch.ops.quantized.linear_dynamic(torch.ones(1, 2), packed, True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (per-output-channel scales) and fp32 in/out.

    Parameters
    ----------
    linear : torch.nn.Linear
        The fp32 layer to quantize; its weights are not kept.

    Attributes
    ----------
    backend : {"kernel", "fbgemm", "dequantize"}
        What runs the layer (see the module's docstring).
    packed : object or None
        fbgemm's packed int8 weights and bias (``"fbgemm"`` only).
    qweight : torch.Tensor or None
        ``"kernel"``: int8 in :func:`musicgen_nb._kernels.pack_int8`'s layout; ``"dequantize"``:
        int8 ``[out, in]``; None for ``"fbgemm"``. :meth:`int8_weight` gives ``[out, in]``.
    scale : torch.Tensor
        float32 ``[out]``: ``weight ~= int8_weight() * scale[:, None]``.
    bias : torch.Tensor or None

    Examples
    --------
    >>> import torch
    >>> layer = Int8Linear(torch.nn.Linear(64, 8))
    >>> layer.int8_weight().shape, layer.forward(torch.randn(2, 64)).shape
    (torch.Size([8, 64]), torch.Size([2, 8]))
    >>> layer.extra_repr()  # also in repr(layer)
    'in_features=64, out_features=8, int8 (...)'
    """

    bits = 8

    def __init__(
        self,
        linear: nn.Linear | None = None,
        *,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if linear is not None:
            weight, bias = linear.weight, linear.bias
        w = weight.detach().float()
        self.out_features, self.in_features = w.shape
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self._memo = None
        self.reduce_range = not has_vnni()
        self.packed = None
        q, scale = self._quantize(w)
        self.register_buffer("scale", scale)
        self.register_buffer("qweight", q)

    def _quantize(self, w: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(qweight, scale)`` for fp32 ``w``; sets :attr:`backend` (and :attr:`packed`)."""
        q, scale = quantize_kv(w)  # one scale per output row
        self.backend = "dequantize"
        if w.device.type == "cpu" and kernel_available():
            self.backend, q = "kernel", pack_int8(q)
        elif w.device.type == "cpu" and fbgemm_available():
            # fbgemm keeps its own packed int8 copy: no second copy is held here.
            self.backend, self.packed = "fbgemm", prepack(q, scale, self.bias)
            q = None
        return q, scale

    @classmethod
    def fuse(cls, linears: list[nn.Linear]) -> Int8Linear:
        """One int8 layer computing several linears of the same input (outputs concatenated).

        Scales are per output channel and the input's quantization depends only
        on the input, so the fused outputs equal the separate layers' outputs.

        Examples
        --------
        >>> Int8Linear.fuse([torch.nn.Linear(64, 8), torch.nn.Linear(64, 4)]).out_features
        12
        """
        weight = torch.cat([lin.weight.detach() for lin in linears])
        if all(lin.bias is None for lin in linears):
            bias = None
        else:
            bias = torch.cat([
                lin.bias.detach() if lin.bias is not None else lin.weight.new_zeros(lin.out_features) for lin in linears
            ])  # fmt: skip
        return cls(weight=weight, bias=bias)

    def memo(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x)``, re-used while called again with the same unchanged tensor (for parts).

        "Unchanged" is checked with the tensor's version counter; inference-mode tensors have
        none, and there the same tensor object is enough (transformers feeds one hidden state
        to q/k/v, or to every lm_head, back to back).

        Examples
        --------
        >>> layer, x = Int8Linear(torch.nn.Linear(64, 8)), torch.randn(2, 64)
        >>> layer.memo(x) is layer.memo(x), layer.memo(x) is layer.memo(x + 0)
        (True, False)
        """
        version = -1 if x.is_inference() else x._version
        m = self._memo
        if m is not None and m[0]() is x and m[1] == version:
            return m[2]
        y = self(x)
        self._memo = (weakref.ref(x), version, y)
        return y

    def int8_weight(self) -> torch.Tensor:
        """The int8 weights ``[out, in]`` (unpacked from the kernel's or fbgemm's layout)."""
        if self.backend == "kernel":
            return unpack_int8(self.qweight, self.out_features, self.in_features)
        if self.packed is None:
            return self.qweight
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ops.quantized.linear_unpack(self.packed)[0].int_repr()

    def dequantized(self) -> torch.Tensor:
        """The float32 weights ``[out, in]`` these int8 weights and scales stand for.

        Examples
        --------
        >>> lin = torch.nn.Linear(64, 8)  # weights within +-1/8: steps of at most 1/1016
        >>> bool((Int8Linear(lin).dequantized() - lin.weight).abs().max() < 0.001)
        True
        """
        return self.int8_weight().float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer: ``x @ W.T + bias`` with the quantized weights.

        Parameters
        ----------
        x : torch.Tensor
            The input ``[..., in_features]``.

        Returns
        -------
        torch.Tensor
            ``[..., out_features]``, in ``x``'s dtype.
        """
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.backend == "kernel" and x.device.type == "cpu":
            y = torch.ops.musicgen_nb.linear_int8(
                x2.float().contiguous(), self.qweight, self.scale, self.bias, False
            ).to(x.dtype)
        elif self.packed is not None and x.device.type == "cpu":
            y = torch.ops.quantized.linear_dynamic(x2.float(), self.packed, self.reduce_range).to(
                x.dtype
            )
        else:
            w = self.dequantized().to(x.dtype)
            y = nn.functional.linear(x2, w, None if self.bias is None else self.bias.to(x.dtype))
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Sizes, bit width and backend, shown in the module's repr."""
        kind = f"int{self.bits}"
        return f"in_features={self.in_features}, out_features={self.out_features}, {kind} ({self.backend})"


class Int4Linear(Int8Linear):
    """A linear layer with 4-bit weights (a scale per 64 inputs of a row) and fp32 in/out.

    Runs only on our C++ kernel (:func:`musicgen_nb._kernels.linear_int8`, which takes
    :func:`~musicgen_nb._kernels.pack_int4` weights): the inputs are quantized per row to int8
    as for :class:`Int8Linear`. Each group's scale is the one, among ``max |w| / 7`` times 1.0,
    0.975, ..., 0.8, with the smallest squared error over the group (clipping the largest
    weights a little lowers the error of the rest: ~7% less error on Gaussian weights).

    Parameters
    ----------
    linear : torch.nn.Linear
        The fp32 layer to quantize (on the CPU); its weights are not kept.

    Attributes
    ----------
    qweight : torch.Tensor
        uint8 in :func:`~musicgen_nb._kernels.pack_int4`'s layout.
    scale : torch.Tensor
        float32 ``[out, ceil(in / 64)]``.

    Raises
    ------
    RuntimeError
        Where the kernels do not build (see :func:`musicgen_nb._kernels.status`).

    Examples
    --------
    >>> if kernel_available():
    ...     layer = Int4Linear(torch.nn.Linear(64, 8))
    ...     print(tuple(layer.scale.shape), bool(layer.int8_weight().abs().max() <= 7))
    ...     print(layer.forward(torch.randn(2, 64)).shape, layer.extra_repr())
    ... else:  # what the kernel prints
    ...     print((8, 1), True); print(torch.Size([2, 8]), "in_features=64, out_features=8, int4 (kernel)")
    (8, 1) True
    torch.Size([2, 8]) in_features=64, out_features=8, int4 (kernel)
    """

    bits = 4

    def _quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if w.device.type != "cpu" or not kernel_available():
            raise RuntimeError(int4_unavailable())
        q, scale = int4_weights(w)
        self.backend = "kernel"
        return pack_int4(q), scale

    def int8_weight(self) -> torch.Tensor:
        """The 4-bit weights ``[out, in]`` as int8 values in ``[-7, 7]``."""
        return unpack_int4(self.qweight, self.out_features, self.in_features)

    def dequantized(self) -> torch.Tensor:
        """The float32 weights ``[out, in]`` these 4-bit weights and group scales stand for.

        Examples
        --------
        >>> lin = torch.nn.Linear(64, 8)  # weights within +-1/8: steps of at most 1/56
        >>> not kernel_available() or bool((Int4Linear(lin).dequantized() - lin.weight).abs().max() < 0.02)
        True
        """
        scale = self.scale.repeat_interleave(GROUP, dim=1)[:, : self.in_features]
        return self.int8_weight().float() * scale


def linear_bytes(module: nn.Module) -> int:
    """Bytes held by the weights of the linear layers under ``module`` (fp32, int8 or int4).

    Examples
    --------
    >>> linear_bytes(torch.nn.Linear(4, 2)), linear_bytes(Int8Linear(torch.nn.Linear(4, 2)))
    (40, 24)
    """
    total = 0
    for m in module.modules():
        if isinstance(m, Int8Linear):  # parts hold no weights of their own
            total += m.in_features * m.out_features * m.bits // 8 + m.scale.numel() * 4
            total += 0 if m.bias is None else m.bias.numel() * 4
        elif isinstance(m, nn.Linear):
            total += sum(p.numel() * p.element_size() for p in m.parameters())
    return total


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantize the decoder's linear layers of a MusicGen model to int8, in place.

    Parameters
    ----------
    model : MusicgenForConditionalGeneration or MusicgenMelodyForConditionalGeneration
        fp32, on the CPU.

    Returns
    -------
    The same model: ``model.decoder``'s ``nn.Linear`` layers are now
    :class:`Int8Linear`; everything else is untouched (fp32). Each
    self-attention's q/k/v projections, and the lm_heads, become
    :class:`Int8Part` views of one fused layer (same outputs, one GEMM).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny", precision="int8")
    >>> type(s.model.decoder.model.decoder.layers[0].fc1).__name__
    'Int8Linear'
    """
    return quantize_decoder(model, "quantize_int8", lambda name: Int8Linear)


def quantize_int4(model: nn.Module) -> nn.Module:
    """Quantize the decoder layers' linears to 4 bits (:class:`Int4Linear`), in place.

    As :func:`quantize_int8`, except that the linears of the transformer layers get 4-bit
    weights (a scale per 64 inputs); the lm_heads, which write the logits, stay int8. Reads
    ~0.57 bytes per weight instead of int8's 1, at about ten times int8's error per layer: a
    choice for users who trade fidelity for speed (KL to fp32 in
    ``benchmarks/bench_generate.py``). Needs our C++ kernels (:class:`Int4Linear`).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny", precision="int4")
    >>> layer = s.model.decoder.model.decoder.layers[0]
    >>> type(layer.fc1).__name__, type(s.model.decoder.lm_heads[0].fused).__name__
    ('Int4Linear', 'Int8Linear')
    """
    return quantize_decoder(
        model,
        "quantize_int4",
        lambda name: Int8Linear if name.startswith("lm_heads") else Int4Linear,
    )
