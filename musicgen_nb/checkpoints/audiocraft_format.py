"""audiocraft's checkpoint layout: read it into transformers' MusicGen, and write it back.

audiocraft exports a model as a folder with ``state_dict.bin`` (a dict holding
``xp.cfg``, the training config, and ``best_state``, the language model's weights
under audiocraft's names) and ``compression_state_dict.bin`` (the EnCodec
model); community fine-tunes trained with audiocraft ship that way. The names
map as transformers' conversion script documents
(:mod:`musicgen_nb.checkpoints.audiocraft_names`).

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
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     is_layout(folder)
False
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._util.files import write_atomic
from . import audiocraft_names, encodec_names
from .audiocraft_names import to_audiocraft_name, to_transformers_name
from .specs import build_config, known, model_class

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "COMPRESSION",
    "STATE",
    "STOCK_CODEC",
    "is_layout",
    "read",
    "to_audiocraft_name",
    "to_transformers_name",
    "write",
]

STATE = "state_dict.bin"
COMPRESSION = "compression_state_dict.bin"
_PROJ = audiocraft_names.PROJ
#: What ``export_pretrained_compression_model`` stores for the stock codec of MusicGen.
STOCK_CODEC = "facebook/encodec_32khz"


def is_layout(folder: str | Path) -> bool:
    """Whether ``folder`` holds audiocraft's layout (``state_dict.bin``, and no ``config.json``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     is_layout(folder)
    False
    """
    folder = Path(folder)
    return (folder / STATE).is_file() and not (folder / "config.json").exists()


def _load(file: Path) -> dict:
    """``torch.load(weights_only=True)`` of one file, or a ValueError that names it.

    ``state_dict.bin`` must hold a ``best_state`` dict; ``compression_state_dict.bin``
    either a ``best_state`` dict or, as ``export_pretrained_compression_model`` writes
    it for a stock codec, ``pretrained``: the codec's hub name.
    """
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
    if not isinstance(pkg, dict):
        raise ValueError(f"{file} is not an audiocraft export: it holds a {type(pkg).__name__}")
    pretrained = file.name == COMPRESSION and isinstance(pkg.get("pretrained"), str)
    if not pretrained and not isinstance(pkg.get("best_state"), dict):
        also = " or a 'pretrained' codec name" if file.name == COMPRESSION else ""
        raise ValueError(f"{file} is not an audiocraft export: it has no 'best_state' dict{also}")
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
    if not isinstance(state.get("emb.0.weight"), torch.Tensor):
        raise ValueError(
            f"{file}: best_state has no 'emb.0.weight' (the first codebook's embedding), so it "
            "is not a MusicGen language model"
        )
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
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     read(folder)
    Traceback (most recent call last):
    ...
    ValueError: ...state_dict.bin is missing (or a symlink): audiocraft's layout needs state_dict.bin
    """
    folder = Path(folder)
    pkg = _load(folder / STATE)
    comp = _load(folder / COMPRESSION)
    _cfg(pkg, folder / STATE)
    decoder = audiocraft_names.state_to_transformers(pkg["best_state"], folder / STATE)
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
    """``xp.cfg`` (YAML; written as JSON, which YAML reads): the base model's keys we know.

    audiocraft's builders read ``lm_model``, ``transformer_lm``, ``codebooks_pattern``,
    ``conditioners``, ``fuser``, ``classifier_free_guidance`` and ``attribute_dropout``.
    """
    dec, melody = model.config.decoder, model.config.model_type == "musicgen_melody"
    k = int(dec.num_codebooks)
    conditioners = {"description": {"model": "t5", "t5": {"name": "t5-base", "finetune": False,
                    "word_dropout": 0.0, "normalize_text": False}}}  # fmt: skip
    if melody:
        conditioners["self_wav"] = {"model": "chroma_stem", "chroma_stem": {
            "sample_rate": int(model.config.audio_encoder.sampling_rate),
            "n_chroma": int(model.config.num_chroma), "radix2_exp": 14, "argmax": True,
            "match_len_on_eval": True, "eval_wavs": None, "n_eval_wavs": 100,
            "cache_path": None}}  # fmt: skip
    cfg = {
        "lm_model": "transformer_lm", "solver": "musicgen", "dtype": "float32",
        "sample_rate": int(model.config.audio_encoder.sampling_rate),
        "channels": int(dec.audio_channels),
        "compression_model_checkpoint": f"//pretrained/{STOCK_CODEC}",
        "dataset": {"segment_duration": float(max_duration)},
        "transformer_lm": {
            "dim": dec.hidden_size, "num_heads": dec.num_attention_heads,
            "num_layers": dec.num_hidden_layers, "card": dec.vocab_size, "n_q": k,
            "hidden_scale": dec.ffn_dim // dec.hidden_size, "norm": "layer_norm",
            "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
            "positional_embedding": "sin", "activation": "gelu", "causal": True,
            "cross_attention": not melody,
        },
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": list(range(k)),
                              "flatten_first": 0, "empty_initial": 0}},
        "conditioners": conditioners,
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                  "sum": [], "input_interpolate": [],
                  "prepend": ["description", "self_wav"] if melody else [],
                  "cross": [] if melody else ["description"]},
        "classifier_free_guidance": {"training_dropout": 0.1, "inference_coef": 3.0},
        "attribute_dropout": {},
        "exported_by": "musicgen-nb",
    }  # fmt: skip
    return json.dumps(cfg, indent=1)


def _stock_codec(model) -> bool:
    """Whether the model's EnCodec is the stock 32 kHz codec (or a stand-in for it)."""
    if getattr(model.config, "musicgen_nb_standin", None):
        return True
    stock = known()["small"]["config"]["audio_encoder"]
    ours = model.config.audio_encoder.to_dict()
    return all(ours.get(key) == value for key, value in stock.items())


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
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     out = write(build_random(tiny_spec()), offline_processor(), folder, max_duration=4)
    ...     sorted(p.name for p in out.iterdir())
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
    best = audiocraft_names.state_to_audiocraft(state)
    lm = {"xp.cfg": cfg, "best_state": best, "exported": True, "musicgen_nb": ours}
    write_atomic(folder / STATE, _bytes(lm))
    if _stock_codec(model):  # as audiocraft's export_pretrained_compression_model writes it
        comp = {"pretrained": STOCK_CODEC, "exported": True}
    else:  # audiocraft's names (its export_encodec layout)
        comp = {"xp.cfg": cfg, "best_state": encodec_names.state_to_audiocraft(model.audio_encoder),
                "exported": True}  # fmt: skip
    comp["musicgen_nb"] = {"audio_encoder": audio}
    write_atomic(folder / COMPRESSION, _bytes(comp))
    return folder
