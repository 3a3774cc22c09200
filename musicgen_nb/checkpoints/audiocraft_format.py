"""audiocraft's checkpoint layout: read it into transformers' MusicGen, and write it back.

audiocraft exports a model as a folder with ``state_dict.bin`` (a dict holding
``xp.cfg``, the training config, and ``best_state``, the language model's weights
under audiocraft's names) and ``compression_state_dict.bin`` (the EnCodec
model); community fine-tunes trained with audiocraft ship that way. The names
map as transformers' conversion script (``convert_musicgen_transformers.py``)
documents:

==========================================================  ==============================================
audiocraft (``best_state``)                                 transformers (``MusicgenForConditionalGeneration``)
==========================================================  ==============================================
``emb.K``                                                   ``decoder.model.decoder.embed_tokens.K``
``transformer.layers.I.self_attn.in_proj_weight`` (fused)   ``...layers.I.self_attn.{q,k,v}_proj.weight``
``transformer.layers.I.cross_attention.in_proj_weight``     ``...layers.I.encoder_attn.{q,k,v}_proj.weight``
``...self_attn.out_proj`` / ``...cross_attention.out_proj``  ``...self_attn.out_proj`` / ``...encoder_attn.out_proj``
``linear1``, ``linear2``                                    ``fc1``, ``fc2``
``norm1``, ``norm_cross``, ``norm2``                        ``self_attn_layer_norm``, ``encoder_attn_layer_norm``, ``final_layer_norm``
``out_norm``                                                ``decoder.model.decoder.layer_norm``
``linears.K``                                               ``decoder.lm_heads.K``
``condition_provider.conditioners.description.output_proj``  ``enc_to_dec_proj``
``condition_provider.conditioners.self_wav.output_proj``     ``audio_enc_to_dec_proj`` (melody)
==========================================================  ==============================================

Files are read with ``torch.load(weights_only=True)`` only: tensors, numbers,
strings, lists and dicts. ``xp.cfg`` as audiocraft's export writes it (YAML
text) is read; a pickled omegaconf ``DictConfig`` (as in raw training
checkpoints) is refused with a clear error, since unpickling it could run code.

audiocraft keeps T5 out of its checkpoints (it loads ``t5-base`` from the hub), so
:func:`write` adds a ``musicgen_nb`` entry to both files (config, text encoder,
tokenizer files, EnCodec under transformers' names) that audiocraft ignores and
:func:`read` uses. Without it (a real audiocraft export), the text encoder, EnCodec
and tokenizer come from the known checkpoint whose decoder has the same shape.

Examples
--------
>>> to_audiocraft_name("decoder.model.decoder.layers.3.fc1.weight")
'transformer.layers.3.linear1.weight'
>>> to_transformers_name("condition_provider.conditioners.description.output_proj.bias")
'enc_to_dec_proj.bias'
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._util.files import write_atomic
from . import encodec_names
from .specs import build_config, known, model_class

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "COMPRESSION",
    "STATE",
    "is_layout",
    "read",
    "to_audiocraft_name",
    "to_transformers_name",
    "write",
]

STATE = "state_dict.bin"
COMPRESSION = "compression_state_dict.bin"
_DEC = "decoder.model.decoder."
_PROJ = "condition_provider.conditioners."
#: (audiocraft, transformers) name patterns; ``{}`` is a layer or codebook index.
_NAMES = [
    ("emb.{}.weight", _DEC + "embed_tokens.{}.weight"),
    ("linears.{}.weight", "decoder.lm_heads.{}.weight"),
    ("out_norm.weight", _DEC + "layer_norm.weight"),
    ("out_norm.bias", _DEC + "layer_norm.bias"),
    (_PROJ + "description.output_proj.weight", "enc_to_dec_proj.weight"),
    (_PROJ + "description.output_proj.bias", "enc_to_dec_proj.bias"),
    (_PROJ + "self_wav.output_proj.weight", "audio_enc_to_dec_proj.weight"),
    (_PROJ + "self_wav.output_proj.bias", "audio_enc_to_dec_proj.bias"),
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
_FUSED = [
    ("self_attn.in_proj_weight", "self_attn"),
    ("cross_attention.in_proj_weight", "encoder_attn"),
]


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


def _to_audiocraft(state: dict) -> dict:
    """The decoder and projection weights of a composite state dict, under audiocraft's names."""
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


def _to_transformers(best_state: dict, file: Path) -> dict:
    """``best_state`` under transformers' names; unknown names raise, naming the file."""
    out, unknown = {}, []
    for name, value in best_state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{file}: best_state[{name!r}] is a {type(value).__name__}, not a tensor"
            )
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


def is_layout(folder: str | Path) -> bool:
    """Whether ``folder`` holds audiocraft's layout (``state_dict.bin``, and no ``config.json``).

    Examples
    --------
    >>> import tempfile
    >>> is_layout(tempfile.mkdtemp())
    False
    """
    folder = Path(folder)
    return (folder / STATE).is_file() and not (folder / "config.json").exists()


def _load(file: Path) -> dict:
    """``torch.load(weights_only=True)`` of one file, or a ValueError that names it."""
    if file.is_symlink() or not file.is_file():
        raise ValueError(f"{file} is missing (or a symlink): audiocraft's layout needs {file.name}")
    try:
        pkg = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = " (xp.cfg as a pickled omegaconf DictConfig?)" if "omegaconf" in str(err) else ""
        raise ValueError(
            f"{file} cannot be read with torch.load(weights_only=True){hint}: {first}. Only "
            "tensors, numbers, strings, lists and dicts are read (unpickling anything else "
            "could run code); re-export it with audiocraft's export, which stores xp.cfg as YAML"
        ) from None
    if not isinstance(pkg, dict) or not isinstance(pkg.get("best_state"), dict):
        raise ValueError(f"{file} is not an audiocraft export: it has no 'best_state' dict")
    return pkg


def _cfg(pkg: dict, file: Path) -> dict:
    """``xp.cfg`` as a dict: YAML (or JSON) text, or a plain dict."""
    cfg = pkg.get("xp.cfg", {})
    if isinstance(cfg, str):
        try:
            import yaml

            cfg = yaml.safe_load(cfg)
        except ImportError:
            try:
                cfg = json.loads(cfg)
            except ValueError:
                cfg = {}  # YAML without pyyaml: the shapes of best_state say enough
        except Exception as err:
            raise ValueError(f"{file}: xp.cfg is not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{file}: xp.cfg must be YAML text or a dict, got {type(cfg).__name__}")
    return cfg


def _base_for(state: dict, file: Path) -> str:
    """The known checkpoint whose decoder has ``state``'s shape (for a real audiocraft export)."""
    hidden = state["emb.0.weight"].shape[1]
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.layers.")})
    codebooks = len({k for k in state if k.startswith("emb.")})
    melody = any(k.startswith(_PROJ + "self_wav.") for k in state)
    for spec in known().values():
        dec = spec["config"]["decoder"]
        if (dec["hidden_size"], dec["num_hidden_layers"], dec["num_codebooks"]) == (
            hidden, layers, codebooks,
        ) and (spec["config"]["model_type"] == "musicgen_melody") == melody:  # fmt: skip
            return spec["meta"]["checkpoint"]
    raise ValueError(
        f"{file}: no known MusicGen has this decoder (width {hidden}, {layers} layers, "
        f"{codebooks} codebooks, melody={melody}), so its text encoder and EnCodec are unknown"
    )


def read(folder: str | Path) -> tuple[Any, Any]:
    """Load an audiocraft-layout folder as ``(transformers model, MusicgenProcessor)``.

    Examples
    --------
    >>> import tempfile
    >>> read(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: ...state_dict.bin is missing (or a symlink): audiocraft's layout needs state_dict.bin
    """
    folder = Path(folder)
    pkg = _load(folder / STATE)
    comp = _load(folder / COMPRESSION)
    _cfg(pkg, folder / STATE)
    decoder = _to_transformers(pkg["best_state"], folder / STATE)
    ours, ours_c = pkg.get("musicgen_nb"), comp.get("musicgen_nb")
    if isinstance(ours, dict) and isinstance(ours_c, dict):
        return _read_ours(folder, ours, ours_c, decoder)
    from .loading import from_pretrained

    base = _base_for(pkg["best_state"], folder / STATE)
    model, proc = from_pretrained(base, allow_pickle=False)
    _load_weights(model, decoder, folder / STATE)
    return model, proc


def _load_weights(model, state: dict, file: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("text_encoder.", "audio_encoder."))]
    missing = [k for k in missing if "embed_positions" not in k]
    if missing or unexpected:
        raise ValueError(
            f"{file}: the weights do not fit the model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def _read_ours(folder: Path, ours: dict, ours_c: dict, decoder: dict):
    import tempfile

    from .loading import processor

    spec = json.loads(ours["config"])
    model = model_class(spec["config"]["model_type"])(build_config(spec["config"])).eval()
    state = dict(decoder)
    state.update({f"text_encoder.{k}": v for k, v in ours["text_encoder"].items()})
    state.update({f"audio_encoder.{k}": v for k, v in ours_c["audio_encoder"].items()})
    _load_weights(model, state, folder / STATE)
    for key, value in spec.get("generation", {}).items():
        setattr(model.generation_config, key, value)
    if spec.get("standin"):
        model.config.musicgen_nb_standin = spec["standin"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in ours["tokenizer"].items():
            (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
        proc = processor(tmp, local_files_only=True)
    return model, proc


def _spec_of(model) -> dict:
    """The composite config of ``model`` in the stored-spec format of :mod:`.specs`."""
    config = model.config.to_dict()
    keep = {k: config[k] for k in ("num_chroma", "chroma_length") if k in config}
    spec = {"model_type": config["model_type"], **keep}
    for part in ("text_encoder", "audio_encoder", "decoder"):
        spec[part] = {k: v for k, v in config[part].items() if not k.startswith("_")}
    gen = model.generation_config
    generation = {
        k: getattr(gen, k) for k in ("max_length", "do_sample", "guidance_scale", "top_k")
    }
    return {"config": spec, "generation": generation,
            "standin": getattr(model.config, "musicgen_nb_standin", None)}  # fmt: skip


def _xp_cfg(model, max_duration: float) -> str:
    """A minimal ``xp.cfg`` (YAML; written as JSON, which YAML reads) with the model's facts."""
    dec = model.config.decoder
    cfg = {
        "sample_rate": int(model.config.audio_encoder.sampling_rate),
        "channels": int(dec.audio_channels),
        "dataset": {"segment_duration": float(max_duration)},
        "transformer_lm": {
            "dim": dec.hidden_size,
            "num_heads": dec.num_attention_heads,
            "num_layers": dec.num_hidden_layers,
            "card": dec.vocab_size,
            "n_q": dec.num_codebooks,
            "hidden_scale": dec.ffn_dim // dec.hidden_size,
        },  # fmt: skip
        "conditioners": {"description": {"model": "t5"}},
        "exported_by": "musicgen-nb",
    }
    if model.config.model_type == "musicgen_melody":
        cfg["conditioners"]["self_wav"] = {"model": "chroma_stem"}
    return json.dumps(cfg, indent=1)


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write(model, proc, folder: str | Path, *, max_duration: float) -> Path:
    """Write ``model`` (fp32 copies of its weights) and ``proc`` in audiocraft's layout.

    Each file is written atomically; an existing ``state_dict.bin`` or
    ``compression_state_dict.bin`` in ``folder`` raises FileExistsError before any write.

    Examples
    --------
    >>> import tempfile
    >>> from musicgen_nb.checkpoints.offline import build_random, offline_processor
    >>> from musicgen_nb.checkpoints.specs import tiny_spec
    >>> out = write(build_random(tiny_spec()), offline_processor(), tempfile.mkdtemp(), max_duration=4)
    >>> sorted(p.name for p in out.iterdir())
    ['compression_state_dict.bin', 'state_dict.bin']
    """
    import tempfile

    folder = Path(folder)
    for name in (STATE, COMPRESSION):
        if (folder / name).exists():
            raise FileExistsError(f"{folder / name} exists; export into an empty folder")
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        proc.tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir()
                 if p.suffix in (".json", ".txt")}  # fmt: skip
    cfg = _xp_cfg(model, max_duration)
    spec = _spec_of(model)
    ours = {"config": json.dumps(spec), "tokenizer": files,
            "text_encoder": {k[len("text_encoder."):]: v for k, v in state.items()
                             if k.startswith("text_encoder.")}}  # fmt: skip
    audio = {
        k[len("audio_encoder.") :]: v for k, v in state.items() if k.startswith("audio_encoder.")
    }
    folder.mkdir(parents=True, exist_ok=True)
    lm = {"xp.cfg": cfg, "best_state": _to_audiocraft(state), "exported": True, "musicgen_nb": ours}
    write_atomic(folder / STATE, _bytes(lm))
    codec = encodec_names.state_to_audiocraft(model.audio_encoder)  # audiocraft's names
    comp = {"xp.cfg": cfg, "best_state": codec, "exported": True}
    comp["musicgen_nb"] = {"audio_encoder": audio}
    write_atomic(folder / COMPRESSION, _bytes(comp))
    return folder
