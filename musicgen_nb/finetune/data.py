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

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._util.checks import check_bool, check_positive
from .folder import AUDIO_EXTENSIONS, Item, check_items, read_captions

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


def _file_codes(s, item: Item, root: Path, *, cache: bool) -> np.ndarray:
    """int64 ``[K, frames]`` codes of one file: from the disk cache, or encoded (and cached)."""
    from .. import audio as audio_io

    path = root / f"{item.sha256}.npy"
    codes = np.load(path) if cache and path.exists() else None
    if codes is None:
        wav, _ = audio_io.load(item.file, sr=s.sample_rate)
        codes = s.encode(wav, s.sample_rate)[0].astype(np.int16)
        if cache:
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".{item.sha256}.{os.getpid()}.npy"
            np.save(tmp, codes)
            os.replace(tmp, path)
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
        return len(self.items)

    def __repr__(self) -> str:
        secs = sum(i.duration for i in self.items)
        skip = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"Dataset({str(self.folder)!r}, {len(self)} files, {secs:.1f} s, layout={self.layout!r}{skip})"

    def to_frame(self) -> pd.DataFrame:
        """One row per usable file: file, text, duration, sample_rate, sha256."""
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
        session) reads them back instead of running EnCodec again.

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
            codes = _file_codes(s, item, root, cache=cache)
            name = item.file.relative_to(self.folder).as_posix()
            for a in _starts(codes.shape[-1], frames, hop):
                windows.append(Window(codes[:, a : a + frames], item.text, name, a))
        self._encoded[memo] = windows
        return windows


def _check_args(folder, window, hop, min_duration, strict):
    """(folder as a Path, window, hop, min_duration) checked; the errors name the argument."""
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
    check_bool(strict, "strict")
    return folder, window, hop, min_duration


def _listing(folder: Path) -> tuple[str, dict, list[str]]:
    """(layout, captions, every audio file name to check); a folder without audio is refused."""
    layout, captions, uncaptioned = read_captions(folder)
    names = list(captions) + [p.relative_to(folder).as_posix() for p in uncaptioned]
    if not names:
        raise ValueError(
            f"folder {str(folder)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    return layout, captions, names


def dataset(
    folder: str | os.PathLike, *, window: float | None=None, hop: float | None=None, min_duration: float=1.0, silence_db: float=-60.0, strict: bool=False,
    cache_dir: str | os.PathLike | None=None,
) -> Dataset:  # fmt: skip
    """Read a folder of audio with captions for fine-tuning.

    Two layouts are accepted:

    - Hugging Face's *audiofolder*: a ``metadata.csv`` or ``metadata.jsonl`` with the
      columns ``file_name`` (relative to the folder) and ``text``;
    - same-stem text files: ``song.wav`` with its caption in ``song.txt``.

    Every file is read once to check it. A file that is unreadable, silent, too
    short, or has no caption raises :class:`DataError` naming it when ``strict``;
    otherwise it is skipped with a warning (and listed in ``skipped``).

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
        Files whose peak is at or below this level (dBFS) are "silent".
    strict : bool
        Raise on the first bad file instead of skipping it.
    cache_dir : path, optional
        Where encoded codes are cached; default ``$MUSICGEN_NB_CACHE/codes``.

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
    folder, window, hop, min_duration = _check_args(folder, window, hop, min_duration, strict)
    layout, captions, names = _listing(folder)
    items, skipped = check_items(
        folder, names, captions, min_duration=min_duration, silence_db=float(silence_db),
        strict=strict,
    )  # fmt: skip
    if not items:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise ValueError(f"folder {str(folder)!r} holds no usable file: {reasons}")
    return Dataset(folder, layout, items, skipped, window=window, hop=hop, cache_dir=cache_dir)


_STYLES = (
    ([60, 64, 67, 72], "bright rising arpeggio in C major, quick plucked notes"),
    ([57, 53, 50, 45], "dark falling arpeggio in A minor, slow low notes"),
)


def synth_dataset(
    folder: str | os.PathLike, *, seconds: float = 2.0, sr: int = 32000, per_style: int = 1
) -> Path:
    """Write a small captioned dataset of two "styles" of tunes (audiofolder layout).

    Style 0 is a bright rising arpeggio in C major, style 1 a low falling one in
    A minor; ``per_style`` tunes of each, transposed by a tone each time.

    Returns
    -------
    Path
        ``folder``, with ``tune<i>.wav`` files and a ``metadata.csv``.

    Examples
    --------
    >>> import tempfile
    >>> sorted(p.name for p in synth_dataset(tempfile.mkdtemp()).iterdir())
    ['metadata.csv', 'tune0.wav', 'tune1.wav']
    """
    from .. import audio as audio_io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_style):
        for j, (notes, text) in enumerate(_STYLES):
            note = 0.125 if j == 0 else 0.25
            n = max(1, int(round(seconds / note)))
            seq = [notes[k % len(notes)] + 2 * i for k in range(n)]
            wav = audio_io.melody_tone(seq, note, sr)
            wav = np.pad(wav, (0, max(0, int(round(seconds * sr)) - wav.shape[-1])))
            name = f"tune{len(rows)}.wav"
            target = folder / name
            if target.exists():
                raise FileExistsError(f"{target} exists; give synth_dataset an empty folder")
            audio_io.write(target, wav[: int(round(seconds * sr))], sr)
            rows.append(dict(file_name=name, text=text))
    with open(folder / "metadata.csv", "x", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "text"])
        w.writeheader()
        w.writerows(rows)
    return folder
