"""The result of a generation, and saving it: audio files with a JSON sidecar of provenance.

Examples
--------
>>> import numpy as np, tempfile
>>> g = Generation(audio=np.zeros((1, 1, 3200), np.float32), sample_rate=32000,
...                codes=np.zeros((1, 4, 5), np.int64), prompts=["jazz"], params={}, seed=1,
...                timings={})
>>> g
Generation(1 x 0.10 s at 32000 Hz, codes (1, 4, 5), seed=1, model='')
>>> [p.name for p in g.save(tempfile.mkdtemp())]
['jazz_seed1.wav']
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_choice, check_number, check_path
from .._util.display import renderer
from .._util.files import claim, slug, write_temp

if TYPE_CHECKING:
    import os

__all__ = ["FORMATS", "Generation", "check_save", "versions"]

#: Audio formats :meth:`Generation.save` writes.
FORMATS = ("wav", "flac")


@dataclass
class Generation:
    """The result of :meth:`MusicGen.generate`.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``[batch, channels, samples]``; audio prompt (if any) then new audio.
    sample_rate : int
    codes : np.ndarray
        int64 ``[batch, num_codebooks, frames]``, de-interleaved.
    prompts : list of str or None
    params : dict
        Every parameter of the call.
    seed : int or list of int
        The seed of each item: an int for a batch of one, else one int per item.
    timings : dict
        ``text_encode_s``, ``decode_loop_s``, ``codec_decode_s``, ``steps``, ``steps_per_s``.
    frame_rate : int
    model_name : str
    prompt_frames : int
        Frames of ``codes`` (and ``prompt_frames * hop`` samples of audio) that
        came from the audio prompt.
    interrupted : bool
        True when the run was stopped early; ``codes``/``audio`` hold what was done.
    windows : list of (int, int)
        Frame ranges covered by each window (long-form): a window after the
        first starts with the previous window's tail as its prompt.
    window_codes : list of np.ndarray
        Long-form only: each window's codes ``[B, K, end - start]``, prompt tail included.
    trace : pandas.DataFrame or None
        Per (item, frame, codebook) sampling statistics (``trace=True``), see
        :func:`musicgen_nb.trace.to_frame`.
    attentions : musicgen_nb.attention.Attentions or None
        Captured attention of the first window (``attentions=True``).
    standin : str or None
        The offline checkpoint that made this in place of ``model_name``
        (stand-ins on, :mod:`musicgen_nb.testing`): its audio is noise. Saved in
        the sidecar.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=1, progress=False)
    >>> len(g), g.duration, g.provenance()["seed"]
    (1, 1.0, 1)
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    prompts: list
    params: dict
    seed: int | list
    timings: dict
    frame_rate: int = 50
    model_name: str = ""
    prompt_frames: int = 0
    interrupted: bool = False
    windows: list = field(default_factory=list)
    window_codes: list = field(default_factory=list, repr=False)
    trace: object = None
    attentions: object = None
    melody_chroma: object = None
    versions: dict = field(default_factory=dict)
    standin: str | None = None
    model_provenance: dict = field(default_factory=dict)  # s.provenance: e.g. the adapter

    @property
    def duration(self) -> float:
        """Seconds of audio held in ``audio``."""
        return self.audio.shape[-1] / self.sample_rate

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __repr__(self) -> str:
        state = ", interrupted" if self.interrupted else ""
        return (
            f"Generation({len(self)} x {self.duration:.2f} s at {self.sample_rate} Hz, "
            f"codes {tuple(self.codes.shape)}, seed={self.seed}, model={self.model_name!r}{state})"
        )

    def _repr_html_(self) -> str | None:
        """Players, prompt and parameters, from the renderer ``import musicgen_nb`` registers."""
        render = renderer("generation")
        return None if render is None else render(self)

    def provenance(self, item: int = 0) -> dict:
        """Everything needed to reproduce batch item ``item``."""
        return dict(
            prompt=self.prompts[item],
            model=self.model_name,
            seed=self.seed[item] if isinstance(self.seed, list) else self.seed,
            params=self.params,
            sample_rate=self.sample_rate,
            frames=int(self.codes.shape[-1]),
            prompt_frames=self.prompt_frames,
            interrupted=self.interrupted,
            versions=self.versions,
            standin=self.standin,
            item=item,
            **self.model_provenance,
        )

    def save(
        self, directory: str | os.PathLike, fmt: str = "wav", loudness: float | None = None
    ) -> list[Path]:
        """Write one audio file per batch item plus a JSON sidecar of provenance.

        Nothing is ever overwritten or orphaned. A name is used only when both
        ``<name>.<fmt>`` and ``<name>.json`` are free; otherwise ``-1``, ``-2``...
        is appended. Both files are written completely to temporary files first;
        then the sidecar is linked into place, then the audio, each failing
        atomically if another process took the name meanwhile (then the next
        name is tried). So a crash, even ``kill -9``, never leaves an audio file
        without its sidecar, and concurrent saves to one folder never collide.
        Files follow the umask. A full disk raises ``OSError`` ("no space left
        ... <path>") and leaves no temporary files. An interrupted generation is
        saved as ``<name>_partial``.

        Parameters
        ----------
        directory : path
            Created if missing.
        fmt : {"wav", "flac"}
        loudness : float, optional
            Target integrated loudness in LUFS (e.g. -14.0); None keeps the level.

        Returns
        -------
        list of Path
            The audio files; each has ``<name>.json`` beside it.

        Examples
        --------
        >>> import musicgen_nb as mg, tempfile
        >>> g = mg.load("tiny").generate("jazz", duration=1, seed=1, progress=False)
        >>> [p.suffix for p in g.save(tempfile.mkdtemp())]
        ['.wav']
        """
        from .. import audio as audio_io

        directory, fmt, loudness = check_save(directory, fmt, loudness)
        if self.audio.shape[-1] == 0:
            raise ValueError(
                "nothing to save: this generation holds no audio (it was interrupted before "
                "its first complete frame)"
            )
        paths = []
        for i in range(len(self)):
            wav = self.audio[i]
            if loudness is not None:
                wav = audio_io.normalize_loudness(wav, self.sample_rate, loudness)
            seed = self.provenance(i)["seed"]
            stem = slug(self.prompts[i]) + f"_seed{seed}" + (f"_{i}" if len(self) > 1 else "")
            if self.interrupted:
                stem += "_partial"
            digest = hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes())
            meta = self.provenance(i) | dict(loudness_lufs=loudness, sha256=digest.hexdigest())
            data = audio_io.encode(wav, self.sample_rate, fmt)
            paths.append(_save_pair(directory, stem, fmt, data, meta))
        return paths


def check_save(
    directory: str | os.PathLike,
    fmt: str = "wav",
    loudness: float | None = None,
    *,
    names: dict | None = None,
) -> tuple[Path, str, float | None]:
    """Check the arguments of :meth:`Generation.save` and make the folder, before any work.

    Parameters
    ----------
    directory, fmt, loudness
        As for :meth:`Generation.save`.
    names : dict, optional
        How to call each argument in messages, e.g. ``{"directory": "--out"}``.

    Returns
    -------
    (Path, str, float or None)
        The folder (created and known to be writable), the format and the loudness.

    Examples
    --------
    >>> import tempfile
    >>> folder, fmt, loudness = check_save(tempfile.mkdtemp(), "flac", -14)
    >>> fmt, loudness
    ('flac', -14.0)
    """
    names = {"directory": "directory", "fmt": "fmt", "loudness": "loudness"} | (names or {})
    check_choice(fmt, names["fmt"], FORMATS)
    if loudness is not None:
        loudness = check_number(loudness, names["loudness"], allowed="LUFS <= 0, e.g. -14.0")
        if loudness > 0:
            raise ValueError(
                f"{names['loudness']} must be a loudness in LUFS <= 0 (e.g. -14.0), got {loudness!r}"
            )
    if isinstance(directory, str) and not directory.strip():
        raise ValueError(f"{names['directory']} is an empty string; give a folder")
    directory = check_path(directory, names["directory"])
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{names['directory']} {str(directory)!r} is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_temp(directory, "write-check", b"").unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        denied = PermissionError(
            f"{names['directory']} {str(directory)!r} is not writable: {reason}"
        )
        denied.errno = err.errno
        raise denied from None
    return directory, fmt, loudness


def _save_pair(directory: Path, stem: str, fmt: str, data: bytes, meta: dict) -> Path:
    """Claim the first name whose audio and sidecar are both free; write both, sidecar first."""
    tmp_audio = write_temp(directory, f"{stem}.{fmt}", data)
    try:
        for n in range(100_000):
            name = stem if n == 0 else f"{stem}-{n}"
            path, side = directory / f"{name}.{fmt}", directory / f"{name}.json"
            if path.exists() or side.exists():
                continue
            text = json.dumps(meta | dict(file=path.name), indent=1, default=str).encode()
            if _claim_pair(directory, tmp_audio, path, side, text):
                return path
        raise FileExistsError(f"no free name for {stem}.{fmt} in {directory} after 100000 tries")
    finally:
        tmp_audio.unlink(missing_ok=True)


def _claim_pair(directory: Path, tmp_audio: Path, path: Path, side: Path, text: bytes) -> bool:
    """Link the sidecar, then the audio, into place; False when another process took a name."""
    tmp_side = write_temp(directory, side.name, text)
    try:
        try:
            claim(tmp_side, side)
        except FileExistsError:
            return False  # taken meanwhile by another process: next name
        try:
            claim(tmp_audio, path)
        except FileExistsError:
            side.unlink(missing_ok=True)
            return False
        except BaseException:
            side.unlink(missing_ok=True)
            raise
        return True
    finally:
        tmp_side.unlink(missing_ok=True)


def versions() -> dict:
    """Versions of the toolkit and the libraries a result depends on.

    Examples
    --------
    >>> sorted(versions())
    ['musicgen_nb', 'numpy', 'python', 'torch', 'transformers']
    """
    import torch
    import transformers

    from .._version import __version__

    return dict(
        musicgen_nb=__version__, transformers=transformers.__version__, torch=torch.__version__,
        numpy=np.__version__, python=platform.python_version(),
    )  # fmt: skip
