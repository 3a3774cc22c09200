"""EnCodec tokens: encode audio to codes, decode codes to audio, token arithmetic and statistics.

MusicGen's tokenizer is a 32 kHz EnCodec with 4 residual codebooks of 2048 entries at
50 frames/s: 4 x 11 bits x 50 = 2.2 kbps. Stereo checkpoints encode left and right
separately and interleave them: codebooks 0, 2, 4, 6 are left, 1, 3, 5, 7 right.

Examples
--------
>>> from musicgen_nb import tokens
>>> tokens.bitrate()
2200.0
>>> tokens.num_frames(10.0)
500
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import audio as audio_io
from ._util.checks import check_positive
from .engine.precision import exact_convolutions

if TYPE_CHECKING:
    from typing import Any

    import pandas as pd
    from numpy.typing import ArrayLike

__all__ = [
    "encode",
    "decode",
    "bits_per_code",
    "bitrate",
    "tokens_per_second",
    "num_frames",
    "compression_ratio",
    "codebook_usage",
]


# ---------------------------------------------------------------------------- codec
def _codec(s):
    codec = s.model.audio_encoder
    param = next(codec.parameters())
    return codec, param.device, param.dtype


def _hop(s) -> int:
    return int(s.sample_rate) // int(s.frame_rate)


def _codebook_size(s) -> int:
    return int(getattr(s, "codebook_size", s.model.audio_encoder.config.codebook_size))


def encoder_bytes_per_sample(config) -> float:
    """Peak memory of EnCodec's encoder per input sample of one item, in bytes (float32).

    Measured (peak RSS above a warmed-up baseline, a fresh process, inference mode,
    2-core CPU, torch 2.13): ``num_filters=4`` (``tiny``) 108-112 B/sample on 1-4 M
    samples in most runs, up to 150 in a few; ``num_filters=64`` (every released
    checkpoint) 1192-1200 B/sample for ``encode`` and about 990 B/sample for the encoder
    alone, on 6-12 s. The first convolution's ``num_filters`` channels at the full rate
    dominate; the bound ``20 * num_filters + 100`` is 180 and 1380 B/sample.
    Re-measure tiny with ``python benchmarks/bench_resample_memory.py --encodec``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> encoder_bytes_per_sample(SimpleNamespace(num_filters=64))
    1380.0
    """
    return 20.0 * int(config.num_filters) + 100.0


def encode(s: Any, audio: ArrayLike, sr: int) -> np.ndarray:
    """Encode audio to EnCodec codes.

    Parameters
    ----------
    s : musicgen_nb.MusicGen
        A loaded model (``mg.load(...)``).
    audio : array_like
        Anything :func:`musicgen_nb.audio.as_batch` takes: ``[N]``, ``[C, N]``, ``[B, C, N]``,
        numpy or torch.
    sr : int
        Sample rate of ``audio``; it is resampled to ``s.sample_rate``.

    Returns
    -------
    np.ndarray
        int64 ``[B, s.num_codebooks, frames]`` with ``frames = ceil(N' / hop)``, where ``N'``
        is the length at ``s.sample_rate`` and ``hop = sample_rate / frame_rate`` (640).
        Channels are matched to the model first (mono is duplicated for stereo models,
        stereo averaged for mono ones).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> encode(s, mg.audio.sine(440, 1.0, 16000), 16000).shape
    (1, 4, 50)
    """
    batch = audio_io.as_batch(audio)
    work = batch.shape[0] * encoder_bytes_per_sample(s.model.audio_encoder.config)
    batch = audio_io.resample(
        batch, sr, s.sample_rate, name="sr", work=("encoding it with EnCodec", work)
    )
    batch = audio_io.match_channels(batch, int(s.audio_channels))
    codec, device, dtype = _codec(s)
    bandwidth = codec.config.target_bandwidths[0]
    with torch.inference_mode():
        x = torch.from_numpy(batch).to(device=device, dtype=dtype)
        per_channel = [
            codec.encode(x[:, c : c + 1], bandwidth=bandwidth).audio_codes[0]  # [B, K, frames]
            for c in range(x.shape[1])
        ]
    # Stereo: interleave codebooks, left at even indices, right at odd ones.
    codes = torch.stack(per_channel, dim=2).flatten(1, 2)
    return codes.to("cpu", torch.int64).numpy()


def _int_codes(codes) -> np.ndarray:
    """Codes (array or tensor) as an integer array, ``[K, T]`` promoted to ``[1, K, T]``."""
    if hasattr(codes, "detach") and hasattr(codes, "cpu"):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"codes must hold integer code ids, got dtype {arr.dtype}")
    return arr[None] if arr.ndim == 2 else arr


def _check_codes(s, codes) -> np.ndarray:
    arr = _int_codes(codes)
    k = int(s.num_codebooks)
    if arr.ndim != 3 or arr.shape[1] != k or arr.shape[2] == 0 or arr.shape[0] == 0:
        raise ValueError(
            f"codes must be [batch, {k}, frames] (or [{k}, frames]) with frames >= 1, "
            f"got shape {np.shape(codes)}"
        )
    size = _codebook_size(s)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= size:
        raise ValueError(
            f"codes must lie in [0, {size}), got values in [{lo}, {hi}]; special/pad tokens "
            f"(like {size}) must be removed first, e.g. with patterns.deinterleave"
        )
    return arr.astype(np.int64, copy=False)


def decode(s: Any, codes: ArrayLike, *, num_codebooks: int | None = None) -> np.ndarray:
    """Decode EnCodec codes to audio.

    Parameters
    ----------
    s : musicgen_nb.MusicGen
    codes : array_like of int
        ``[B, s.num_codebooks, frames]`` (or ``[s.num_codebooks, frames]``, read as a batch
        of one), values in ``[0, codebook_size)``.
    num_codebooks : int, optional, keyword-only
        Decode with only the first ``k`` codebooks per channel (the codebook ablation:
        the residual quantizer sums the embeddings of the codebooks it is given, so fewer
        codebooks means a coarser reconstruction). None uses them all. For stereo models
        ``k`` counts codebooks per channel, from 1 to ``s.num_codebooks // 2``.

    Returns
    -------
    np.ndarray
        float32 ``[B, s.audio_channels, frames * hop]``.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> decode(s, np.zeros((1, 4, 50), dtype=np.int64), num_codebooks=2).shape
    (1, 1, 32000)
    """
    arr = _check_codes(s, codes)
    channels = int(s.audio_channels)
    per_channel = arr.shape[1] // channels
    if num_codebooks is None:
        num_codebooks = per_channel
    if (
        isinstance(num_codebooks, bool)
        or not isinstance(num_codebooks, numbers.Integral)
        or not 1 <= num_codebooks <= per_channel
    ):
        raise ValueError(
            f"num_codebooks must be an integer in 1..{per_channel} (codebooks per channel), "
            f"got {num_codebooks!r}"
        )
    codec, device, dtype = _codec(s)
    outs = []
    with torch.inference_mode(), exact_convolutions():  # no TF32: the same audio on every GPU
        x = torch.from_numpy(arr).to(device)
        for c in range(channels):
            sub = x[:, c::channels][:, :num_codebooks]  # [B, k, frames]
            wav = codec.decode(sub[None], [None]).audio_values  # [B, 1, samples]
            outs.append(wav)
        wav = torch.cat(outs, dim=1)
    samples = arr.shape[-1] * _hop(s)
    return wav[..., :samples].to("cpu", torch.float32).numpy()


# ---------------------------------------------------------------------------- arithmetic
def bits_per_code(codebook_size: int = 2048) -> int:
    """Bits needed for one code: ``ceil(log2(codebook_size))``.

    Examples
    --------
    >>> bits_per_code(2048), bits_per_code(1024), bits_per_code(1000)
    (11, 10, 10)
    """
    size = check_positive(codebook_size, "codebook_size", integer=True)
    if size < 2:
        raise ValueError(f"codebook_size must be an integer >= 2, got {codebook_size!r}")
    return int(math.ceil(math.log2(size)))


def tokens_per_second(*, num_codebooks: int = 4, frame_rate: float = 50) -> float:
    """Codes per second of audio: ``num_codebooks * frame_rate`` (200 for MusicGen mono).

    Examples
    --------
    >>> tokens_per_second(), tokens_per_second(num_codebooks=8)
    (200.0, 400.0)
    """
    k = check_positive(num_codebooks, "num_codebooks", integer=True)
    return k * check_positive(frame_rate, "frame_rate")


def bitrate(*, num_codebooks: int = 4, codebook_size: int = 2048, frame_rate: float = 50) -> float:
    """Bits per second of the token stream: ``num_codebooks * bits_per_code * frame_rate``.

    Examples
    --------
    >>> bitrate()
    2200.0
    >>> bitrate(num_codebooks=2)
    1100.0
    """
    rate = tokens_per_second(num_codebooks=num_codebooks, frame_rate=frame_rate)
    return rate * bits_per_code(codebook_size)


def num_frames(duration: float, *, frame_rate: float = 50) -> int:
    """Frames covering ``duration`` seconds: ``ceil(duration * frame_rate)``.

    Products within 1e-6 of an integer count as that integer, so float error such as
    ``0.07 * 50 = 3.5000000000000004`` or ``1.1 * 50 = 55.00000000000001`` does not add a frame.

    Examples
    --------
    >>> num_frames(10.0), num_frames(1.1), num_frames(0.001)
    (500, 55, 1)
    """
    seconds = check_positive(duration, "duration")
    product = seconds * check_positive(frame_rate, "frame_rate")
    nearest = round(product)
    if abs(product - nearest) < 1e-6:
        return max(1, int(nearest))
    return int(math.ceil(product))


def compression_ratio(
    *,
    sample_rate: int = 32000,
    bit_depth: int = 16,
    channels: int = 1,
    num_codebooks: int = 4,
    codebook_size: int = 2048,
    frame_rate: float = 50,
) -> float:
    """PCM bitrate divided by token bitrate.

    16-bit mono PCM at 32 kHz is 512 kbps; MusicGen's tokens are 2.2 kbps, about 233x smaller.

    Examples
    --------
    >>> round(compression_ratio(), 1)
    232.7
    """
    pcm = (
        check_positive(sample_rate, "sample_rate", integer=True)
        * check_positive(bit_depth, "bit_depth", integer=True)
        * check_positive(channels, "channels", integer=True)
    )
    tok = bitrate(num_codebooks=num_codebooks, codebook_size=codebook_size, frame_rate=frame_rate)
    return pcm / tok


# ---------------------------------------------------------------------------- statistics
def codebook_usage(codes: ArrayLike, *, codebook_size: int = 2048, top: int = 5) -> pd.DataFrame:
    """Per-codebook statistics of a code array.

    Parameters
    ----------
    codes : array_like of int
        ``[B, K, frames]`` or ``[K, frames]``; counts pool the batch and frames.
    codebook_size : int, keyword-only
    top : int, keyword-only
        How many of the most frequent codes to list.

    Returns
    -------
    pandas.DataFrame
        One row per codebook: ``codebook``, ``entropy_bits`` (Shannon entropy of the
        empirical code distribution; at most ``log2(codebook_size)``), ``unique_codes``,
        ``usage`` (unique / codebook_size), ``top_codes`` and ``top_counts`` (lists, most
        frequent first, ties by lower code).

    Examples
    --------
    >>> import numpy as np
    >>> df = codebook_usage(np.array([[0, 1, 2, 3], [5, 5, 5, 5]]), codebook_size=8, top=2)
    >>> df[["codebook", "entropy_bits", "unique_codes", "usage"]]
       codebook  entropy_bits  unique_codes  usage
    0         0           2.0             4  0.500
    1         1           0.0             1  0.125
    >>> df.top_codes[1], df.top_counts[1]
    ([5], [4])
    """
    import pandas as pd

    size = check_positive(codebook_size, "codebook_size", integer=True)
    top = check_positive(top, "top", integer=True)
    arr = _int_codes(codes)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[2] == 0:
        raise ValueError(
            f"codes must be [batch, K, frames] or [K, frames] with frames >= 1, "
            f"got shape {np.shape(codes)}"
        )
    if arr.min() < 0 or arr.max() >= size:
        raise ValueError(
            f"codes must lie in [0, {size}) (codebook_size={size}), "
            f"got values in [{int(arr.min())}, {int(arr.max())}]"
        )
    rows = []
    for k in range(arr.shape[1]):
        counts = np.bincount(arr[:, k].ravel().astype(np.int64), minlength=size)
        p = counts[counts > 0] / counts.sum()
        order = np.lexsort((np.arange(size), -counts))[: min(top, int((counts > 0).sum()))]
        rows.append(
            dict(
                codebook=k,
                entropy_bits=float(max(0.0, -(p * np.log2(p)).sum())),
                unique_codes=int((counts > 0).sum()),
                usage=float((counts > 0).sum() / size),
                top_codes=[int(i) for i in order],
                top_counts=[int(counts[i]) for i in order],
            )
        )
    return pd.DataFrame(rows)
