"""Checkpoint registry, ``load()`` and the ``MusicGen`` session object."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch

from . import checkpoints, testing

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")
DEVICES = ("auto", "cpu", "cuda", "mps")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelUnavailableError(RuntimeError):
    """Raised when a hub checkpoint is neither cached nor reachable."""


def _known_names() -> str:
    names = ", ".join(repr(n) for n in checkpoints.known())
    offline = ", ".join(repr(n) for n in checkpoints.OFFLINE)
    return f"known names: {names}; offline presets: {offline}; or a local directory"


@cache
def _param_counts(name: str) -> tuple[int, int]:
    """(total, decoder) parameter counts of a known architecture, built on the meta device."""
    spec = checkpoints.known()[name]
    with quiet_transformers(), torch.device("meta"):
        config = checkpoints.build_config(spec["config"])
        model = checkpoints.model_class(spec["config"]["model_type"])(config)
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.decoder.parameters())


def list_models():
    """List the MusicGen checkpoints this toolkit knows.

    Returns
    -------
    pandas.DataFrame
        One row per checkpoint: ``name``, ``checkpoint`` (hub id), ``params`` and
        ``decoder_params`` (counted from the stored architecture), ``melody``,
        ``stereo``, ``sample_rate``, ``frame_rate``, ``num_codebooks``,
        ``max_duration`` and the weight memory ``fp32_gb``/``fp16_gb``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> df = mg.list_models()
    >>> df.set_index("name").loc["small", "checkpoint"]
    'facebook/musicgen-small'
    """
    import pandas as pd

    rows = []
    for name, spec in checkpoints.known().items():
        cfg, meta = spec["config"], spec["meta"]
        total, decoder = _param_counts(name)
        codec = cfg["audio_encoder"]
        hop = 1
        for r in codec["upsampling_ratios"]:
            hop *= r
        rows.append(
            dict(
                name=name,
                checkpoint=meta["checkpoint"],
                params=total,
                decoder_params=decoder,
                melody=meta["melody"],
                stereo=meta["stereo"],
                sample_rate=codec["sampling_rate"],
                frame_rate=codec["sampling_rate"] // hop,
                num_codebooks=cfg["decoder"]["num_codebooks"],
                max_duration=meta["max_duration"],
                fp32_gb=round(total * 4 / 1e9, 2),
                fp16_gb=round(total * 2 / 1e9, 2),
            )
        )
    df = pd.DataFrame(rows)
    from .memory import MEASURED

    if MEASURED:
        df = df.merge(pd.DataFrame(MEASURED), on="name", how="left")
    return df


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick a torch device: ``"auto"`` tries cuda, then mps, then cpu."""
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
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but CUDA is not available here")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(
                f"device={device!r}: there are {torch.cuda.device_count()} CUDA devices, "
                f"so use 'cuda' or 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'"
            )
    if device.startswith("mps"):
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            why = "this torch was built without MPS" if mps is None or not mps.is_built() else (
                "MPS needs an Apple-silicon Mac with macOS 12.3 or later"
            )  # fmt: skip
            raise ValueError(
                f"device={device!r} was asked for, but MPS is not available here ({why})"
            )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a valid device: {err}") from None


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into fp32 on CPU, bf16 (or fp16) on CUDA, fp16 on MPS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        if precision in ("int8", "int4") and device.type != "cpu":
            raise ValueError(
                f"precision={precision!r} is weight-only {precision} for the CPU; on {device.type} use "
                "'fp16' or 'bf16'"
            )
        if precision == "int4":
            from .quantize import int4_unavailable, kernel_available

            if not kernel_available():  # refused before any weights load
                raise ValueError(int4_unavailable())
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "fp32"


def _resolve_source(name_or_path, *, random_weights: bool) -> tuple[str, dict | None]:
    """Return (what to pass to from_pretrained or 'random', a spec for random builds)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"name_or_path must be a string or path, got {type(name_or_path).__name__}; "
            + _known_names()
        )
    name = os.fspath(name_or_path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not name.strip():
        raise ValueError(
            "name_or_path is an empty string; give a model name or a folder. " + _known_names()
        )
    known = checkpoints.known()
    by_hub = {spec["meta"]["checkpoint"]: short for short, spec in known.items()}
    short = name if name in known else by_hub.get(name)
    if random_weights:
        if name in checkpoints.OFFLINE:
            return "random", checkpoints.offline_spec(name)
        if short is None:
            raise ValueError(
                f"random_weights=True needs a known architecture, got {name!r}; " + _known_names()
            )
        return "random", known[short]
    if name in checkpoints.OFFLINE:
        return os.fspath(checkpoints.offline_checkpoint(name)), None
    if Path(name).is_dir():
        return name, None
    if short is not None:
        return known[short]["meta"]["checkpoint"], None
    if "/" in name and not Path(name).exists() and not name.startswith((".", "/")):
        return name, None  # another hub id, e.g. a fine-tune
    raise ValueError(f"unknown model {name!r}; " + _known_names())


def _check_local(folder: Path, *, allow_pickle: bool) -> None:
    """Say what is wrong with a local checkpoint folder before transformers reads it."""
    config = folder / "config.json"
    if not config.is_file():
        inside = sorted(p.name for p in folder.iterdir())[:5]
        raise ValueError(
            f"{folder} is not a checkpoint folder: it has no config.json "
            f"(it holds {inside or 'nothing'}); save one with model.save_pretrained(folder)"
        )
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


def _from_pretrained(source: str, *, allow_pickle: bool):
    """Load model and processor through transformers' ``from_pretrained``."""
    from transformers import AutoConfig

    local = Path(source).is_dir()
    if local:
        _check_local(Path(source), allow_pickle=allow_pickle)
    kwargs = dict(use_safetensors=None if allow_pickle else True, trust_remote_code=False)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except OSError as err:
        if local:
            raise ValueError(f"could not read the config of {source}: {err}") from None
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
            raise ModelUnavailableError(
                f"{source!r} is not available offline: it is not in the local cache and the "
                "Hugging Face hub is not reachable. To test a notebook offline, turn on stand-ins "
                "(pytest --musicgen-standin, or MUSICGEN_NB_STANDIN=1); " + _known_names()
            ) from None
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
        kwargs["local_files_only"] = False
    else:
        kwargs["local_files_only"] = True
    cls = checkpoints.model_class(config.model_type)
    try:
        model = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        if not local:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load the weights in {source}: {first}") from err
    return model, _processor(source, local_files_only=kwargs["local_files_only"])


def _processor(source: str, *, local_files_only: bool):
    """A ``MusicgenProcessor`` (tokenizer + EnCodec feature extractor).

    For melody checkpoints we keep only the tokenizer of their processor: the
    transformers chroma extractor needs torchaudio, so :mod:`musicgen_nb.melody`
    computes the chroma instead.
    """
    from transformers import AutoTokenizer, EncodecFeatureExtractor, MusicgenProcessor

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
        tokenizer=tokenizer,
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers within ``timeout`` seconds."""
    import urllib.request

    try:
        urllib.request.urlopen(
            "https://huggingface.co/api/models/facebook/musicgen-small", timeout=timeout
        )
    except Exception:
        return False
    return True


@contextmanager
def quiet_transformers():
    """Hide transformers' per-load progress bars and config chatter (e.g. the
    pad token id 2048 that every MusicGen checkpoint uses on purpose)."""
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


def load(
    name_or_path="facebook/musicgen-small",
    *,
    device="auto",
    precision="auto",
    random_weights=False,
    allow_pickle=False,
    adapter=None,
):
    """Load a MusicGen checkpoint.

    Parameters
    ----------
    name_or_path : str or path
        A short name (``"small"``, ``"medium"``, ``"large"``, ``"melody"``, the
        ``stereo-*`` variants), a hub id (``"facebook/musicgen-small"``), an
        offline preset (``"tiny"``, ``"tiny-melody"``) or a local directory.
    device : {"auto", "cpu", "cuda", "mps"}
        ``"auto"`` picks cuda, then mps, then cpu.
    precision : {"auto", "fp32", "fp16", "bf16", "int8", "int4"}
        ``"auto"`` is fp16/bf16 on GPU and fp32 on CPU. ``"int8"`` quantizes the
        decoder's linear layers to weight-only int8 (CPU). ``"int4"`` gives the
        transformer layers 4-bit weights instead (lm_heads int8): faster, with
        about ten times int8's error (CPU, needs the C++ kernels).
    random_weights : bool
        Build the architecture with seeded random weights instead of loading
        (for benchmarks and memory checks; full size).
    allow_pickle : bool
        Allow ``.bin`` pickle weights. Off by default: pickles can run code.
    adapter : path, optional
        A fine-tune folder written by :func:`musicgen_nb.finetune.train`. It is merged
        into the weights before any cast or quantization, and every sidecar records it.

    Returns
    -------
    MusicGen

    Notes
    -----
    With ``MUSICGEN_NB_STANDIN=1`` (or ``pytest --musicgen-standin``) a real
    checkpoint loads its offline stand-in instead (``tiny``, ``tiny-melody``,
    ``tiny-stereo``, ``tiny-stereo-melody``); ``s.name`` keeps the requested
    name and ``s.is_standin`` is True. See :mod:`musicgen_nb.testing`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> s.sample_rate, s.frame_rate, s.num_codebooks
    (32000, 50, 4)
    """
    if not isinstance(random_weights, bool):
        raise TypeError(f"random_weights must be True or False, got {random_weights!r}")
    if not isinstance(allow_pickle, bool):
        raise TypeError(f"allow_pickle must be True or False, got {allow_pickle!r}")
    name_or_path, standin = testing.resolve(name_or_path, random_weights=random_weights)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    with quiet_transformers():
        s = _load(
            name_or_path, dev, prec, random_weights=random_weights, allow_pickle=allow_pickle,
            adapter=adapter,
        )  # fmt: skip
    return testing.mark(s, standin)


def _load(name_or_path, dev, prec, *, random_weights, allow_pickle, adapter=None):
    source, spec = _resolve_source(name_or_path, random_weights=random_weights)
    if source == "random":
        from transformers import EncodecFeatureExtractor, MusicgenProcessor

        from ._tokenizer import build_tokenizer

        scale = checkpoints.TINY_INIT_SCALE if spec["meta"]["name"] in checkpoints.OFFLINE else None
        model = checkpoints.build_random(spec, init_scale=scale)
        processor = MusicgenProcessor(
            feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
            tokenizer=build_tokenizer(),
        )
        meta = dict(spec["meta"], random_weights=True)
    else:
        model, processor = _from_pretrained(source, allow_pickle=allow_pickle)
        meta_file = Path(source) / "musicgen_nb.json"
        try:
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        except ValueError as err:
            raise ValueError(f"{meta_file} is not valid JSON ({err})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_file} must hold a JSON object, got {type(meta).__name__}")
        meta = meta or {"checkpoint": source}
        meta.setdefault("name", os.fspath(name_or_path))
    model = model.eval()
    if adapter is not None:  # merged into plain fp32 weights before any cast or int8
        from .finetune import apply_adapter

        model, meta = apply_adapter(model, adapter, meta)
    if prec in _DTYPES:
        model = model.to(device=dev, dtype=_DTYPES[prec])
    else:  # int8/int4: fp32 model, decoder linears quantized
        from .quantize import quantize_int4, quantize_int8

        quantize = quantize_int8 if prec == "int8" else quantize_int4
        model = quantize(model.to(dev, dtype=torch.float32))
    return MusicGen(
        model, processor, name=meta.get("name", str(name_or_path)), precision=prec, meta=meta
    )


class MusicGen:
    """A loaded MusicGen: model, processor and the facts you need about them.

    Use :func:`load` to make one. ``model`` and ``processor`` are the transformers
    objects underneath, for power users. ``standin`` names the offline checkpoint
    loaded in place of ``name`` when stand-ins are on (:mod:`musicgen_nb.testing`).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> g = s.generate("lo-fi beat", duration=1.0, seed=0, progress=False)
    >>> g.codes.shape
    (1, 4, 50)
    """

    #: The offline checkpoint loaded in place of ``name`` (stand-ins on), else None.
    standin: str | None = None

    def __init__(
        self, model, processor, *, name: str, precision: str = "fp32", meta: dict | None = None
    ):
        self.model = model
        self.processor = processor
        self.name = name
        self.precision = precision
        self.meta = dict(meta or {})
        # What every clip's sidecar records about the model: its precision and device (int8,
        # int4 and GPUs sample other tokens than fp32 on a CPU), and any adapter.
        self.provenance = {"precision": precision, "device": next(model.parameters()).device.type}
        if "adapter" in self.meta:
            self.provenance["adapter"] = self.meta["adapter"]
        codec = model.config.audio_encoder
        self.sample_rate = int(codec.sampling_rate)
        self.frame_rate = int(codec.frame_rate)
        self.hop_length = self.sample_rate // self.frame_rate
        self.num_codebooks = int(model.config.decoder.num_codebooks)
        self.audio_channels = int(model.config.decoder.audio_channels)
        self.codebook_size = int(codec.codebook_size)
        self.special_id = int(model.config.decoder.pad_token_id)
        self.is_melody = model.config.model_type == "musicgen_melody"
        frames = int(model.generation_config.max_length or 1500)
        max_positions = int(model.config.decoder.max_position_embeddings)
        frames = min(frames, max_positions - self.num_codebooks)
        self.max_frames = frames
        self.max_duration = frames / self.frame_rate

    @property
    def is_standin(self) -> bool:
        """True when an offline stand-in was loaded in place of ``name``: its audio is noise."""
        return self.standin is not None

    @property
    def random_weights(self) -> bool:
        """True when the weights are random: ``tiny``, ``tiny-melody`` or ``random_weights=True``.

        Results that need a trained model (musical audio, meaningful attention)
        cannot show on such a model; :func:`musicgen_nb.teaching.callout` uses this.
        """
        return (
            self.is_standin
            or bool(self.meta.get("random_weights"))
            or self.meta.get("checkpoint") in checkpoints.OFFLINE
        )

    @property
    def device(self) -> torch.device:
        """The device the decoder runs on."""
        return next(self.model.decoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the decoder's activations."""
        return next(p for p in self.model.decoder.parameters() if p.is_floating_point()).dtype

    def __repr__(self) -> str:
        kind = "melody" if self.is_melody else "text"
        if self.is_standin:
            kind += f", stand-in {self.standin!r} (random weights)"
        return (
            f"MusicGen({self.name!r}, {kind}, device={self.device.type}, precision={self.precision}, "
            f"{self.sample_rate} Hz, {self.num_codebooks} codebooks, max {self.max_duration:g} s)"
        )

    def generate(self, prompts=None, **kwargs):
        """Generate music; see :func:`musicgen_nb.generation.generate` for every option.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> g = mg.load("tiny").generate(["jazz", None], duration=1.0, seed=3, progress=False)
        >>> g.audio.shape
        (2, 1, 32000)
        """
        from .generation import generate

        return generate(self, prompts, **kwargs)

    def stream(self, prompts=None, *, chunk=1.0, **kwargs):
        """Generate and yield the audio in chunks while it is made; see
        :class:`musicgen_nb.streaming.Stream`. Takes :meth:`generate`'s options.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=3, chunk=0.5)
        >>> [c.final for c in st], st.generation.audio.shape
        ([False, True], (1, 1, 32000))
        """
        from .streaming import Stream

        return Stream(self, prompts, chunk=chunk, **kwargs)

    def encode(self, audio, sr):
        """Encode audio to EnCodec codes ``[batch, num_codebooks, frames]``.

        See :func:`musicgen_nb.tokens.encode`.
        """
        from .tokens import encode

        return encode(self, audio, sr)

    def decode(self, codes, *, num_codebooks=None):
        """Decode codes ``[batch, K, frames]`` to audio ``[batch, channels, samples]``.

        See :func:`musicgen_nb.tokens.decode`.
        """
        from .tokens import decode

        return decode(self, codes, num_codebooks=num_codebooks)
