"""audiocraft's language-model weight names and transformers' MusicGen names, both ways.

The correspondence is the one transformers' conversion scripts
(``convert_musicgen_transformers.py``, ``convert_musicgen_melody_transformers.py``)
document; :mod:`musicgen_nb.checkpoints.audiocraft_format` reads and writes the
files with it. A melody export also holds the chroma extractor's buffers
(``condition_provider.conditioners.self_wav.chroma.*``: its spectrogram window and
filter banks), which transformers' feature extractor computes itself: they are
skipped (:data:`IGNORED`).

Examples
--------
>>> to_audiocraft_name("decoder.model.decoder.layers.3.fc1.weight")
'transformer.layers.3.linear1.weight'
>>> to_transformers_name("condition_provider.conditioners.description.output_proj.bias")
'enc_to_dec_proj.bias'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "IGNORED",
    "state_to_audiocraft",
    "state_to_transformers",
    "to_audiocraft_name",
    "to_transformers_name",
]

_DEC = "decoder.model.decoder."
PROJ = "condition_provider.conditioners."
#: Prefixes of ``best_state`` entries that have no transformers weight and are skipped.
IGNORED = (PROJ + "self_wav.chroma.",)
#: (audiocraft, transformers) name patterns; ``{}`` is a layer or codebook index.
_NAMES = [
    ("emb.{}.weight", _DEC + "embed_tokens.{}.weight"),
    ("linears.{}.weight", "decoder.lm_heads.{}.weight"),
    ("out_norm.weight", _DEC + "layer_norm.weight"),
    ("out_norm.bias", _DEC + "layer_norm.bias"),
    (PROJ + "description.output_proj.weight", "enc_to_dec_proj.weight"),
    (PROJ + "description.output_proj.bias", "enc_to_dec_proj.bias"),
    (PROJ + "self_wav.output_proj.weight", "audio_enc_to_dec_proj.weight"),
    (PROJ + "self_wav.output_proj.bias", "audio_enc_to_dec_proj.bias"),
]
_LAYER = [
    ("self_attn.out_proj.weight", "self_attn.out_proj.weight"),
    ("cross_attention.out_proj.weight", "encoder_attn.out_proj.weight"),
    ("linear1.weight", "fc1.weight"),
    ("linear2.weight", "fc2.weight"),
]
for _a, _t in [("norm1", "self_attn_layer_norm"), ("norm_cross", "encoder_attn_layer_norm"),
               ("norm2", "final_layer_norm")]:  # fmt: skip
    _LAYER += [(f"{_a}.weight", f"{_t}.weight"), (f"{_a}.bias", f"{_t}.bias")]
_NAMES += [(f"transformer.layers.{{}}.{a}", _DEC + f"layers.{{}}.{t}") for a, t in _LAYER]


def _rename(name: str, src: int) -> str | None:
    for pair in _NAMES:
        pattern = "^" + re.escape(pair[src]).replace(r"\{\}", r"(\d+)") + "$"
        match = re.match(pattern, name)
        if match:
            return pair[1 - src].replace("{}", match.group(1)) if match.groups() else pair[1 - src]
    return None


def to_audiocraft_name(name: str) -> str | None:
    """The audiocraft name of a transformers decoder or projection weight (None if it has none).

    Examples
    --------
    >>> to_audiocraft_name("decoder.lm_heads.2.weight")
    'linears.2.weight'
    """
    return _rename(name, 1)


def to_transformers_name(name: str) -> str | None:
    """The transformers name of an audiocraft ``best_state`` weight (None if it has none).

    Examples
    --------
    >>> to_transformers_name("transformer.layers.0.norm_cross.weight")
    'decoder.model.decoder.layers.0.encoder_attn_layer_norm.weight'
    """
    return _rename(name, 0)


def state_to_audiocraft(state: dict) -> dict:
    """The decoder and projection weights of a composite state dict, under audiocraft's names.

    Self- and cross-attention ``q/k/v`` projections are fused into ``in_proj_weight``.

    Examples
    --------
    >>> import torch
    >>> q = {f"decoder.model.decoder.layers.0.self_attn.{p}_proj.weight": torch.eye(2)
    ...      for p in "qkv"}
    >>> {k: tuple(v.shape) for k, v in state_to_audiocraft(q).items()}
    {'transformer.layers.0.self_attn.in_proj_weight': (6, 2)}
    """
    out = {}
    for name, value in state.items():
        fused = re.match(
            rf"^{re.escape(_DEC)}layers\.(\d+)\.(self_attn|encoder_attn)\.q_proj\.weight$", name
        )
        if fused:
            i, kind = fused.groups()
            parts = [state[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            ac = "self_attn" if kind == "self_attn" else "cross_attention"
            out[f"transformer.layers.{i}.{ac}.in_proj_weight"] = torch.cat(parts, 0).contiguous()
            continue
        new = to_audiocraft_name(name)
        if new is not None:
            out[new] = value.detach().cpu().contiguous()
    return out


def state_to_transformers(best_state: dict, file: str | Path) -> dict:
    """``best_state`` under transformers' names; :data:`IGNORED` entries are dropped.

    Unknown names, and entries that are not tensors, raise a ValueError naming ``file``.

    Examples
    --------
    >>> import torch
    >>> sorted(state_to_transformers({"out_norm.bias": torch.zeros(2),
    ...     "condition_provider.conditioners.self_wav.chroma.spec.window": torch.ones(4)}, "f"))
    ['decoder.model.decoder.layer_norm.bias']
    """
    out, unknown = {}, []
    for name, value in best_state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{file}: best_state[{name!r}] is a {type(value).__name__}, not a tensor"
            )
        if name.startswith(IGNORED):
            continue
        fused = re.match(
            r"^transformer\.layers\.(\d+)\.(self_attn|cross_attention)\.in_proj_weight$", name
        )
        if fused:
            i, kind = fused.groups()
            hf = "self_attn" if kind == "self_attn" else "encoder_attn"
            for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                out[f"{_DEC}layers.{i}.{hf}.{part}_proj.weight"] = chunk.contiguous()
            continue
        new = to_transformers_name(name)
        if new is None:
            unknown.append(name)
        else:
            out[new] = value
    if unknown:
        raise ValueError(
            f"{file}: best_state holds weights that are not MusicGen's ({len(unknown)}, first "
            f"{unknown[:3]}); musicgen-nb reads the keys transformers' conversion script maps"
        )
    return out
