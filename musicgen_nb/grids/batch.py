"""The work of one batch, shared by both backends of :func:`musicgen_nb.run_grid`.

The local backend and every Ray actor call :func:`generate_batch` on the same
batches, so both write the same files (same sha256): on CPU the EnCodec decode
of the files runs on :data:`DECODE_THREADS` torch threads (the decode steps keep
the process's count), because EnCodec's convolutions round differently with
another thread count, and a Ray actor runs with another one than this process. It returns the encoded
audio; the caller writes the files and the journal. An interrupted generation
(Ctrl-C, a stop event) raises :class:`GridInterrupted`: its short clips are
never returned, so they are never journaled as done.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from .table import PARAMS

if TYPE_CHECKING:
    import threading

    from ..models import MusicGen

#: Torch threads of the EnCodec decode that makes a grid's files (same bytes on any worker).
DECODE_THREADS = 1
#: The result columns :func:`generate_batch` adds to each row (besides ``data``).
COLUMNS = (
    "codes_sha256", "duration_s", "sample_rate", "batch_size", "seconds", "text_encode_s",
    "decode_loop_s", "codec_decode_s", "steps_per_s", "worker", "device", "model", "standin",
    "precision", "adapter",
)  # fmt: skip


class GridInterrupted(KeyboardInterrupt):
    """A grid's generation was interrupted (Ctrl-C or a stop event); its clips were not saved.

    A ``KeyboardInterrupt``, so that it ends the run like Ctrl-C does (the
    command exits 130).

    Examples
    --------
    >>> issubclass(GridInterrupted, KeyboardInterrupt)
    True
    """


def generate_batch(
    s: MusicGen, specs: list[dict], fmt: str = "wav", stop: threading.Event | None = None
) -> list[dict]:
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
    stop : threading.Event, optional
        Passed to ``generate``: set it to stop the batch at the next step.

    Returns
    -------
    list of dict
        One result per row, in the order of the sub-batches.

    Raises
    ------
    GridInterrupted
        When ``generate`` was interrupted (KeyboardInterrupt or ``stop``): nothing
        of the batch is returned.

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
    kind = dict(model=s.name, standin=s.standin, precision=s.precision, adapter=adapter_of(s))
    out = []
    for rows in _groups(s, specs):
        params = {k: rows[0][k] for k in PARAMS}
        t0 = time.perf_counter()
        g, pinned = _generate(s, rows, params, stop)
        if g.interrupted:  # generate keeps a partial result (for notebooks): a grid does not
            raise GridInterrupted(
                f"interrupted while generating {len(rows)} clip(s) "
                f"({g.audio.shape[-1] / g.sample_rate:.2f} of {params['duration']} s): not saved"
            )
        wall = time.perf_counter() - t0
        audio = g.audio if pinned else fixed_decode(s, g)
        for i, spec in enumerate(rows):
            out.append(
                dict(
                    clip_id=spec["clip_id"], data=encode_audio(audio[i], g.sample_rate, fmt),
                    codes_sha256=hashlib.sha256(np.ascontiguousarray(g.codes[i]).tobytes()).hexdigest(),
                    duration_s=g.audio.shape[-1] / g.sample_rate, sample_rate=g.sample_rate,
                    batch_size=len(rows), seconds=wall / len(rows),
                    text_encode_s=g.timings["text_encode_s"], decode_loop_s=g.timings["decode_loop_s"],
                    codec_decode_s=g.timings["codec_decode_s"], steps_per_s=g.timings["steps_per_s"],
                    worker=host, device=s.device.type, **kind, **vers,
                )
            )  # fmt: skip
    return out


def _generate(s, rows: list[dict], params: dict, stop):
    """``(generation, pinned)``: on CPU, the codec decode runs on :data:`DECODE_THREADS` threads.

    The thread count is set when the last decode step is reported (``callback``), so
    the EnCodec decode that follows runs on it, with no second decode. ``pinned``
    says it did (a GPU needs no pinning); otherwise the caller decodes again.
    """
    import torch

    pinned = [s.device.type != "cpu"]

    def pin(done: int, total: int) -> None:
        if done >= total and not pinned[0]:
            torch.set_num_threads(DECODE_THREADS)
            pinned[0] = True

    with _threads_kept():
        g = s.generate([r["prompt"] for r in rows], seed=[r["seed"] for r in rows],
                       progress=False, stop=stop, callback=pin, **params)  # fmt: skip
    return g, pinned[0]


@contextmanager
def _threads_kept():
    """Restore torch's thread count on the way out, whatever the block set it to."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def adapter_of(s) -> str | None:
    """The path of the fine-tune merged into session ``s``, or None.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> adapter_of(SimpleNamespace(meta={})), adapter_of(SimpleNamespace(meta={"adapter": {"path": "/a"}}))
    (None, '/a')
    """
    adapter = getattr(s, "meta", {}).get("adapter")
    return None if adapter is None else str(adapter.get("path"))


def fixed_decode(s, g) -> np.ndarray:
    """``g``'s audio decoded again from its codes with :data:`DECODE_THREADS` threads (CPU).

    EnCodec's convolutions round differently with another thread count; decoding
    with a fixed one gives the same bytes in this process and in any Ray actor.
    On a GPU the thread count plays no part, and ``g.audio`` is used as it is.

    Examples
    --------
    >>> import musicgen_nb as mg, torch
    >>> s = mg.load("tiny")
    >>> g = s.generate("jazz", duration=0.5, seed=1, progress=False)
    >>> torch.set_num_threads(2); a = fixed_decode(s, g)
    >>> torch.set_num_threads(1); b = fixed_decode(s, g)
    >>> a.shape == g.audio.shape, (a == b).all()
    (True, np.True_)
    """
    import torch

    from ..generation import decode_long

    if s.device.type != "cpu":
        return g.audio
    with _threads_kept():
        torch.set_num_threads(DECODE_THREADS)
        wav = [decode_long(s, g.codes[i : i + 1]) for i in range(len(g.codes))]
    return np.concatenate(wav)[..., : g.audio.shape[-1]].astype(np.float32)


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
