"""Audio I/O and DSP helpers: batching, resampling, loading, writing, loudness, test tones.

Pure numpy, soxr, soundfile and librosa (never torchaudio). Arrays are float32 with
samples on the last axis: ``[N]``, ``[channels, N]`` or ``[batch, channels, N]``.

Examples
--------
>>> from musicgen_nb import audio
>>> x = audio.sine(440.0, 1.0, 32000)
>>> audio.as_batch(x).shape
(1, 1, 32000)
>>> audio.resample(x, 32000, 16000).shape
(16000,)
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import re
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from ._arrays import as_array, pick_item

__all__ = [
    "FORMATS",
    "as_batch",
    "resample",
    "match_channels",
    "load",
    "write",
    "unique_path",
    "loudness",
    "normalize_loudness",
    "sine",
    "melody_tone",
    "note_to_midi",
]

#: Formats :func:`write` accepts, mapped to (soundfile format, subtype).
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}

# More channels than this on the first axis of a 2-D array looks like [samples, channels].
_MAX_CHANNELS = 8


# ---------------------------------------------------------------------------- validation
def _to_numpy(audio, name: str) -> np.ndarray:
    """Turn arrays, tensors and nested lists into a numpy array (no copy where possible)."""
    if hasattr(audio, "detach") and hasattr(audio, "cpu"):  # torch.Tensor, without importing torch
        audio = audio.detach().cpu()
        if audio.dtype.is_floating_point and audio.dtype.itemsize < 4:
            audio = audio.float()  # numpy has no bfloat16
        audio = audio.numpy()
    if isinstance(audio, (str, bytes, dict, set)) or audio is None:
        raise TypeError(
            f"{name} must be a numeric array or tensor, got {type(audio).__name__}: {audio!r:.60}"
        )
    try:
        arr = np.asarray(audio)
    except (ValueError, TypeError) as err:
        raise TypeError(
            f"{name} must be a numeric array or tensor, got {type(audio).__name__}"
        ) from err
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float), got dtype {arr.dtype} "
            f"from {type(audio).__name__}"
        )
    return arr


def _to_float32(arr: np.ndarray) -> np.ndarray:
    """Integers are PCM: scale int16/int32 by their full scale; floats are cast to float32."""
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        scale = float(info.max) + 1.0 if arr.dtype.kind == "i" else (float(info.max) + 1.0) / 2
        offset = 0.0 if arr.dtype.kind == "i" else scale
        return ((arr.astype(np.float64) - offset) / scale).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _check_finite(arr: np.ndarray, name: str) -> None:
    """Refuse NaN, inf, and values that float32 cannot hold, saying which it is."""
    if arr.dtype.kind != "f":
        return
    finite = np.isfinite(arr)
    if not finite.all():
        nan = int(np.isnan(arr).sum())
        inf = int(arr.size - finite.sum()) - nan
        first = np.unravel_index(int(np.argmin(finite.ravel())), arr.shape)
        raise ValueError(
            f"{name} holds non-finite values: {nan} NaN and {inf} inf (the first at index "
            f"{tuple(int(i) for i in first)}); all samples must be finite"
        )
    if arr.dtype.itemsize > 4:
        big = float(np.abs(arr).max(initial=0.0))
        if big > float(np.finfo(np.float32).max):
            raise ValueError(
                f"{name} holds values up to {big:.3g}, beyond float32's range (3.4e38); "
                "audio samples should lie in [-1, 1], so scale it down"
            )


def _check_sr(sr, name: str = "sr") -> int:
    """A sample rate must be a positive integer (an integral float like 44100.0 is fine)."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real):
        raise TypeError(f"{name} must be a positive integer sample rate in Hz, got {sr!r}")
    if not math.isfinite(sr) or sr <= 0 or int(sr) != sr:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


def as_batch(audio, *, name: str = "audio") -> np.ndarray:
    """Return audio as a float32 batch ``[batch, channels, samples]``.

    Parameters
    ----------
    audio : np.ndarray, torch.Tensor or nested list
        ``[N]`` (mono), ``[C, N]`` (channels first) or ``[B, C, N]``. Tensors are detached
        and moved to the CPU. Integer arrays are read as PCM and scaled to [-1, 1).
    name : str, keyword-only
        The argument name used in error messages.

    Returns
    -------
    np.ndarray
        float32 ``[B, C, N]``.

    Raises
    ------
    TypeError
        Non-numeric input.
    ValueError
        Wrong number of dimensions, no samples, non-finite values, or a 2-D array that looks
        like ``[samples, channels]``.

    Examples
    --------
    >>> import numpy as np
    >>> as_batch(np.zeros(100)).shape
    (1, 1, 100)
    >>> as_batch(np.zeros((2, 100))).shape
    (1, 2, 100)
    """
    arr = _to_numpy(audio, name)
    if arr.ndim not in (1, 2, 3):
        raise ValueError(
            f"{name} must be 1-D [samples], 2-D [channels, samples] or 3-D "
            f"[batch, channels, samples], got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one sample")
    if arr.ndim == 2 and arr.shape[0] > _MAX_CHANNELS and arr.shape[1] <= _MAX_CHANNELS:
        raise ValueError(
            f"{name} has shape {arr.shape}, which looks like [samples, channels]; "
            f"pass [channels, samples] instead, e.g. {name}.T"
        )
    _check_finite(arr, name)
    arr = _to_float32(arr)
    while arr.ndim < 3:
        arr = arr[None]
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------------------- resampling
def one_item(audio, item=None, *, name: str = "audio", max_channels: int = 16) -> np.ndarray:
    """One clip as float32 ``[channels, samples]`` from ``[N]``, ``[C, N]`` or ``[B, C, N]``.

    For display (players, figures): NaN and inf become finite instead of raising.

    Parameters
    ----------
    audio : array or tensor
    item : int, optional
        Batch item of a ``[B, C, N]`` input; may be omitted when ``B == 1``.
    name : str
        Argument name used in error messages.
    max_channels : int
        More channels than this is taken for a ``[samples, channels]`` mistake.

    Examples
    --------
    >>> one_item(np.zeros((2, 1, 100)), 1).shape
    (1, 100)
    """
    arr = as_array(audio, name)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3:
        if item is None and arr.shape[0] != 1:
            raise ValueError(
                f"{name} holds a batch of {arr.shape[0]} items (shape {arr.shape}); "
                f"pass item=0..{arr.shape[0] - 1}"
            )
        arr = pick_item(arr, 0 if item is None else item, name)
    elif arr.ndim == 1:
        arr = arr[None]
    elif arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape [samples], [channels, samples] or "
            f"[batch, channels, samples], got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one channel and one sample, got shape {arr.shape}"
        )
    if arr.shape[0] > max_channels:
        raise ValueError(
            f"{name} has {arr.shape[0]} channels (shape {arr.shape}); expected [channels, samples] "
            f"with at most {max_channels} channels. Did you pass [samples, channels]? Transpose it."
        )
    return np.nan_to_num(arr.astype(np.float32, copy=False))


# Memory of one resample() call: peak RSS above a warmed-up baseline, float32 [B, C, N] input,
# soxr 1.1.0 "HQ", a fresh process per case: `python benchmarks/bench_resample_memory.py`.
#   orig -> target Hz    shape            in MB  out MB  peak MB
#   7 -> 32000           [1, 1, 320]        0.0     5.9     13.1
#   7 -> 32000           [1, 1, 8000]       0.0   146.3    177.1
#   7 -> 32000           [1, 2, 1600]       0.0    58.5    118.5
#   7 -> 32000           [2, 2, 1000]       0.0    73.1    148.8
#   100 -> 32000         [1, 1, 32000]      0.1    41.0     43.8
#   1000 -> 32000        [1, 2, 160000]     1.3    41.0     82.0
#   44100 -> 48000       [1, 2, 2205000]   17.6    19.2     39.2
#   48000 -> 32000       [2, 2, 2400000]   38.4    25.6     66.5
# soxr itself holds 1.0-1.3x its output, plus up to ~10 MB of filter tables at extreme
# ratios; more than one row adds a transposed copy of the output. Every case lies under
#   input + 1.35 * output + 16 MB  (one row)   and   input + 2.25 * output + 16 MB  (more rows).
_RESAMPLE_OUT_FACTOR = (1.35, 2.25)  # one row, more rows
_RESAMPLE_OVERHEAD = 16 * 2**20
_COMMON_RATES = "16000, 22050, 32000, 44100, 48000 Hz"


def resample(
    audio, orig_sr: int, target_sr: int, *, name: str = "orig_sr", work=None
) -> np.ndarray:
    """Resample along the last axis with soxr (HQ), keeping any leading shape.

    Before resampling, the memory the call needs is estimated from the sizes
    (input + 1.35 x output + 16 MB for one row, 2.25 x output for more; measured)
    and compared with the memory available: a wrong rate that would stretch the audio a thousandfold is refused
    at once instead of exhausting memory. The caller's ``work`` is counted too, also
    when the rates are equal (then the call is a copy).

    Parameters
    ----------
    audio : array_like
        ``[..., N]`` samples on the last axis.
    orig_sr, target_sr : int
        Positive sample rates in Hz.
    name : str, keyword-only
        The caller's name for ``orig_sr`` (for example ``"sr"``), used in error messages.
    work : (str, float), optional, keyword-only
        What the caller does next with the resampled audio and the bytes that takes per
        output sample (all rows together), for example ``("encoding it with EnCodec",
        120.0)``. It is counted in the memory check, so that a call that cannot finish is
        refused before resampling.

    Returns
    -------
    np.ndarray
        float32 ``[..., round(N * target_sr / orig_sr)]``.

    Raises
    ------
    ValueError
        A bad rate, no samples, or more memory needed than is available.

    Examples
    --------
    >>> import numpy as np
    >>> resample(np.zeros((2, 3, 48000)), 48000, 32000).shape
    (2, 3, 32000)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the caller's name for orig_sr), got {name!r}")
    if work is not None and not (
        isinstance(work, tuple) and len(work) == 2 and isinstance(work[0], str)
        and isinstance(work[1], numbers.Real) and not isinstance(work[1], bool) and work[1] >= 0
    ):  # fmt: skip
        raise TypeError(f"work must be None or (str, bytes per output sample >= 0), got {work!r}")
    orig_sr = _check_sr(orig_sr, name)
    target_sr = _check_sr(target_sr, "target_sr")
    arr = _to_float32(_to_numpy(audio, "audio"))
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"audio must have samples on its last axis, got shape {arr.shape}")
    _check_resample_memory(arr, orig_sr, target_sr, name, work)
    if orig_sr == target_sr:
        return arr.copy()
    lead = arr.shape[:-1]
    flat = arr.reshape(-1, arr.shape[-1]).T  # soxr wants [frames, channels]
    out = soxr.resample(np.ascontiguousarray(flat), orig_sr, target_sr, quality="HQ")
    out = np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[1]).T
    return np.ascontiguousarray(out.reshape(*lead, -1))


def _check_resample_memory(arr: np.ndarray, orig_sr: int, target_sr: int, name: str, work) -> None:
    """Refuse a resample (and the caller's ``work`` after it) that cannot fit in memory."""
    from .memory import available_bytes

    n = arr.shape[-1]
    what, per_sample = work if work is not None else ("", 0.0)
    if orig_sr == target_sr and not per_sample:
        return  # a copy of what the caller already holds, and nothing after it
    out_len = math.ceil(n * target_sr / orig_sr)
    rows = arr.size // n
    if orig_sr == target_sr:  # a copy, then the caller's work on it
        need = 4 * arr.size
    else:
        factor = _RESAMPLE_OUT_FACTOR[rows > 1]
        need = 4 * arr.size + factor * 4 * rows * out_len + _RESAMPLE_OVERHEAD
    after = per_sample * out_len
    available = available_bytes()
    if available is None or need + after <= available:
        return
    seconds = n / orig_sr
    span = f"{seconds:.2f} s" + (f" ({seconds / 60:.1f} min)" if seconds >= 120 else "")
    if orig_sr == target_sr:
        fits = available / (4 * rows + per_sample) / orig_sr
        raise ValueError(
            f"{n:,} samples at {name}={orig_sr} Hz are {span} of audio; {what} needs about "
            f"{after / 1e9:,.1f} GB, but only {available / 1e9:,.1f} GB of memory is available; "
            f"pass shorter audio (about {fits:,.0f} s fits) or fewer items at a time"
        )
    target = f"target_sr={target_sr} Hz" if name == "orig_sr" else f"{target_sr} Hz"
    then = f", and {what} about {after / 1e9:,.1f} GB more" if after else ""
    if name == "orig_sr":
        hint = f"Check orig_sr (the audio's own sample rate; common: {_COMMON_RATES}) and target_sr"
    else:
        hint = f"Check {name}: it must be the audio's own sample rate (common: {_COMMON_RATES})"
    raise ValueError(
        f"{n:,} samples at {name}={orig_sr} Hz are {span} of audio; resampling them to {target} "
        f"makes shape {arr.shape} into {(*arr.shape[:-1], out_len)}, which needs about "
        f"{need / 1e9:,.1f} GB{then}, but only {available / 1e9:,.1f} GB of memory is available. "
        f"{hint}; if the rates are right, pass shorter audio"
    )


def match_channels(audio, channels: int) -> np.ndarray:
    """Convert ``[B, C, N]`` audio to ``channels`` channels.

    Mono to stereo duplicates the channel; any multichannel input to mono averages.

    Examples
    --------
    >>> import numpy as np
    >>> match_channels(np.ones((1, 1, 4)), 2).shape
    (1, 2, 4)
    >>> match_channels(np.array([[[1.0, 1.0], [0.0, 0.0]]]), 1)
    array([[[0.5, 0.5]]], dtype=float32)
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"channels must be a positive integer (1 or 2), got {channels!r}")
    arr = _to_float32(_to_numpy(audio, "audio"))
    if arr.ndim != 3:
        raise ValueError(f"audio must be 3-D [batch, channels, samples], got shape {arr.shape}")
    have = arr.shape[1]
    if have == channels:
        return arr
    if channels == 1:
        return arr.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(arr, channels, axis=1)
    raise ValueError(
        f"cannot convert {have} channels to {channels}; allowed: same count, mono to any, any to mono"
    )


# ---------------------------------------------------------------------------- files
def load(path, *, sr: int | None = None, mono: bool = False) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]``.

    soundfile reads WAV, FLAC, OGG (and MP3 with libsndfile >= 1.1); librosa (audioread)
    is the fallback for anything else.

    Parameters
    ----------
    path : str or Path
    sr : int, optional, keyword-only
        Resample to this rate. None keeps the file's rate.
    mono : bool, keyword-only
        Average the channels to one.

    Returns
    -------
    audio : np.ndarray
        float32 ``[C, N]``.
    sr : int
        The sample rate of ``audio``.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write(os.path.join(tempfile.mkdtemp(), "a.wav"), sine(440, 0.5, 16000), 16000)
    >>> x, rate = load(p, sr=32000)
    >>> x.shape, rate
    ((1, 16000), 32000)
    """
    path = _check_path(path, "path")
    if not path.exists():
        raise FileNotFoundError(f"no audio file at {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"could not read audio from {path}: the file is empty (0 bytes)")
    if sr is not None:
        sr = _check_sr(sr)
    if not isinstance(mono, bool):
        raise TypeError(f"mono must be True or False, got {mono!r}")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
        data = data.T
    except Exception as sf_err:  # any soundfile failure: try librosa
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa warns before falling back to audioread
                data, file_sr = librosa.load(str(path), sr=None, mono=False)
        except Exception as err:
            raise ValueError(
                f"could not read audio from {path}: it is not readable audio (an unknown "
                f"format, or a corrupt or truncated file): {_first_line(sf_err)}"
            ) from err
        data = np.atleast_2d(np.asarray(data, dtype=np.float32))
    if data.size == 0:
        raise ValueError(f"could not read audio from {path}: the file holds no samples")
    declared = _wav_declared_frames(path)
    if declared is not None and data.shape[-1] < declared:
        warnings.warn(
            f"{path} is truncated: its header declares {declared} frames but only "
            f"{data.shape[-1]} are in the file ({data.shape[-1] / declared:.0%}); "
            "loaded the frames that are there",
            stacklevel=2,
        )
    data = np.ascontiguousarray(data, dtype=np.float32)
    if mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True, dtype=np.float32)
    file_sr = int(file_sr)
    if sr is not None and sr != file_sr:
        data, file_sr = resample(data, file_sr, sr), sr
    return data, file_sr


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    # libsndfile says "File does not exist or is not a regular file" for any unknown format.
    if not text or "does not exist or is not a regular file" in text[0]:
        return "the format was not recognised"
    return text[0]


def _check_path(path, name: str) -> Path:
    """A file path: a non-empty str or os.PathLike."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a file path (str or os.PathLike), got {type(path).__name__} {path!r:.60}"
        )
    if os.fspath(path) in ("", b""):
        raise ValueError(f"{name} is an empty string; give a file path")
    return Path(os.fsdecode(path))


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a WAV file's header declares, or None (not a WAV, or no usable size)."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    if len(fmt) < 14:
                        return None
                    align = struct.unpack("<H", fmt[12:14])[0]
                    f.seek(size % 2, 1)
                elif cid == b"data":
                    if not align or size in (0, 0xFFFFFFFF):
                        return None  # streamed WAVs leave the size unset
                    return size // align
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None


def _resolve_format(path: Path, fmt: str | None) -> tuple[Path, str]:
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        fmt = suffix
        if not fmt:
            raise ValueError(f"path {str(path)!r} has no suffix; pass fmt= one of {list(FORMATS)}")
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    fmt = fmt.lower()
    if not suffix:
        path = path.with_name(f"{path.name}.{fmt}")
    elif suffix != fmt:
        raise ValueError(
            f"path suffix {path.suffix!r} does not match fmt={fmt!r}; use a .{fmt} path or drop fmt"
        )
    return path, fmt


def encode(audio, sr: int, fmt: str = "wav") -> bytes:
    """``[C, N]`` or ``[N]`` audio as the bytes of a 16-bit PCM WAV or FLAC file.

    Examples
    --------
    >>> encode(sine(440, 0.1, 8000), 8000)[:4]
    b'RIFF'
    """
    import io

    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    sr = _check_sr(sr)
    arr = as_batch(audio)
    if arr.shape[0] != 1:
        raise ValueError(f"audio must be [channels, samples] or [samples], got shape {arr.shape}")
    data = np.clip(arr[0], -1.0, 1.0).T  # soundfile wants [N, C]
    sf_format, subtype = FORMATS[fmt.lower()]
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=sf_format, subtype=subtype)
    return buf.getvalue()


def _disk_error(err: OSError, path) -> OSError:
    """An OSError that names ``path`` and, for a full disk, says so plainly."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
        new = OSError(f"{what} writing {path}")
    else:
        new = type(err)(f"could not write {path}: {err.strerror or err}")
    new.errno = err.errno  # the message stays one clean line; the code is still there
    return new


def write_temp(directory, name: str, data: bytes) -> Path:
    """Write ``data`` to a new hidden temporary file in ``directory``, fully and durably.

    The file is created with mode ``0o666`` less the umask, like any new file, so a file
    linked from it into place has the same permissions as one written directly. On any
    failure the temporary file is removed and the error names ``directory / name``.

    Returns
    -------
    Path
        The temporary file (``.{name}.XXXXXXXX.tmp``); the caller moves or removes it.
    """
    directory = Path(directory)
    while True:
        tmp = directory / f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _disk_error(err, directory / name) from err
    try:
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _disk_error(err, directory / name) from err
        raise
    return tmp


def link_new(src, dst) -> None:
    """Give the complete file ``src`` the new name ``dst``; raise FileExistsError if taken.

    A hard link fails atomically when ``dst`` exists, so two processes can never
    claim one name. Where hard links are not supported (some network and FUSE
    mounts), ``dst`` is claimed with ``O_EXCL`` and ``src`` renamed over it.
    """
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.EMLINK, errno.ENOSYS):  # fmt: skip
            raise _disk_error(err, dst) from err
    os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    os.replace(src, dst)


def write(path, audio, sr: int, *, fmt: str | None = None, overwrite: bool = False) -> Path:
    """Write ``[C, N]`` or ``[N]`` audio atomically as 16-bit PCM WAV or FLAC.

    The data goes to a temporary file in the target directory, which is then moved into
    place, so a reader never sees a half-written file. Samples are clipped to [-1, 1]
    and stored as 16-bit PCM (96 dB of dynamic range, CD quality, half the size of float).
    The file's mode follows the umask. A full disk raises ``OSError`` saying "no space
    left" and naming the path, and leaves no temporary file behind.

    Parameters
    ----------
    path : str or Path
        Target file. Without a suffix, ``.{fmt}`` is appended.
    audio : array_like
        ``[C, N]`` or ``[N]``.
    sr : int
        Sample rate in Hz.
    fmt : {"wav", "flac"}, optional, keyword-only
        Defaults to the path suffix.
    overwrite : bool, keyword-only
        Replace an existing file. Without it, an existing file raises FileExistsError.

    Returns
    -------
    Path
        The path written.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write(os.path.join(tempfile.mkdtemp(), "tone"), sine(440, 0.1, 8000), 8000, fmt="flac")
    >>> p.suffix
    '.flac'
    """
    path = _check_path(path, "path")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    path, fmt = _resolve_format(path, fmt)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True or use unique_path()")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    data = encode(audio, sr, fmt)
    tmp = write_temp(path.parent, path.name, data)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            link_new(tmp, path)  # fails atomically if someone created `path` meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return path


def unique_path(path, *, companions=()) -> Path:
    """Return ``path`` if it is free, else ``name-1.ext``, ``name-2.ext``, ... whichever is free.

    Parameters
    ----------
    path : str or Path
    companions : sequence of str, keyword-only
        Suffixes of files that go with the chosen one (for example ``(".json",)`` for a
        sidecar): a name counts as free only when those are free too.

    A name that is free now may be taken before you write it: to claim one safely
    under concurrency, create it with :func:`link_new` and retry on FileExistsError.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.wav").touch()
    >>> unique_path(d / "a.wav").name
    'a-1.wav'
    >>> (d / "b.json").touch()
    >>> unique_path(d / "b.wav", companions=[".json"]).name
    'b-1.wav'
    """
    path = _check_path(path, "path")
    stem, suffix = path.stem, path.suffix

    def free(p: Path) -> bool:
        return not p.exists() and not any(p.with_suffix(c).exists() for c in companions)

    if free(path):
        return path
    i = 1
    while not free(candidate := path.with_name(f"{stem}-{i}{suffix}")):
        i += 1
    return candidate


# ---------------------------------------------------------------------------- loudness
def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 K-weighting (high shelf + high pass) as two biquads designed for ``sr``."""
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (head effects). Constants reproduce the
    # 48 kHz coefficients of BS.1770-4 and let us redesign the filter at any rate.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # Stage 2: RLB high pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def _as_channels(audio, name: str = "audio") -> np.ndarray:
    arr = as_batch(audio, name=name)
    if arr.shape[0] != 1:
        raise ValueError(f"{name} must be [channels, samples] or [samples], got shape {arr.shape}")
    return arr[0]


def loudness(audio, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4).

    K-weighting designed for ``sr``, 400 ms blocks with 75 % overlap, an absolute gate at
    -70 LUFS and a relative gate 10 LU below the absolutely gated loudness. Every channel
    has weight 1 (right for mono and stereo). Audio shorter than one block is measured as a
    single block. Silence gives ``-inf``.

    Examples
    --------
    >>> round(loudness(sine(997, 3.0, 48000, amplitude=1.0), 48000), 1)
    -3.0
    """
    sr = _check_sr(sr)
    x = _as_channels(audio).astype(np.float64)
    for b, a in _k_weighting(sr):
        x = signal.lfilter(b, a, x, axis=-1)
    block, hop = int(round(0.4 * sr)), int(round(0.1 * sr))
    n = x.shape[-1]
    if n <= block:
        z = np.mean(x * x, axis=-1, keepdims=True)  # [C, 1]
    else:
        # Mean square of every block via a cumulative sum: [C, num_blocks].
        csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x * x, axis=-1)], axis=-1)
        starts = np.arange(0, n - block + 1, hop)
        z = (csum[:, starts + block] - csum[:, starts]) / block
    power = z.sum(axis=0)  # channel weights are all 1
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    gated = power[block_lufs > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    gated = power[(block_lufs > -70.0) & (block_lufs > relative)]
    return float(-0.691 + 10.0 * np.log10(gated.mean()))


def normalize_loudness(audio, sr: int, target_lufs: float = -14.0, *, peak: float = 0.99):
    """Scale audio to an integrated loudness, then scale down if a peak would exceed ``peak``.

    The peak step is a plain gain (no compression), so a very dynamic signal can end up
    quieter than ``target_lufs``. Silent audio (below the -70 LUFS gate) is returned unchanged.

    Parameters
    ----------
    audio : array_like
        ``[C, N]``, ``[N]`` or ``[B, C, N]`` (each item normalized on its own). The shape
        is kept.
    sr : int
    target_lufs : float
        Target loudness in LUFS; -14 is a common streaming level.
    peak : float, keyword-only
        Largest absolute sample allowed after scaling, in (0, 1].

    Examples
    --------
    >>> y = normalize_loudness(sine(440, 2.0, 32000, amplitude=0.01), 32000, -20.0)
    >>> round(loudness(y, 32000), 1)
    -20.0
    """
    sr = _check_sr(sr)
    if isinstance(target_lufs, bool) or not isinstance(target_lufs, numbers.Real):
        raise TypeError(f"target_lufs must be a number in LUFS, e.g. -14.0, got {target_lufs!r}")
    if not math.isfinite(target_lufs) or target_lufs > 0:
        raise ValueError(f"target_lufs must be a finite LUFS value <= 0, got {target_lufs!r}")
    if isinstance(peak, bool) or not isinstance(peak, numbers.Real) or not 0 < peak <= 1:
        raise ValueError(f"peak must be a number in (0, 1], got {peak!r}")
    arr = _to_float32(_to_numpy(audio, "audio"))
    batch = as_batch(arr)
    out = np.empty_like(batch)
    for i, item in enumerate(batch):
        current = loudness(item, sr)
        if not math.isfinite(current):
            out[i] = item
            continue
        gain = 10.0 ** ((target_lufs - current) / 20.0)
        top = float(np.abs(item).max()) * gain
        if top > peak:
            gain *= peak / top
        out[i] = item * gain
    return out.reshape(arr.shape)


# ---------------------------------------------------------------------------- synthesis
_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_to_midi(note) -> int:
    """MIDI number of a note name like ``"C4"`` (60), ``"F#3"`` or ``"Bb2"``; ints pass through.

    Examples
    --------
    >>> note_to_midi("A4"), note_to_midi("C#4"), note_to_midi(64)
    (69, 61, 64)
    """
    if isinstance(note, numbers.Integral) and not isinstance(note, bool):
        if not 0 <= note <= 127:
            raise ValueError(f"note must be a MIDI number in 0..127, got {note!r}")
        return int(note)
    match = _NOTE_RE.match(note) if isinstance(note, str) else None
    if match is None:
        raise ValueError(
            f"note must be a MIDI number (0..127) or a name like 'C4', 'F#3', 'Bb2', got {note!r}"
        )
    letter, accidental, octave = match.groups()
    accidental_shift = {"#": 1, "b": -1, "": 0}[accidental]
    midi = 12 * (int(octave) + 1) + _PC[letter.upper()] + accidental_shift
    return note_to_midi(midi)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def sine(freq: float, duration: float, sr: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32 ``[round(duration * sr)]``.

    Examples
    --------
    >>> x = sine(440.0, 0.5, 16000, amplitude=0.25)
    >>> x.shape, float(x.max()) <= 0.25
    ((8000,), True)
    """
    freq = _check_positive(freq, "freq")
    duration = _check_positive(duration, "duration")
    sr = _check_sr(sr)
    if freq >= sr / 2:
        raise ValueError(f"freq must be below the Nyquist frequency {sr / 2} Hz, got {freq}")
    t = np.arange(int(round(duration * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def melody_tone(notes, note_duration: float, sr: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A simple melody: each note is a tone with 3 harmonics and 10 ms fades.

    Parameters
    ----------
    notes : list of int or str
        MIDI numbers or names like ``"C4"``.
    note_duration : float
        Seconds per note.
    sr : int
    amplitude : float, keyword-only
        Peak amplitude.

    Returns
    -------
    np.ndarray
        float32 ``[len(notes) * round(note_duration * sr)]``.

    Examples
    --------
    >>> melody_tone(["C4", "E4", 67], 0.25, 16000).shape
    (12000,)
    """
    if isinstance(notes, (str, numbers.Number)) or not hasattr(notes, "__len__") or not notes:
        raise ValueError(f"notes must be a non-empty list of MIDI numbers or names, got {notes!r}")
    note_duration = _check_positive(note_duration, "note_duration")
    sr = _check_sr(sr)
    n = int(round(note_duration * sr))
    t = np.arange(n) / sr
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / max(1, 0.01 * sr))
    pieces = []
    for note in notes:
        f0 = 440.0 * 2.0 ** ((note_to_midi(note) - 69) / 12.0)
        tone = sum(
            w * np.sin(2 * np.pi * h * f0 * t)
            for h, w in ((1, 1.0), (2, 0.5), (3, 0.25))
            if h * f0 < sr / 2
        )
        pieces.append(tone * fade)
    out = np.concatenate(pieces)
    out *= amplitude / max(float(np.abs(out).max()), 1e-12)
    return out.astype(np.float32)
