"""The ``MusicGen`` session object, ``load()`` and ``list_models()``.

Everything about finding and reading a checkpoint lives in
:mod:`musicgen_nb.checkpoints`; this module puts a loaded model behind one
facade: ``s.generate``, ``s.stream``, ``s.encode``, ``s.decode`` and the facts
(``s.sample_rate``, ``s.num_codebooks``, ...).

Examples
--------
>>> s = load("tiny")
>>> s.name, s.precision
('tiny', 'fp32')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .catalog import list_models
from .checkpoints import standins
from .checkpoints.loading import (
    DEVICES,
    DTYPES,
    PRECISIONS,
    ModelUnavailableError,
    from_pretrained,
    quiet_transformers,
    read_meta,
    resolve_device,
    resolve_source,
)
from .checkpoints.offline import build_random, offline_processor
from .checkpoints.specs import OFFLINE, TINY_INIT_SCALE
from .engine.precision import (
    KEEP_FP32,
    bridge,
    fp32_parts,
    keep_fp32_names,
    place,
    resolve_precision,
)
from .engine.static import check_environment as _check_environment
from .engine.static import check_step as _check_step

if TYPE_CHECKING:
    import os
    from typing import Any

    import numpy as np
    from numpy.typing import ArrayLike

    from .generation import Generation
    from .streaming import Stream

__all__ = [
    "DEVICES", "PRECISIONS", "ModelUnavailableError", "MusicGen", "list_models", "load",
    "resolve_device", "resolve_precision",
]  # fmt: skip


def load(
    name_or_path: str | os.PathLike = "facebook/musicgen-small",
    *,
    device: str = "auto",
    precision: str = "auto",
    random_weights: bool = False,
    allow_pickle: bool = False,
    adapter: str | os.PathLike | None = None,
    keep_fp32: tuple[str, ...] = KEEP_FP32,
    step: str = "auto",
) -> MusicGen:
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
        ``"auto"`` is fp32 on CPU, bf16 on GPUs that run it natively and fp16 on the
        others (a T4), see :func:`musicgen_nb.engine.precision.auto_dtype`. ``"int8"`` quantizes the
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
    keep_fp32 : tuple of {"text_encoder", "audio_encoder"}
        With fp16/bf16, the parts that stay fp32 (both by default, as audiocraft
        keeps T5 and EnCodec); ``()`` casts the whole model. Weights are read
        straight into their dtype on the device.
    step : {"auto", "static", "dynamic"}
        The decode step, kept as ``s.step``: ``"dynamic"`` is the earlier engine, ``"static"``
        fixes a window's shapes (CUDA graphs; "auto" on CUDA), see :mod:`musicgen_nb.engine.static`.

    Returns
    -------
    MusicGen

    Notes
    -----
    With ``MUSICGEN_NB_STANDIN=1`` (or ``pytest --musicgen-standin``) a real
    checkpoint loads its offline stand-in of the same kind (``standin``, ``standin-melody``,
    ``standin-stereo``, ``standin-stereo-melody``); ``s.name`` keeps the requested
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
    _check_step(step)
    _check_environment()  # a bad MUSICGEN_NB_KERNELS / _ADAPTIVE_THREADS, before any loading
    name_or_path, standin = standins.resolve(name_or_path, random_weights=random_weights)
    keep = keep_fp32_names(keep_fp32)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    with quiet_transformers():
        s = _load(
            name_or_path, dev, prec, random_weights=random_weights, allow_pickle=allow_pickle,
            adapter=adapter, keep=keep,
        )  # fmt: skip
    if prec in ("fp16", "bf16"):  # what stayed fp32 changes the tokens: the sidecars say it
        s.provenance["keep_fp32"] = list(keep)
    s.step = step
    return standins.mark(s, standin)


def _build(spec: dict) -> tuple[object, object, dict]:
    """(model, processor, meta) of a ``random_weights`` build of ``spec``."""
    scale = TINY_INIT_SCALE if spec["meta"]["name"] in OFFLINE else None
    model = build_random(spec, init_scale=scale)
    return model, offline_processor(), dict(spec["meta"], random_weights=True)


def _quantized(model, dev, prec, keep):
    """``model`` cast to ``prec`` on ``dev``; int8/int4 keep fp32 and quantize the decoder linears."""
    if prec in DTYPES:
        return place(model, dev, DTYPES[prec], keep)
    from .engine.quantize import quantize_int4, quantize_int8

    quantize = quantize_int8 if prec == "int8" else quantize_int4
    return quantize(model.to(dev, dtype=torch.float32))


def _load(name_or_path, dev, prec, *, random_weights, allow_pickle, adapter=None, keep=KEEP_FP32):
    source, spec = resolve_source(name_or_path, random_weights=random_weights)
    # Floating precisions load in their dtype on the device (no fp32 copy on the host);
    # an adapter merges into fp32 weights, int8/int4 quantize fp32 ones.
    direct = prec in DTYPES and adapter is None
    if source == "random":
        model, processor, meta = _build(spec)
    else:
        model, processor = from_pretrained(
            source, allow_pickle=allow_pickle, dtype=DTYPES[prec] if direct else torch.float32,
            device=dev if direct else None, keep_fp32=fp32_parts(keep) if direct else (),
        )  # fmt: skip
        meta = read_meta(source, name_or_path)
    model = model.eval()
    if adapter is not None:  # merged into plain fp32 weights before any cast or int8
        from .checkpoints.adapter import apply_adapter

        model, meta = apply_adapter(model, adapter, meta)
    if source != "random" and direct:  # a direct load is in place already
        model = bridge(model)
    else:
        model = _quantized(model, dev, prec, keep)
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
    >>> s.device, s.dtype, s.is_standin, s.random_weights
    (device(type='cpu'), torch.float32, False, True)
    """

    #: The offline checkpoint loaded in place of ``name`` (stand-ins on), else None.
    standin: str | None = None
    #: The decode step (``load(step=...)``): "auto", "static" or "dynamic".
    step: str = "auto"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str,
        precision: str = "fp32",
        meta: dict | None = None,
    ) -> None:
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
            or self.meta.get("checkpoint") in OFFLINE
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

    def generate(self, prompts: str | list[str | None] | None = None, **kwargs: Any) -> Generation:
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

    def stream(
        self, prompts: str | list[str | None] | None = None, *, chunk: float = 1.0, **kwargs: Any
    ) -> Stream:
        """Generate and yield the audio in chunks while it is made.

        See :class:`musicgen_nb.streaming.Stream`. Takes :meth:`generate`'s options.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> st = mg.load("tiny").stream("jazz", duration=1.0, seed=3, chunk=0.5)
        >>> [c.final for c in st], st.generation.audio.shape
        ([False, True], (1, 1, 32000))
        """
        from .streaming import Stream

        return Stream(self, prompts, chunk=chunk, **kwargs)

    def encode(self, audio: ArrayLike, sr: int) -> np.ndarray:
        """Encode audio to EnCodec codes ``[batch, num_codebooks, frames]``.

        See :func:`musicgen_nb.tokens.encode`.

        Examples
        --------
        >>> import numpy as np, musicgen_nb as mg
        >>> mg.load("tiny").encode(np.zeros(32000, np.float32), 32000).shape
        (1, 4, 50)
        """
        from .tokens import encode

        return encode(self, audio, sr)

    def decode(self, codes: ArrayLike, *, num_codebooks: int | None = None) -> np.ndarray:
        """Decode codes ``[batch, K, frames]`` to audio ``[batch, channels, samples]``.

        See :func:`musicgen_nb.tokens.decode`.

        Examples
        --------
        >>> import numpy as np, musicgen_nb as mg
        >>> mg.load("tiny").decode(np.zeros((1, 4, 50), np.int64)).shape
        (1, 1, 32000)
        """
        from .tokens import decode

        return decode(self, codes, num_codebooks=num_codebooks)
