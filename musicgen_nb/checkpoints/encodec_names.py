"""EnCodec weight names: transformers' ``EncodecModel`` and audiocraft's compression model.

The correspondence is the one transformers' EnCodec conversion script
(``convert_encodec_checkpoint_to_pytorch.py``) documents: the SEANet layer ``N``
is ``encoder.model.N`` in audiocraft and ``encoder.layers.N`` in transformers; a
convolution's ``conv.conv`` (``convtr.convtr`` when transposed) is ``conv``; the
quantizer's ``vq.layers.I._codebook`` is ``layers.I.codebook``. Weight-norm
parameters are ``weight_g``/``weight_v`` in audiocraft and, with current torch,
``parametrizations.weight.original0``/``original1`` in transformers.

:func:`musicgen_nb.checkpoints.audiocraft_format.write` uses it for the
``best_state`` of ``compression_state_dict.bin``.

Examples
--------
>>> to_audiocraft("quantizer.layers.3.codebook.embed")
'quantizer.vq.layers.3._codebook.embed'
>>> to_audiocraft("decoder.layers.3.conv.parametrizations.weight.original0", transposed=True)
'decoder.model.3.convtr.convtr.weight_g'
>>> to_transformers("encoder.model.1.block.3.conv.conv.weight_v")
'encoder.layers.1.block.3.conv.parametrizations.weight.original1'
"""

from __future__ import annotations

import re

__all__ = ["state_to_audiocraft", "to_audiocraft", "to_transformers"]

_PARAMS = {"parametrizations.weight.original0": "weight_g",
           "parametrizations.weight.original1": "weight_v"}  # fmt: skip
_CONV = re.compile(r"^(encoder|decoder)\.layers\.(\d+)((?:\.block\.\d+|\.shortcut)?)\.conv\.(.+)$")
_CONV_AC = re.compile(
    r"^(encoder|decoder)\.model\.(\d+)((?:\.block\.\d+|\.shortcut)?)\.(conv\.conv|convtr\.convtr)\.(.+)$"
)


def to_audiocraft(name: str, *, transposed: bool = False) -> str | None:
    """The audiocraft name of a transformers EnCodec weight (None if it has none).

    ``transposed`` says that the layer is a transposed convolution (the decoder's
    upsampling layers).

    Examples
    --------
    >>> to_audiocraft("encoder.layers.13.lstm.weight_ih_l0")
    'encoder.model.13.lstm.weight_ih_l0'
    """
    match = re.match(r"^quantizer\.layers\.(\d+)\.codebook\.(\w+)$", name)
    if match:
        return f"quantizer.vq.layers.{match[1]}._codebook.{match[2]}"
    match = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.lstm\.(\w+)$", name)
    if match:
        return f"{match[1]}.model.{match[2]}.lstm.{match[3]}"
    match = _CONV.match(name)
    if match:
        kind = "convtr.convtr" if transposed else "conv.conv"
        param = _PARAMS.get(match[4], match[4])
        return f"{match[1]}.model.{match[2]}{match[3]}.{kind}.{param}"
    return None


def to_transformers(name: str) -> str | None:
    """The transformers name of an audiocraft EnCodec weight (None if it has none).

    Examples
    --------
    >>> to_transformers("quantizer.vq.layers.0._codebook.embed_avg")
    'quantizer.layers.0.codebook.embed_avg'
    """
    match = re.match(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)$", name)
    if match:
        return f"quantizer.layers.{match[1]}.codebook.{match[2]}"
    match = re.match(r"^(encoder|decoder)\.model\.(\d+)\.lstm\.(\w+)$", name)
    if match:
        return f"{match[1]}.layers.{match[2]}.lstm.{match[3]}"
    match = _CONV_AC.match(name)
    if match:
        back = {v: k for k, v in _PARAMS.items()}
        return f"{match[1]}.layers.{match[2]}{match[3]}.conv.{back.get(match[5], match[5])}"
    return None


def state_to_audiocraft(codec) -> dict:
    """The state dict of a transformers ``EncodecModel`` under audiocraft's names (CPU, fp32).

    Examples
    --------
    >>> from musicgen_nb.checkpoints.offline import build_random
    >>> from musicgen_nb.checkpoints.specs import tiny_spec
    >>> state = state_to_audiocraft(build_random(tiny_spec()).audio_encoder)
    >>> "decoder.model.3.convtr.convtr.weight_v" in state
    True
    """
    out = {}
    for name, value in codec.state_dict().items():
        layer = name.split(".conv.")[0] + ".conv" if ".conv." in name else None
        transposed = False
        if layer is not None:
            module = codec.get_submodule(layer)
            transposed = "Transpose" in type(module).__name__
        new = to_audiocraft(name, transposed=transposed)
        if new is None:
            raise ValueError(f"EnCodec weight {name!r} has no audiocraft name")
        out[new] = value.detach().float().cpu().contiguous()
    return out
