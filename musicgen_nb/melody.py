"""Chroma features as MusicGen-Melody computes them, and a chroma similarity metric.

MusicGen-Melody conditions on a one-hot chromagram: 32 kHz mono audio, an STFT with
``n_fft=16384`` and hop 4096 (7.8125 frames/s), a 12-bin chroma filter bank, and the
argmax pitch class of every frame.

Examples
--------
>>> from musicgen_nb import audio, melody
>>> x = audio.melody_tone(["C4", "E4", "G4"], 1.0, 32000)
>>> c = melody.chroma(x, 32000)
>>> c.shape
(24, 12)
>>> melody.similarity(c, c)
1.0
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._util.checks import check_sr
from .audio.arrays import as_batch, to_numpy
from .audio.resample import resample

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "PITCH_CLASSES",
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "FRAME_RATE",
    "chroma",
    "pitch_classes",
    "similarity",
]

#: Pitch-class names, chroma bin 0 is C.
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: MusicGen's chroma settings.
SAMPLE_RATE = 32000
N_FFT = 16384
HOP_LENGTH = 4096
#: Chroma frames per second.
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH


@functools.lru_cache(maxsize=1)
def _filter_bank() -> torch.Tensor:
    import librosa

    bank = librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=N_FFT, n_chroma=12, tuning=0.0)
    return torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))  # [12, n_fft//2+1]


def chroma(
    audio: ArrayLike, sr: int, *, frames: int | None = None, name: str = "audio"
) -> np.ndarray:
    """One-hot chroma per frame, with MusicGen-Melody's settings.

    Steps: average channels to mono, scale each item to a peak of 1 (the one-hot chroma
    does not depend on the level, and this keeps a very loud or very quiet signal from
    overflowing or underflowing the power spectrum), resample to 32 kHz, zero-pad
    (centred) to ``n_fft`` samples when shorter, power STFT (Hann window of 16384, hop
    4096, ``center=True`` with reflect padding, so ``1 + N // 4096`` frames; power
    divided by the window energy), librosa's chroma filter bank (``tuning=0``),
    max-normalization per frame, then the argmax pitch class set to 1 and the rest to 0.

    Parameters
    ----------
    audio : array_like
        ``[N]``, ``[C, N]`` or ``[B, C, N]`` (see :func:`musicgen_nb.audio.as_batch`).
    sr : int
        Sample rate of ``audio``.
    frames : int, optional, keyword-only
        Compute only the first ``frames`` chroma frames: only the audio they need is
        resampled and transformed, so the cost does not grow with the input's length.
        None computes every frame.
    name : str, keyword-only
        The argument name used in error messages.

    Returns
    -------
    np.ndarray
        float32 ``[frames, 12]`` for 1-D/2-D input, ``[B, frames, 12]`` for 3-D input.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import audio
    >>> c = chroma(audio.melody_tone(["A4"], 2.0, 44100), 44100)
    >>> c.shape, PITCH_CLASSES[int(c[4].argmax())]
    ((16, 12), 'A')
    >>> chroma(audio.melody_tone(["A4"], 2.0, 44100), 44100, frames=3).shape
    (3, 12)
    """
    raw = to_numpy(audio, name)
    sr_name = "sr" if name == "audio" else f"{name}_sr"
    sr = check_sr(sr, sr_name)
    if frames is not None:
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise ValueError(f"frames must be None or an int >= 1, got {frames!r}")
        frames = int(frames)
    mono = _mono_at_32k(as_batch(raw, name=name), sr, frames, sr_name)
    out = _one_hot_chroma(mono, frames)
    return out if raw.ndim == 3 else out[0]


def _mono_at_32k(batch: np.ndarray, sr: int, frames: int | None, sr_name: str) -> np.ndarray:
    """``[B, C, N]`` at ``sr`` -> mono ``[B, M]`` at 32 kHz, peak 1, only what ``frames`` read."""
    mono = batch.mean(axis=1, dtype=np.float64)  # [B, N]
    if frames is not None:
        # Frame t (centred) reads samples up to t * hop + n_fft / 2 at 32 kHz. Keep what the
        # first `frames` frames read, plus 0.1 s so the resampler's edge lies beyond them.
        keep = max(N_FFT, (frames - 1) * HOP_LENGTH + N_FFT // 2)
        src = int(np.ceil(keep * sr / SAMPLE_RATE)) + int(np.ceil(0.1 * sr)) + 1
        mono = mono[:, :src]
    peak = np.abs(mono).max(axis=-1, keepdims=True)
    mono = (mono / np.where(peak > 0, peak, 1.0)).astype(np.float32)
    mono = resample(mono, sr, SAMPLE_RATE, name=sr_name)
    return mono if frames is None else mono[:, :keep]


def _one_hot_chroma(mono: np.ndarray, frames: int | None) -> np.ndarray:
    """Mono ``[B, M]`` at 32 kHz -> one-hot chroma float32 ``[B, frames, 12]``."""
    wav = torch.from_numpy(np.ascontiguousarray(mono))
    n = wav.shape[-1]
    if n < N_FFT:
        pad = N_FFT - n
        wav = torch.nn.functional.pad(wav, (pad // 2, pad - pad // 2))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(
        wav, N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window,
        center=True, pad_mode="reflect", return_complex=True,
    )  # fmt: skip
    if frames is not None:
        spec = spec[..., :frames]
    power = spec.abs().pow(2) / window.pow(2).sum()  # [B, F, frames]
    raw_chroma = torch.einsum("cf,bft->btc", _filter_bank(), power)
    norm = torch.nn.functional.normalize(raw_chroma, p=float("inf"), dim=-1, eps=1e-6)
    return torch.nn.functional.one_hot(norm.argmax(-1), 12).to(torch.float32).numpy()


def _as_chroma(x, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric chroma array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf; a chroma holds finite values")
    if arr.ndim not in (2, 3) or arr.shape[-1] != 12 or arr.shape[-2] == 0:
        raise ValueError(
            f"{name} must be chroma [frames, 12] or [batch, frames, 12] with frames >= 1, "
            f"got shape {arr.shape}"
        )
    return arr.astype(np.float64)


def pitch_classes(chroma: ArrayLike) -> list:
    """Name of the strongest pitch class in each frame.

    Parameters
    ----------
    chroma : array_like
        ``[frames, 12]`` or ``[batch, frames, 12]``.

    Returns
    -------
    list of str
        One name per frame (a list of such lists for batched input).

    Examples
    --------
    >>> import numpy as np
    >>> pitch_classes(np.eye(12)[[0, 4, 7]])
    ['C', 'E', 'G']
    """
    arr = _as_chroma(chroma, "chroma")
    idx = arr.argmax(-1)
    if idx.ndim == 1:
        return [PITCH_CLASSES[i] for i in idx]
    return [[PITCH_CLASSES[i] for i in row] for row in idx]


def similarity(a: ArrayLike, b: ArrayLike) -> float | np.ndarray:
    """Chroma cosine similarity: frame-wise cosine, averaged over frames.

    The longer sequence is trimmed to the shorter one. All-zero frames count as 0.

    Parameters
    ----------
    a, b : array_like
        Chroma ``[frames, 12]`` or ``[batch, frames, 12]``; a 2-D one is compared with every
        item of a 3-D one.

    Returns
    -------
    float or np.ndarray
        A float in [-1, 1] (in [0, 1] for non-negative chroma); a float64 ``[batch]`` array
        when either input is batched.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.eye(12)[[0, 4, 7, 0]]
    >>> similarity(x, x)
    1.0
    >>> similarity(x, np.eye(12)[[0, 4, 9, 2]])
    0.5
    """
    x, y = _as_chroma(a, "a"), _as_chroma(b, "b")
    frames = min(x.shape[-2], y.shape[-2])
    x, y = x[..., :frames, :], y[..., :frames, :]
    if x.ndim == 3 and y.ndim == 3 and x.shape[0] != y.shape[0]:
        raise ValueError(
            f"a and b must have the same batch size, got {x.shape[0]} and {y.shape[0]}"
        )
    dot = (x * y).sum(-1)
    norms = np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
    cos = np.where(norms > 0, dot / np.maximum(norms, 1e-12), 0.0)
    score = cos.mean(-1)
    return float(score) if score.ndim == 0 else score
