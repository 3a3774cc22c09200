"""Audio files: read any common format, encode and write 16-bit PCM WAV or FLAC atomically.

soundfile reads WAV, FLAC, OGG (and MP3 with libsndfile >= 1.1); librosa (audioread) is
the fallback for anything else. Writes go through :mod:`musicgen_nb._util.files`, so a
reader never sees a half-written file.

Examples
--------
>>> import tempfile, os
>>> from musicgen_nb.audio import sine
>>> p = write(os.path.join(tempfile.mkdtemp(), "a.wav"), sine(440, 0.1, 8000), 8000)
>>> load(p)[0].shape
(1, 800)
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from .._util.checks import check_bool, check_path, check_sr
from .._util.files import write_atomic
from .arrays import as_batch
from .resample import resample

if TYPE_CHECKING:
    import os

    from numpy.typing import ArrayLike

#: Formats :func:`write` accepts, mapped to (soundfile format, subtype).
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


# ---------------------------------------------------------------------------- reading
def load(
    path: str | os.PathLike, *, sr: int | None = None, mono: bool = False
) -> tuple[np.ndarray, int]:
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
    >>> from musicgen_nb.audio import sine
    >>> p = write(os.path.join(tempfile.mkdtemp(), "a.wav"), sine(440, 0.5, 16000), 16000)
    >>> x, rate = load(p, sr=32000)
    >>> x.shape, rate
    ((1, 16000), 32000)
    """
    path = check_readable(path)
    if sr is not None:
        sr = check_sr(sr)
    mono = check_bool(mono, "mono")
    data, file_sr = _read(path)
    if data.size == 0:
        raise ValueError(f"could not read audio from {path}: the file holds no samples")
    declared = wav_declared_frames(path)
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
    if sr is not None and sr != file_sr:
        data, file_sr = resample(data, file_sr, sr), sr
    return data, file_sr


def check_readable(path, name: str = "path") -> Path:
    """An existing, non-empty file, or an error that says which of those it is not.

    Examples
    --------
    >>> check_readable("/no/such/file.wav")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no audio file at '/no/such/file.wav'
    """
    path = check_path(path, name)
    if not path.exists():
        raise FileNotFoundError(f"no audio file at {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"could not read audio from {path}: the file is empty (0 bytes)")
    return path


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``([C, N], rate)`` with soundfile, else librosa; a clear error when neither reads it."""
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data.T, int(file_sr)
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
        return np.atleast_2d(np.asarray(data, dtype=np.float32)), int(file_sr)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    # libsndfile says "File does not exist or is not a regular file" for any unknown format.
    if not text or "does not exist or is not a regular file" in text[0]:
        return "the format was not recognised"
    return text[0]


def wav_declared_frames(path) -> int | None:
    """Frames a WAV file's header declares, or None (not a WAV, or no usable size).

    Examples
    --------
    >>> import tempfile, os
    >>> p = write(os.path.join(tempfile.mkdtemp(), "a.wav"), np.zeros(300), 8000)
    >>> wav_declared_frames(p)
    300
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            return _data_frames(f)
    except OSError:
        return None


def _data_frames(f) -> int | None:
    """Walk the RIFF chunks after the header: the data size over the block alignment."""
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


# ---------------------------------------------------------------------------- writing
def resolve_format(path, fmt: str | None) -> tuple[Path, str]:
    """The path to write and its format: ``fmt`` from the suffix, or the suffix from ``fmt``.

    Examples
    --------
    >>> resolve_format("take", "flac")
    (PosixPath('take.flac'), 'flac')
    >>> resolve_format("take.WAV", None)[1]
    'wav'
    """
    path = Path(path)
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


def encode(audio: ArrayLike, sr: int, fmt: str = "wav") -> bytes:
    """``[C, N]`` or ``[N]`` audio as the bytes of a 16-bit PCM WAV or FLAC file.

    Examples
    --------
    >>> from musicgen_nb.audio import sine
    >>> encode(sine(440, 0.1, 8000), 8000)[:4]
    b'RIFF'
    """
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    sr = check_sr(sr)
    arr = as_batch(audio)
    if arr.shape[0] != 1:
        raise ValueError(f"audio must be [channels, samples] or [samples], got shape {arr.shape}")
    data = np.clip(arr[0], -1.0, 1.0).T  # soundfile wants [N, C]
    sf_format, subtype = FORMATS[fmt.lower()]
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=sf_format, subtype=subtype)
    return buf.getvalue()


def write(
    path: str | os.PathLike,
    audio: ArrayLike,
    sr: int,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
) -> Path:
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
    >>> from musicgen_nb.audio import sine
    >>> p = write(os.path.join(tempfile.mkdtemp(), "tone"), sine(440, 0.1, 8000), 8000, fmt="flac")
    >>> p.suffix
    '.flac'
    """
    path = check_path(path, "path")
    overwrite = check_bool(overwrite, "overwrite")
    path, fmt = resolve_format(path, fmt)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True or use unique_path()")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    # write_atomic claims the name atomically: it fails if someone created `path` meanwhile.
    return write_atomic(path, encode(audio, sr, fmt), overwrite=overwrite)
