"""The fine-tune folder format that ``mg.load(..., adapter=DIR)`` reads.

:func:`musicgen_nb.finetune.train` writes a folder with these files;
:func:`apply_adapter` merges it into a loaded model's plain fp32 weights (so
every precision, int8 included, runs it), and :func:`adapter_provenance` is what
every saved clip's sidecar records about it. Living here, below both
:mod:`musicgen_nb.models` and :mod:`musicgen_nb.finetune`, the format is shared
without either importing the other.

Examples
--------
>>> CONFIG_FILE, weights_file(16), weights_file(None)
('training_config.json', 'adapter_model.safetensors', 'decoder.safetensors')
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .._util.files import sha256_file

if TYPE_CHECKING:
    from typing import Any

#: The run's settings and state (JSON): base, decoder config, data, status, ...
CONFIG_FILE = "training_config.json"
#: The model card written next to the weights.
CARD_FILE = "README.md"
#: Loss and accuracy per logged step (CSV).
HISTORY_FILE = "history.csv"
#: Weights of a full fine-tune: the whole decoder.
FULL_WEIGHTS = "decoder.safetensors"
#: Weights of a LoRA fine-tune (peft's file name).
LORA_WEIGHTS = "adapter_model.safetensors"
#: Sub-folder of the resumable training checkpoint.
CHECKPOINT = "checkpoint"
#: The decoder facts an adapter must agree with to be merged.
DECODER_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "num_codebooks",
    "vocab_size", "audio_channels", "max_position_embeddings",
)  # fmt: skip


def weights_file(lora_rank) -> str:
    """The weights file name of a fine-tune: LoRA (``lora_rank`` set) or full (None).

    Examples
    --------
    >>> weights_file(8)
    'adapter_model.safetensors'
    """
    return FULL_WEIGHTS if lora_rank is None else LORA_WEIGHTS


def decoder_config(model) -> dict:
    """The :data:`DECODER_KEYS` facts of a transformers MusicGen ``model``'s decoder.

    Examples
    --------
    >>> from musicgen_nb.checkpoints.offline import build_random
    >>> from musicgen_nb.checkpoints.specs import tiny_spec
    >>> decoder_config(build_random(tiny_spec()))["num_codebooks"]
    4
    """
    cfg = model.config.decoder.to_dict()
    return {k: cfg.get(k) for k in DECODER_KEYS}


#: What a ``training_config.json`` must hold to be read.
_NEEDED = ("lora_rank", "checkpoint", "data", "decoder_config", "status")


def read_config(directory: str | os.PathLike) -> dict:
    """The ``training_config.json`` of a fine-tune folder; a damaged one raises naming the file.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / CONFIG_FILE).write_text("{oops")
    >>> read_config(d)
    Traceback (most recent call last):
    ...
    ValueError: adapter folder ...: training_config.json is damaged (not JSON: ...); ...
    """
    directory = Path(directory)
    fix = "train it again, or restore the folder from a copy"
    try:
        cfg = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"adapter folder {str(directory)!r}: {CONFIG_FILE} is damaged (not JSON: {err}); {fix}"
        ) from None
    missing = [k for k in _NEEDED if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ValueError(
            f"adapter folder {str(directory)!r}: {CONFIG_FILE} is damaged (no "
            f"{', '.join(missing)}); {fix}"
        )
    return cfg


def adapter_provenance(directory: str | os.PathLike) -> dict:
    """What sidecars record about an adapter folder: path, hash, kind, base, steps.

    Examples
    --------
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> cfg = dict(lora_rank=4, checkpoint="tiny", data="abc", steps_done=2, decoder_config={},
    ...            status="done")
    >>> _ = (d / CONFIG_FILE).write_text(json.dumps(cfg))
    >>> p = adapter_provenance(d)
    >>> p["kind"], p["base"], p["steps"], p["sha256"]
    ('lora', 'tiny', 2, None)
    """
    directory = Path(directory)
    cfg = read_config(directory)
    weights = directory / weights_file(cfg["lora_rank"])
    return dict(
        path=str(directory.resolve()), sha256=sha256_file(weights) if weights.exists() else None,
        kind="full" if cfg["lora_rank"] is None else "lora", lora_rank=cfg["lora_rank"],
        base=cfg["checkpoint"], steps=cfg.get("steps_done"), final_loss=cfg.get("final_loss"),
        data=cfg["data"],
    )  # fmt: skip


def _read_finished(adapter) -> tuple[Path, dict, Path]:
    """(folder, its config, its weights file) of a finished fine-tune, else the error."""
    if not isinstance(adapter, (str, os.PathLike)):
        raise TypeError(f"adapter must be a folder written by mg.finetune.train, got {adapter!r}")
    directory = Path(adapter)
    if not (directory / CONFIG_FILE).exists():
        raise ValueError(
            f"adapter={str(adapter)!r} is not a fine-tune folder (no {CONFIG_FILE}); "
            "give the out= folder of mg.finetune.train"
        )
    cfg = read_config(directory)
    weights = directory / weights_file(cfg["lora_rank"])
    if cfg["status"] == "diverged":
        raise ValueError(
            f"adapter={str(adapter)!r} holds a run that diverged at step {cfg.get('diverged_at')} "
            "(its loss became NaN or infinite); it is not an adapter. Resume it with a lower lr"
        )
    if cfg["status"] != "done" or not weights.exists():
        raise ValueError(
            f"adapter={str(adapter)!r} holds an unfinished run (no {weights.name}); resume it "
            "with mg.finetune.train(..., out=...) first"
        )
    return directory, cfg, weights


def _check_base(model, adapter, cfg: dict, meta: dict) -> None:
    """Refuse a model other than the one the adapter was trained on, naming both.

    The architecture and the decoder config decide: the same checkpoint loaded by
    its name ("small") or from a folder (an HF snapshot path) is the same model. The
    checkpoint's name is compared only for a folder that does not record the
    architecture (written before it did).
    """
    mine = meta.get("checkpoint", meta.get("name"))
    arch = cfg.get("architecture")
    if (arch is None and mine is not None and cfg["checkpoint"] != mine) or (
        arch is not None and arch != type(model).__name__
    ):
        raise ValueError(
            f"adapter={str(adapter)!r} was trained on {cfg['checkpoint']!r}"
            f"{f' ({arch})' if arch else ''}; this model is {mine!r} ({type(model).__name__}). "
            f"Load it with mg.load({cfg['checkpoint']!r}, adapter=...)"
        )
    if decoder_config(model) != cfg["decoder_config"]:
        raise ValueError(
            f"adapter={str(adapter)!r} was trained on {cfg['checkpoint']!r}, whose decoder "
            f"differs from this model's ({decoder_config(model)} vs {cfg['decoder_config']})"
        )


def _load_full(model, directory: Path, weights: Path) -> None:
    """Load a full fine-tune's decoder weights; a damaged or foreign file is named."""
    from safetensors.torch import load_file

    try:
        sd = load_file(weights)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(
            f"adapter folder {str(directory)!r}: {weights.name} is damaged ({str(err)[:120]})"
        ) from None
    want = model.decoder.state_dict()
    wrong = sorted(set(sd) ^ set(want)) or sorted(k for k in sd if sd[k].shape != want[k].shape)
    if wrong:
        raise ValueError(
            f"adapter folder {str(directory)!r}: {weights.name} holds the weights of another "
            f"decoder architecture (first mismatch: {wrong[0]!r}); it does not fit this model"
        )
    model.decoder.load_state_dict(sd)


def _load_lora(model, directory: Path) -> None:
    """Merge a LoRA adapter into ``model.decoder``; a damaged adapter file is named."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = PeftModel.from_pretrained(model.decoder, directory)
    except Exception as err:  # noqa: BLE001 - peft, json and safetensors errors alike
        raise ValueError(
            f"adapter folder {str(directory)!r}: {LORA_WEIGHTS} or adapter_config.json is "
            f"damaged ({type(err).__name__}: {str(err)[:160]})"
        ) from None
    model.decoder = wrapped.merge_and_unload()


def apply_adapter(model: Any, adapter: str | os.PathLike, meta: dict) -> tuple[object, dict]:
    """Merge a fine-tune from ``adapter`` into ``model`` (fp32, in place); return (model, meta).

    Called by ``mg.load(..., adapter=DIR)`` before any cast or int8 quantization,
    so the engine sees plain ``nn.Linear`` weights at every precision. ``meta``
    gains ``"adapter"``: the provenance that every sidecar records.

    Refused with a ValueError naming the folder and the file: a damaged
    ``training_config.json`` or weights file, an unfinished or diverged run, and a
    model other than the one it was trained on (another checkpoint, even with the
    same decoder shape, e.g. ``tiny`` into ``tiny-melody``; or another architecture).

    Examples
    --------
    >>> apply_adapter(None, 3, {})
    Traceback (most recent call last):
    ...
    TypeError: adapter must be a folder written by mg.finetune.train, got 3
    """
    directory, cfg, weights = _read_finished(adapter)
    _check_base(model, adapter, cfg, meta)
    if cfg["lora_rank"] is None:
        _load_full(model, directory, weights)
    else:
        _load_lora(model, directory)
    model.decoder.eval()
    return model, dict(meta, adapter=adapter_provenance(directory))
