"""``export_checkpoint``: a session's model in audiocraft's checkpoint layout.

Examples
--------
>>> import tempfile, musicgen_nb as mg
>>> folder = export_checkpoint(mg.load("tiny"), tempfile.mkdtemp())
>>> mg.load(folder).num_codebooks
4
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoints import audiocraft_format

if TYPE_CHECKING:
    from typing import Any

__all__ = ["export_checkpoint"]


def export_checkpoint(session: Any, directory: str | os.PathLike) -> Path:
    """Write ``session``'s model as ``state_dict.bin`` + ``compression_state_dict.bin``.

    ``state_dict.bin`` holds ``xp.cfg`` (YAML) and ``best_state`` (the decoder and
    conditioning projections under audiocraft's names), as audiocraft exports
    them; both files also hold a ``musicgen_nb`` entry (the text encoder, the
    tokenizer, EnCodec and the config) that audiocraft ignores and
    :func:`musicgen_nb.load` reads, so ``mg.load(directory)`` gives the same codes.
    fp32 copies of the weights are written (an int8 session cannot be exported).

    Parameters
    ----------
    session : musicgen_nb.MusicGen
        From :func:`musicgen_nb.load` (or the ``session`` of
        :class:`musicgen_nb.audiocraft.MusicGen`).
    directory : path
        Created if missing; it must not already hold either file.

    Returns
    -------
    Path
        ``directory``.

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> sorted(p.name for p in export_checkpoint(mg.load("tiny"), tempfile.mkdtemp()).iterdir())
    ['compression_state_dict.bin', 'state_dict.bin']
    """
    session = getattr(session, "session", session)  # an audiocraft MusicGen too
    if not hasattr(session, "model") or not hasattr(session, "max_duration"):
        raise TypeError(
            f"session must come from musicgen_nb.load(...), got {type(session).__name__}"
        )
    if session.precision in ("int8", "int4"):
        raise ValueError(
            f"session has precision={session.precision!r}: export a fp32/fp16/bf16 load, "
            "whose weights are the checkpoint's"
        )
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"directory {str(folder)!r} is a file, not a folder")
    return audiocraft_format.write(
        session.model, session.processor, folder, max_duration=session.max_duration
    )
