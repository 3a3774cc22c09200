"""The decoder's weights, looked up once and flattened in the order the layers read them.

:func:`weight_table` walks the transformers decoder layers once per
:class:`~musicgen_nb.engine.Decoder` and checks that every linear, norm and
activation is what :func:`~musicgen_nb.engine.layers.run_layers` computes; the
step then reads plain lists, never ``nn.Module`` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layers import fast_mm_ok
from .lowbit import Int8Part
from .quantize import Int8Linear

__all__ = [
    "INT8", "MATVEC", "LINEAR", "DEQUANT", "KERNEL", "SLOTS", "Table", "weight_table",
    "fused_parts",
]  # fmt: skip

#: How the layers' linears run (one mode for a whole decoder): fbgemm int8, fp32
#: ``W @ x.T``, ``F.linear``, int8 weights dequantized at each call, or our C++
#: int8 linear (:func:`musicgen_nb._kernels.linear_int8`).
INT8, MATVEC, LINEAR, DEQUANT, KERNEL = 0, 1, 2, 3, 4
#: The linears of one decoder layer, in the order of the weight table.
SLOTS = ("q", "k", "v", "out", "cross_q", "cross_out", "fc1", "fc2")


def fused_parts(modules) -> object | None:
    """The fused int8 layer behind ``modules`` when they are its consecutive parts, in order.

    Examples
    --------
    >>> import torch
    >>> fused_parts([torch.nn.Linear(2, 2)]) is None
    True
    """
    if not modules or not all(isinstance(m, Int8Part) for m in modules):
        return None
    fused = modules[0].fused
    edge = 0
    for m in modules:
        if m.fused is not fused or m.start != edge:
            return None
        edge = m.stop
    return fused if edge == fused.out_features else None


@dataclass
class Table:
    """The weights :func:`~musicgen_nb.engine.layers.run_layers` reads, flattened into lists.

    8 linears a layer, 3 norms a layer as weight and bias.

    Examples
    --------
    >>> Table(MATVEC, False, [], [], [], [], False, [], 1e-5).mode == MATVEC
    True
    """

    mode: int
    fused_qkv: bool
    packed: list
    weights: list
    biases: list
    scales: list
    reduce_range: bool
    norms: list
    eps: float


def _mode(probe) -> int:
    """The table's mode, from one of its linears."""
    if isinstance(probe, Int8Linear):
        return {"kernel": KERNEL, "fbgemm": INT8}.get(probe.backend, DEQUANT)
    if type(probe) is torch.nn.Linear:
        return MATVEC if fast_mm_ok(probe.weight) else LINEAR
    raise TypeError(f"the engine runs nn.Linear or Int8Linear layers, not {type(probe).__name__}")


def weight_table(layers) -> Table:
    """Look up every layer's weights once, in the order the layers read them.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> t = weight_table(mg.load("tiny").model.decoder.model.decoder.layers)
    >>> t.mode == MATVEC, len(t.weights) == 8 * len(t.norms) // 6
    (True, True)
    """
    first = layers[0]
    fused = [
        fused_parts([lyr.self_attn.q_proj, lyr.self_attn.k_proj, lyr.self_attn.v_proj])
        for lyr in layers
    ]
    fused_qkv = all(f is not None for f in fused)
    probe = first.fc1
    reduce_range = bool(getattr(probe, "reduce_range", False))
    eps = first.self_attn_layer_norm.eps
    t = Table(_mode(probe), fused_qkv, [], [], [], [], reduce_range, [], eps)
    for layer, qkv in zip(layers, fused, strict=True):
        act = layer.activation_fn
        if getattr(act, "act", act) is not F.gelu or getattr(act, "approximate", "none") != "none":
            raise TypeError(f"the engine runs MusicGen's exact GELU, not {act!r}")
        attn, cross = layer.self_attn, getattr(layer, "encoder_attn", None)
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj]
        if fused_qkv:
            linears[:3] = [qkv, qkv, qkv]
        linears += [cross.q_proj, cross.out_proj] if cross is not None else [attn.out_proj] * 2
        linears += [layer.fc1, layer.fc2]
        for slot, lin in zip(SLOTS, linears, strict=True):
            _add(t, lin, slot)
        # Without cross-attention (melody) its slot holds the self-attention norm, unused.
        cross_norm = getattr(layer, "encoder_attn_layer_norm", layer.self_attn_layer_norm)
        for ln in (layer.self_attn_layer_norm, cross_norm, layer.final_layer_norm):
            if type(ln) is not torch.nn.LayerNorm or ln.eps != t.eps:
                raise TypeError(f"the engine runs LayerNorm(eps={t.eps}) layers, not {ln!r}")
            t.norms += [ln.weight, ln.bias]
    return t


def _add(t: Table, lin, slot: str) -> None:
    """Append one linear to the weight table in ``t.mode``."""
    kind = {
        KERNEL: "Int8Linear (kernel)",
        INT8: "Int8Linear (fbgemm)",
        DEQUANT: "Int8Linear",
        MATVEC: "nn.Linear",
        LINEAR: "nn.Linear",
    }
    ok = (
        isinstance(lin, Int8Linear)
        if t.mode in (INT8, DEQUANT, KERNEL)
        else type(lin) is torch.nn.Linear
    )
    backend = {KERNEL: "kernel", INT8: "fbgemm"}.get(t.mode, "dequantize")
    if not ok or (t.mode in (INT8, KERNEL) and lin.backend != backend):
        raise TypeError(
            f"{slot}: every linear of the decoder must be {kind[t.mode]}, got {type(lin).__name__}"
        )
    if t.mode == INT8:
        t.packed.append(lin.packed)
        return
    if t.mode in (DEQUANT, KERNEL):
        t.weights.append(lin.qweight if t.mode == KERNEL else lin.int8_weight())
        t.scales.append(lin.scale)
        t.biases.append(lin.bias)
        return
    t.weights.append(lin.weight)
    b = lin.bias
    t.biases.append(b[:, None] if b is not None and t.mode == MATVEC else b)
