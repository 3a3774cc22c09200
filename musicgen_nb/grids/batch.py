"""The work of one batch, shared by both backends of :func:`musicgen_nb.run_grid`.

The local backend and every Ray actor call :func:`generate_batch` on the same
batches, so both write the same files (same sha256). It returns the encoded
audio; the caller writes the files and the journal.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from typing import TYPE_CHECKING

import numpy as np

from .table import PARAMS

if TYPE_CHECKING:
    from ..models import MusicGen


def generate_batch(s: MusicGen, specs: list[dict], fmt: str = "wav") -> list[dict]:
    """Generate one batch of rows with session ``s``; return one result per row.

    Each result holds the encoded audio file (``data``, bytes) and what the
    manifest records. Both backends call this. Melody checkpoints attend to the
    padded text prefix, so their rows are sub-batched by prompt length (in
    tokens) to keep every clip independent of its batch-mates.

    Parameters
    ----------
    s : MusicGen
        The loaded session.
    specs : list of dict
        Rows of a grid (from :func:`musicgen_nb.grid`) with the same parameters.
    fmt : {"wav", "flac"}
        The audio file format.

    Returns
    -------
    list of dict
        One result per row, in the order of the sub-batches.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> rows = mg.grid(["jazz"], seed=[1, 2], duration=0.5).to_dict("records")
    >>> out = generate_batch(mg.load("tiny"), rows)
    >>> len(out), out[0]["data"][:4], out[0]["batch_size"]
    (2, b'RIFF', 2)
    """
    from ..generation import versions

    host = f"{socket.gethostname()}:{os.getpid()}"
    vers = {f"version_{k}": v for k, v in versions().items()}
    out = []
    for rows in _groups(s, specs):
        params = {k: rows[0][k] for k in PARAMS}
        t0 = time.perf_counter()
        g = s.generate(
            [r["prompt"] for r in rows], seed=[r["seed"] for r in rows], progress=False, **params
        )
        wall = time.perf_counter() - t0
        for i, spec in enumerate(rows):
            out.append(
                dict(
                    clip_id=spec["clip_id"], data=encode_audio(g.audio[i], g.sample_rate, fmt),
                    codes_sha256=hashlib.sha256(np.ascontiguousarray(g.codes[i]).tobytes()).hexdigest(),
                    duration_s=g.audio.shape[-1] / g.sample_rate, sample_rate=g.sample_rate,
                    batch_size=len(rows), seconds=wall / len(rows),
                    text_encode_s=g.timings["text_encode_s"], decode_loop_s=g.timings["decode_loop_s"],
                    codec_decode_s=g.timings["codec_decode_s"], steps_per_s=g.timings["steps_per_s"],
                    worker=host, device=s.device.type, **vers,
                )
            )  # fmt: skip
    return out


def _groups(s, specs: list[dict]) -> list[list[dict]]:
    """The rows of one ``generate`` call each: all of them, or by prompt length for melody models."""
    if not s.is_melody:
        return [specs]
    tok = s.processor.tokenizer
    by_len: dict = {}
    for spec in specs:
        by_len.setdefault(len(tok(spec["prompt"] or "").input_ids), []).append(spec)
    return list(by_len.values())


def encode_audio(wav: np.ndarray, sr: int, fmt: str) -> bytes:
    """``[C, N]`` float audio as the bytes of a 16-bit file, as :func:`musicgen_nb.audio.write` stores it.

    Examples
    --------
    >>> import numpy as np
    >>> data = encode_audio(np.zeros((1, 100), np.float32), 32000, "wav")
    >>> data[:4], len(data)
    (b'RIFF', 244)
    """
    import soundfile as sf

    from ..audio import FORMATS

    buf = io.BytesIO()
    sf_format, subtype = FORMATS[fmt]
    sf.write(buf, np.clip(wav, -1.0, 1.0).T, sr, format=sf_format, subtype=subtype)
    return buf.getvalue()
