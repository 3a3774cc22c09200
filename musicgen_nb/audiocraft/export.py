"""``export_checkpoint``: a session's model in audiocraft's checkpoint layout.

Examples
--------
>>> import tempfile, musicgen_nb as mg
>>> with tempfile.TemporaryDirectory() as tmp:
...     mg.load(export_checkpoint(mg.load("tiny"), tmp)).num_codebooks
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
    conditioning projections under audiocraft's names), as audiocraft's ``export_lm``
    writes them. ``compression_state_dict.bin`` is, for the stock 32 kHz EnCodec
    (and for the stand-ins, which stand for it), what audiocraft's
    ``export_pretrained_compression_model`` writes: ``{"pretrained":
    "facebook/encodec_32khz", "exported": True}``; another codec is written under
    audiocraft's EnCodec names (``best_state``). Both files also hold a
    ``musicgen_nb`` entry (the text encoder, the tokenizer, EnCodec and the config)
    that audiocraft ignores and :func:`musicgen_nb.load` reads, so
    ``mg.load(directory)`` gives the same codes. fp32 copies of the weights are
    written (an int8 session cannot be exported). A session loaded from a stand-in
    stays one: the folder loads as a stand-in.

    Handing a fine-tune back to audiocraft: audiocraft rebuilds the model from
    ``xp.cfg`` before it loads ``best_state``, so ``xp.cfg`` must carry the base
    model's config keys. We write the ones we know: ``lm_model``,
    ``transformer_lm`` (dim, heads, layers, card, n_q, hidden scale, norms, biases,
    positional embedding), ``codebooks_pattern`` (delay), ``conditioners``
    (T5 description; chroma stem for melody), ``fuser``,
    ``classifier_free_guidance``, ``attribute_dropout``, ``sample_rate``,
    ``channels``, ``dataset.segment_duration`` and ``compression_model_checkpoint``.
    Not guaranteed: that audiocraft's builders need no other key (its defaults
    come from its own config tree, which an export does not carry), stereo
    checkpoints (audiocraft interleaves their codebooks), and the conditioning
    order of melody checkpoints. When in doubt, keep the base model's own
    ``xp.cfg`` and replace only ``best_state``, which is exact.

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
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sorted(p.name for p in export_checkpoint(mg.load("tiny"), tmp).iterdir())
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
