"""``audio_write``: audiocraft's way to save a clip, without ffmpeg or torchaudio.

Examples
--------
>>> import tempfile, os, torch
>>> with tempfile.TemporaryDirectory() as tmp:
...     audio_write(os.path.join(tmp, "clip"), torch.zeros(1, 800) + 0.1, 8000).name
'clip.wav'
"""

from __future__ import annotations

import io
import math
import numbers
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._util.files import write_atomic
from ..audio.loudness import loudness

if TYPE_CHECKING:
    from typing import Any

__all__ = ["FORMATS", "STRATEGIES", "audio_write", "normalize_audio"]

#: format -> (soundfile format, subtype, suffix)
FORMATS = {
    "wav": ("WAV", "PCM_16", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "ogg": ("OGG", "VORBIS", ".ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}
STRATEGIES = ("peak", "clip", "rms", "loudness", "none", "")


def _to_numpy(wav: Any) -> np.ndarray:
    import torch

    if isinstance(wav, torch.Tensor):
        if not wav.dtype.is_floating_point:
            raise TypeError(f"wav must hold floating-point samples, got {wav.dtype}")
        wav = wav.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(wav)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"wav must hold floating-point samples, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(
            f"wav must be [C, T] or [T] (one clip; loop over a batch), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("wav holds NaN or inf samples")
    return arr


def normalize_audio(
    wav: np.ndarray, *, normalize: bool = True, strategy: str = "peak",
    peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18,
    loudness_headroom_db: float = 14, loudness_compressor: bool = False,
    sample_rate: int | None = None, log_clipping: bool = False, stem_name: str = "",
) -> np.ndarray:  # fmt: skip
    """Normalize ``[C, T]`` audio with audiocraft's strategies.

    ``peak`` scales the largest sample to ``-peak_clip_headroom_db`` dB (with
    ``normalize=False`` only when it would clip); ``clip`` clips there; ``rms``
    scales the mono mix's RMS to ``-rms_headroom_db`` dB, then clips; ``loudness``
    applies the full gain to ``-loudness_headroom_db`` LUFS (ITU-R BS.1770, our
    meter; audio below an RMS of 2e-3 is left as it is), then a tanh soft clip if
    ``loudness_compressor``, then clips to [-1, 1], as audiocraft does: a loud
    target can clip, the peak is not protected.

    Examples
    --------
    >>> x = np.full((1, 100), 0.25, np.float32)
    >>> round(float(normalize_audio(x, strategy="peak").max()), 3)
    0.891
    """
    peak = 10 ** (-peak_clip_headroom_db / 20)
    if strategy == "peak":
        top = float(np.abs(wav).max())
        scale = peak / top if top > 0 else 1.0
        return wav * scale if (normalize or scale < 1) else wav
    if strategy == "clip":
        return np.clip(wav, -peak, peak)
    if strategy == "rms":
        rms = float(np.sqrt(np.mean(wav.mean(axis=0) ** 2)))
        scale = 10 ** (-rms_headroom_db / 20) / rms if rms > 0 else 1.0
        wav = wav * scale if (normalize or scale < 1) else wav
    elif strategy == "loudness":
        level = loudness(wav, sample_rate)  # -inf when too short or silent to measure
        if float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) >= 2e-3 and math.isfinite(level):
            wav = (wav * 10 ** ((-float(loudness_headroom_db) - level) / 20)).astype(np.float32)
        if loudness_compressor:
            wav = np.tanh(wav)
    elif strategy in ("none", ""):
        return wav
    else:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if log_clipping and np.abs(wav).max() > 1:
        print(f"audio_write: {stem_name} clipped", file=sys.stderr)
    return np.clip(wav, -1.0, 1.0)


def audio_write(
    stem_name: str | os.PathLike,
    wav: Any,
    sample_rate: int,
    format: str = "wav",  # noqa: A002 - audiocraft's name
    mp3_rate: int = 320,
    ogg_rate: int | None = None,
    normalize: bool = True,
    strategy: str = "peak",
    peak_clip_headroom_db: float = 1,
    rms_headroom_db: float = 18,
    loudness_headroom_db: float = 14,
    loudness_compressor: bool = False,
    log_clipping: bool = True,
    make_parent_dir: bool = True,
    add_suffix: bool = True,
) -> Path:
    """Normalize and save one clip ``[C, T]`` (or ``[T]``); return the path with its suffix.

    Parameters follow audiocraft's ``audio_write``. Formats: ``wav`` and ``flac``
    (16-bit PCM), ``ogg`` (Vorbis) and ``mp3``, written by libsndfile
    (``mp3_rate``/``ogg_rate`` are accepted; libsndfile picks the bitrate).
    The file is written atomically and, as in audiocraft, replaces an existing
    file of that name.

    Examples
    --------
    >>> import tempfile, os
    >>> x = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)[None].astype(np.float32)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     audio_write(os.path.join(tmp, "a"), x, 8000, format="flac", strategy="loudness").suffix
    '.flac'
    """
    import soundfile as sf

    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, numbers.Integral)
        or sample_rate <= 0
    ):
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    sample_rate = int(sample_rate)
    for name, value in [("peak_clip_headroom_db", peak_clip_headroom_db), ("rms_headroom_db",
                        rms_headroom_db), ("loudness_headroom_db", loudness_headroom_db)]:  # fmt: skip
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise TypeError(f"{name} must be a finite number of dB, got {value!r}")
    arr = _to_numpy(wav)
    arr = normalize_audio(
        arr, normalize=normalize, strategy=strategy, peak_clip_headroom_db=peak_clip_headroom_db,
        rms_headroom_db=rms_headroom_db, loudness_headroom_db=loudness_headroom_db,
        loudness_compressor=loudness_compressor, sample_rate=sample_rate,
        log_clipping=log_clipping, stem_name=str(stem_name),
    )  # fmt: skip
    sf_format, subtype, suffix = FORMATS[format]
    path = Path(os.fspath(stem_name) + (suffix if add_suffix else ""))
    if make_parent_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sf.write(buf, np.clip(arr, -1, 1).T, sample_rate, format=sf_format, subtype=subtype)
    return write_atomic(path, buf.getvalue(), overwrite=True)
