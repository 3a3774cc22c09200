"""Loading a checkpoint: names to sources, devices, local checks, ``from_pretrained``.

:func:`resolve_source` turns what the user typed (a short name, a hub id, an
offline preset, a local folder) into what ``from_pretrained`` reads.
:func:`check_local` says what is wrong with a local folder before transformers
does, and :func:`from_pretrained` loads the model and its processor, refusing
pickle weights unless asked and never running remote code.

Examples
--------
>>> resolve_source("small", random_weights=False)
('facebook/musicgen-small', None)
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch

from .._util.hub import cached_or_reachable, hub_reachable  # noqa: F401  (hub_reachable: re-exported)
from . import audiocraft_format
from .keep_fp32 import kept_fp32
from .offline import offline_checkpoint
from .specs import OFFLINE, build_config, known, model_class, offline_spec, short_name

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")
DEVICES = ("auto", "cpu", "cuda", "mps")
#: The floating precisions and their torch dtypes (int8/int4 keep fp32 around the quantized linears).
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelUnavailableError(RuntimeError):
    """Raised when a hub checkpoint is neither cached nor reachable.

    Examples
    --------
    >>> issubclass(ModelUnavailableError, RuntimeError)
    True
    """


def known_names() -> str:
    """What a model name may be, for error messages.

    Examples
    --------
    >>> known_names()
    "known names: 'small', ..., 'stereo-melody-large'; offline presets: 'tiny', ...; or a local directory"
    """
    names = ", ".join(repr(n) for n in known())
    offline = ", ".join(repr(n) for n in OFFLINE)
    return f"known names: {names}; offline presets: {offline}; or a local directory"


@contextmanager
def quiet_transformers():
    """Hide transformers' per-load progress bars and config chatter.

    For example, the pad token id 2048 that every MusicGen checkpoint uses on purpose.

    Examples
    --------
    >>> with quiet_transformers():
    ...     model_class("musicgen").__name__
    'MusicgenForConditionalGeneration'
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@cache
def param_counts(name: str) -> tuple[int, int]:
    """(total, decoder) parameter counts of a known architecture, built on the meta device.

    Examples
    --------
    >>> total, decoder = param_counts("small")
    >>> 410e6 < decoder < 430e6 < total
    True
    """
    spec = known()[name]
    with quiet_transformers(), torch.device("meta"):
        config = build_config(spec["config"])
        model = model_class(spec["config"]["model_type"])(config)
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.decoder.parameters())


def _check_cuda(device: str) -> None:
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here")
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise ValueError(
            f"device={device!r}: there are {torch.cuda.device_count()} CUDA devices, "
            f"so use 'cuda' or 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'"
        )


def _check_mps(device: str) -> None:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        why = "this torch was built without MPS" if mps is None or not mps.is_built() else (
            "MPS needs an Apple-silicon Mac with macOS 12.3 or later"
        )  # fmt: skip
        raise ValueError(f"device={device!r} was asked for, but MPS is not available here ({why})")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick a torch device: ``"auto"`` tries cuda, then mps, then cpu.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")
    if device.startswith("cuda"):
        _check_cuda(device)
    if device.startswith("mps"):
        _check_mps(device)
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a valid device: {err}") from None


def _name_of(name_or_path) -> str:
    """``name_or_path`` as a non-empty str, or the TypeError/ValueError that says why not."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"name_or_path must be a string or path, got {type(name_or_path).__name__}; "
            + known_names()
        )
    name = os.fspath(name_or_path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not name.strip():
        raise ValueError(
            "name_or_path is an empty string; give a model name or a folder. " + known_names()
        )
    return name


def resolve_source(name_or_path, *, random_weights: bool) -> tuple[str, dict | None]:
    """Return (what to pass to from_pretrained or ``"random"``, a spec for random builds).

    Examples
    --------
    >>> resolve_source("facebook/musicgen-melody", random_weights=True)[1]["meta"]["name"]
    'melody'
    >>> resolve_source("musicgen-huge", random_weights=False)
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'musicgen-huge'; known names: 'small', ...
    """
    name = _name_of(name_or_path)
    short = short_name(name)
    if random_weights:
        if name in OFFLINE:
            return "random", offline_spec(name)
        if short is None:
            raise ValueError(
                f"random_weights=True needs a known architecture, got {name!r}; " + known_names()
            )
        return "random", known()[short]
    if name in OFFLINE:
        return os.fspath(offline_checkpoint(name)), None
    if Path(name).is_dir():
        return name, None
    if short is not None:
        return known()[short]["meta"]["checkpoint"], None
    if "/" in name and not Path(name).exists() and not name.startswith((".", "/")):
        return name, None  # another hub id, e.g. a fine-tune
    raise ValueError(f"unknown model {name!r}; " + known_names())


def _read_config(config: Path) -> dict:
    """The JSON object of a local ``config.json`` of a MusicGen model, else a ValueError."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{config} is not valid JSON ({err}); the checkpoint config is corrupt"
        ) from None
    if not isinstance(data, dict) or data.get("model_type") not in ("musicgen", "musicgen_melody"):
        kind = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{config} has model_type {kind!r}; musicgen-nb loads 'musicgen' and "
            "'musicgen_melody' checkpoints"
        )
    return data


def check_local(folder: Path, *, allow_pickle: bool) -> None:
    """Say what is wrong with a local checkpoint folder before transformers reads it.

    Examples
    --------
    >>> check_local(offline_checkpoint("tiny"), allow_pickle=False)
    >>> import tempfile
    >>> check_local(Path(tempfile.mkdtemp()), allow_pickle=False)
    Traceback (most recent call last):
    ...
    ValueError: ... is not a checkpoint folder: it has no config.json (it holds nothing); ...
    """
    config = folder / "config.json"
    if not config.is_file():
        inside = sorted(p.name for p in folder.iterdir())[:5]
        raise ValueError(
            f"{folder} is not a checkpoint folder: it has no config.json "
            f"(it holds {inside or 'nothing'}); save one with model.save_pretrained(folder)"
        )
    _read_config(config)
    safe = sorted(folder.glob("*.safetensors"))
    pickles = sorted(folder.glob("*.bin"))
    if not safe and not pickles:
        raise ValueError(f"{folder} holds no weights: no *.safetensors or *.bin file")
    if not safe and not allow_pickle:
        raise ValueError(
            f"{folder} holds no safetensors weights; pickle weights (.bin) can run code when "
            "loaded, so they are refused. Pass allow_pickle=True if you trust this checkpoint."
        )
    from safetensors import safe_open

    for file in safe:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:
            raise ValueError(
                f"{file} is not a readable safetensors file (truncated or corrupt): {err}"
            ) from None


def _hub_config(source: str):
    """The config of hub id ``source``: from the cache, else from the hub if it answers."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            source, local_files_only=True, trust_remote_code=False
        ), True
    except OSError:
        if not cached_or_reachable(source):
            raise ModelUnavailableError(
                f"{source!r} is not available offline: it is not in the local cache and the "
                "Hugging Face hub is not reachable. To test a notebook offline, turn on stand-ins "
                "(pytest --musicgen-standin, or MUSICGEN_NB_STANDIN=1); " + known_names()
            ) from None
    return AutoConfig.from_pretrained(source, trust_remote_code=False), False


def from_pretrained(
    source: str,
    *,
    allow_pickle: bool,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
    keep_fp32: tuple = (),
):
    """Load model and processor through transformers' ``from_pretrained``.

    The weights are read straight into ``dtype`` on ``device`` by transformers'
    own loader (``dtype=``, ``device_map=`` when accelerate is installed, else read in
    ``dtype`` on the host then moved), never as a full fp32 copy that is cast afterwards; the top-level parts named in
    ``keep_fp32`` (``"text_encoder"``, ``"audio_encoder"``) are read in fp32.

    Returns
    -------
    (transformers.PreTrainedModel, transformers.MusicgenProcessor)

    Examples
    --------
    >>> model, processor = from_pretrained(str(offline_checkpoint("tiny")), allow_pickle=False)
    >>> type(model).__name__
    'MusicgenForConditionalGeneration'
    """
    from transformers import AutoConfig

    local = Path(source).is_dir()
    kwargs = dict(use_safetensors=None if allow_pickle else True, trust_remote_code=False)
    if local and audiocraft_format.is_layout(source):  # read with torch.load(weights_only=True)
        return audiocraft_format.read(source)
    if local:
        check_local(Path(source), allow_pickle=allow_pickle)
        try:
            config = AutoConfig.from_pretrained(
                source, local_files_only=True, trust_remote_code=False
            )
        except OSError as err:
            raise ValueError(f"could not read the config of {source}: {err}") from None
        kwargs["local_files_only"] = True
    else:
        config, kwargs["local_files_only"] = _hub_config(source)
    cls = model_class(config.model_type)
    kwargs["dtype"] = dtype
    from transformers import utils as hf_utils  # device_map needs accelerate, not a dependency

    if device is not None and hf_utils.is_accelerate_available():
        kwargs["device_map"], device = str(device), None
    try:
        with kept_fp32(cls, keep_fp32 if dtype != torch.float32 else ()):
            model = cls.from_pretrained(source, **kwargs)
        model = model if device is None else model.to(device)  # read in dtype on the host
    except (OSError, ValueError, RuntimeError) as err:
        if not local:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load the weights in {source}: {first}") from err
    return model, processor(source, local_files_only=kwargs["local_files_only"])


def processor(source: str, *, local_files_only: bool):
    """A ``MusicgenProcessor`` (tokenizer + EnCodec feature extractor).

    For melody checkpoints we keep only the tokenizer of their processor: the
    transformers chroma extractor needs torchaudio, so :mod:`musicgen_nb.melody`
    computes the chroma instead.

    Examples
    --------
    >>> p = processor(str(offline_checkpoint("tiny-melody")), local_files_only=True)
    >>> type(p).__name__, p.feature_extractor.sampling_rate
    ('MusicgenProcessor', 32000)
    """
    from transformers import AutoTokenizer, EncodecFeatureExtractor, MusicgenProcessor

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
        tokenizer=tokenizer,
    )


def read_meta(source: str, name_or_path) -> dict:
    """The ``musicgen_nb.json`` facts of a loaded folder (name, checkpoint, seed...).

    Or ``{"checkpoint": source}`` when there is none; ``name`` defaults to ``name_or_path``.

    Examples
    --------
    >>> read_meta(str(offline_checkpoint("tiny")), "tiny")["checkpoint"]
    'tiny'
    >>> read_meta("facebook/musicgen-small", "small")
    {'checkpoint': 'facebook/musicgen-small', 'name': 'small'}
    """
    meta_file = Path(source) / "musicgen_nb.json"
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    except ValueError as err:
        raise ValueError(f"{meta_file} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_file} must hold a JSON object, got {type(meta).__name__}")
    meta = meta or {"checkpoint": source}
    meta.setdefault("name", os.fspath(name_or_path))
    return meta
