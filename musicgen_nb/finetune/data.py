"""Fine-tuning data: a folder of captioned audio, checked, encoded once and cut into windows.

:func:`dataset` reads a folder of audio with captions, checks every file and names
the bad ones. :meth:`Dataset.encode` resamples, encodes each file to EnCodec codes
once (cached on disk, keyed by the file's hash and the codec) and cuts the codes into
windows of at most the model's window. :func:`synth_dataset` writes a small dataset
of two styles of tunes, for examples and tests.

Examples
--------
>>> import tempfile
>>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
>>> len(data), data.layout
(2, 'metadata.csv')
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._util.checks import check_bool, check_number, check_positive
from .folder import (
    AUDIO_EXTENSIONS,
    MAX_FILE_SECONDS,
    DataError,
    Item,
    check_items,
    read_captions,
)
from .folder import (
    synth_dataset as synth_dataset,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..models import MusicGen


@dataclass
class Window:
    """A stretch of one file's codes, at most the model's window long.

    Attributes
    ----------
    codes : np.ndarray
        int64 ``[num_codebooks, frames]``.
    text : str
    file : str
        The file's name inside the dataset folder.
    start : int
        First frame of the window in the file's codes.

    Examples
    --------
    >>> import numpy as np
    >>> Window(np.zeros((4, 50), dtype=np.int64), "warm pad", "a.wav", 0).codes.shape
    (4, 50)
    """

    codes: np.ndarray
    text: str
    file: str
    start: int


# ------------------------------------------------------------------------- codes
def codec_key(s: MusicGen) -> str:
    """A short hash of ``s``'s codec: its config and every weight (the disk cache key).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> len(codec_key(mg.load("tiny")))
    16
    """
    codec = s.model.audio_encoder
    h = hashlib.sha256(json.dumps(codec.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(s.audio_channels).encode())
    for name, t in sorted(codec.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    from ..checkpoints.offline import cache_root

    return cache_root() / "codes"


def _cached(path: Path, s) -> np.ndarray | None:
    """The codes cached at ``path``, or None; a damaged entry is named, removed and rebuilt."""
    if not path.exists():
        return None
    try:
        codes = np.load(path, allow_pickle=False)
        ok = (codes.dtype.kind in "iu" and codes.ndim == 2 and codes.shape[0] == s.num_codebooks
              and codes.shape[1] > 0 and 0 <= codes.min() and codes.max() < s.codebook_size)  # fmt: skip
    except (OSError, ValueError, EOFError) as err:
        ok, codes = False, err
    if ok:
        return codes
    warnings.warn(f"the code cache file {path} is damaged ({str(codes)[:80]!r} is not codes of "
                  "this codec); encoding the file again", stacklevel=4)  # fmt: skip
    path.unlink(missing_ok=True)
    return None


def _file_codes(s, item: Item, root: Path, *, cache: bool, name: str) -> np.ndarray:
    """int64 ``[K, frames]`` codes of one file: from the disk cache, or encoded (and cached)."""
    from .. import audio as audio_io
    from .._util.files import write_atomic

    path = root / f"{item.sha256}.npy"
    codes = _cached(path, s) if cache else None
    if codes is None:
        try:
            wav, _ = audio_io.load(item.file, sr=s.sample_rate)
            codes = s.encode(wav, s.sample_rate)[0].astype(np.int16)
        except (ValueError, MemoryError, RuntimeError) as err:
            raise DataError(f"{name}: could not encode it ({err})") from err
        if cache:
            root.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, codes)
            write_atomic(path, buf.getvalue(), overwrite=True)
    return codes.astype(np.int64)


def _starts(total: int, frames: int, hop: int) -> list[int]:
    """Window starts every ``hop`` frames; the last window ends at the file's end."""
    starts = list(range(0, max(1, total - frames + 1), hop))
    if starts[-1] + frames < total:
        starts.append(total - frames)
    return starts


class Dataset:
    """A folder of captioned audio, checked, ready to encode.

    Make one with :func:`dataset`.

    Attributes
    ----------
    folder : Path
    layout : str
        ``"metadata.csv"``, ``"metadata.jsonl"`` or ``"txt"``.
    items : list of Item
        The usable files: ``file``, ``text``, ``sha256``, ``duration``, ``sample_rate``.
    skipped : list of (str, str)
        Files left out, with the reason.
    window, hop : float or None
        Window length and hop in seconds (None: the model's window, hop = window).

    Examples
    --------
    >>> import tempfile
    >>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> [i.file.name for i in data.items], data.skipped
    (['tune0.wav', 'tune1.wav'], [])
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        layout: str,
        items: list,
        skipped: list,
        *,
        window: float | None = None,
        hop: float | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.layout = layout
        self.items = list(items)
        self.skipped = list(skipped)
        self.window = window
        self.hop = hop
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._encoded: dict[tuple, list[Window]] = {}

    def __len__(self) -> int:
        """The number of usable files.

        Examples
        --------
        >>> import tempfile
        >>> len(dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0)))
        2
        """
        return len(self.items)

    def __repr__(self) -> str:
        secs = sum(i.duration for i in self.items)
        skip = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"Dataset({str(self.folder)!r}, {len(self)} files, {secs:.1f} s, layout={self.layout!r}{skip})"

    def to_frame(self) -> pd.DataFrame:
        """One row per usable file: file, text, duration, sample_rate, sha256.

        Examples
        --------
        >>> import tempfile
        >>> frame = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0)).to_frame()
        >>> frame.shape, frame["duration"].tolist()
        ((2, 5), [1.0, 1.0])
        """
        import pandas as pd

        return pd.DataFrame(
            [dict(file=i.file.relative_to(self.folder).as_posix(), text=i.text,
                  duration=round(i.duration, 3), sample_rate=i.sample_rate, sha256=i.sha256[:12])
             for i in self.items]
        )  # fmt: skip

    def encode(self, s: MusicGen, *, cache: bool = True, progress: bool = False) -> list[Window]:
        """Encode every file with ``s``'s codec once and cut the codes into windows.

        Codes are cached on disk (``cache_dir``, by default ``$MUSICGEN_NB_CACHE/codes``)
        under the file's SHA-256 and a hash of the codec, so a second call (or a second
        session) reads them back instead of running EnCodec again. A damaged cache file
        (unreadable, or not codes of this codec) is named in a warning and encoded again.
        A file that fails to encode raises :class:`DataError` naming it.

        Parameters
        ----------
        s : MusicGen
        cache : bool
            Read and write the disk cache.
        progress : bool
            A tqdm bar over files.

        Returns
        -------
        list of Window
            Windows of at most ``window`` seconds (default ``s.max_duration``) every
            ``hop`` seconds (default: the window); the last one ends at the file's end.

        Examples
        --------
        >>> import tempfile, musicgen_nb as mg
        >>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0), cache_dir=tempfile.mkdtemp())
        >>> [w.codes.shape for w in data.encode(mg.load("tiny"))]
        [(4, 50), (4, 50)]
        """
        key = codec_key(s)
        frames = int(round((self.window or s.max_duration) * s.frame_rate))
        if frames > s.max_frames:
            raise ValueError(
                f"window must be at most the model's window ({s.max_duration:g} s), got {self.window!r}"
            )
        hop = max(1, int(round(self.hop * s.frame_rate)) if self.hop else frames)
        memo = (key, frames, hop)
        if memo in self._encoded:
            return self._encoded[memo]
        root = (self.cache_dir or _cache_root()) / key
        items = self.items
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="encoding", unit="file", leave=False)
        windows = []
        for item in items:
            name = item.file.relative_to(self.folder).as_posix()
            codes = _file_codes(s, item, root, cache=cache, name=name)
            for a in _starts(codes.shape[-1], frames, hop):
                windows.append(Window(codes[:, a : a + frames], item.text, name, a))
        self._encoded[memo] = windows
        return windows


def _check_args(folder, window, hop, min_duration, max_duration, silence_db, strict):
    """(folder as a Path, window, hop, min_duration, max_duration, silence_db), checked by name."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path, got {type(folder).__name__}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be a directory of audio files, got {str(folder)!r}")
    window = check_positive(window, "window", allow_none=True)
    hop = check_positive(hop, "hop", allow_none=True)
    if window is not None and hop is not None and hop > window:
        raise ValueError(f"hop must be at most the window ({window:g} s), got {hop!r}")
    min_duration = check_positive(min_duration, "min_duration")
    max_duration = check_positive(max_duration, "max_duration")
    if max_duration < min_duration:
        raise ValueError(
            f"max_duration must be at least min_duration ({min_duration:g} s), got {max_duration!r}"
        )
    silence_db = check_number(silence_db, "silence_db", allowed="a level in dBFS, <= 0")
    if silence_db > 0:
        raise ValueError(f"silence_db must be a level in dBFS, <= 0 (e.g. -60), got {silence_db!r}")
    check_bool(strict, "strict")
    return folder, window, hop, min_duration, max_duration, silence_db


def _listing(folder: Path) -> tuple[str, dict, list[str], list]:
    """(layout, captions, every audio file name to check, bad entries); no audio is refused."""
    layout, captions, uncaptioned, bad = read_captions(folder)
    names = list(captions) + [p.relative_to(folder).as_posix() for p in uncaptioned]
    if not names and not bad:
        raise ValueError(
            f"folder {str(folder)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    return layout, captions, names, bad


def dataset(
    folder: str | os.PathLike, *, window: float | None=None, hop: float | None=None, min_duration: float=1.0, silence_db: float=-60.0, strict: bool=False,
    cache_dir: str | os.PathLike | None=None, max_duration: float=MAX_FILE_SECONDS,
) -> Dataset:  # fmt: skip
    """Read a folder of audio with captions for fine-tuning.

    Two layouts are accepted:

    - Hugging Face's *audiofolder*: a ``metadata.csv`` or ``metadata.jsonl`` with the
      columns ``file_name`` (relative to the folder) and ``text``, in UTF-8 (a
      byte-order mark, as Excel writes, is fine);
    - same-stem text files: ``song.wav`` with its caption in ``song.txt``.

    Every file is read once to check it. A file that is unreadable, silent, holds
    NaN or infinite samples, is too short or too long, or has no caption, and a
    metadata line that is not UTF-8, has no ``file_name`` or repeats a file, raises
    :class:`DataError` naming the file (and line) when ``strict``; otherwise it is
    skipped with a warning and listed in ``skipped``.

    Nothing outside ``folder`` is read: a metadata path that is absolute, uses
    ``..`` or resolves outside the folder through a symlink (and any audio or
    caption file that is such a symlink) raises :class:`DataError` naming the
    metadata file, the line and the path, whatever ``strict`` says.

    Parameters
    ----------
    folder : path
    window : float, optional
        Window length in seconds; default (None) the model's window (30 s for the
        real checkpoints). Longer files are cut into several windows.
    hop : float, optional
        Seconds between window starts; default the window (no overlap).
    min_duration : float
        Shorter files are "too short".
    silence_db : float
        Files whose peak is at or below this level (dBFS, <= 0) are "silent".
    strict : bool
        Raise on the first bad file instead of skipping it.
    cache_dir : path, optional
        Where encoded codes are cached; default ``$MUSICGEN_NB_CACHE/codes``.
    max_duration : float
        Longer files are "too long", checked from the file's header before it is
        decoded. The default, 600 s, bounds the memory of :meth:`Dataset.encode`,
        which encodes a file in one pass (about 44 MB per second of audio for the
        released checkpoints).

    Returns
    -------
    Dataset

    Examples
    --------
    >>> import tempfile
    >>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> data.to_frame()[["file", "duration"]]
            file  duration
    0  tune0.wav       1.0
    1  tune1.wav       1.0
    """
    folder, window, hop, min_duration, max_duration, silence_db = _check_args(
        folder, window, hop, min_duration, max_duration, silence_db, strict
    )
    layout, captions, names, bad = _listing(folder)
    items, skipped = check_items(
        folder, names, captions, min_duration=min_duration, silence_db=silence_db,
        strict=strict, bad=bad, max_duration=max_duration,
    )  # fmt: skip
    if not items:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise ValueError(f"folder {str(folder)!r} holds no usable file: {reasons}")
    return Dataset(folder, layout, items, skipped, window=window, hop=hop, cache_dir=cache_dir)
