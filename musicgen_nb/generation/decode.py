"""Codes to audio: the bounded long decode, and the assembly of the :class:`Generation`.

Examples
--------
>>> import numpy as np, musicgen_nb as mg
>>> s = mg.load("tiny")
>>> decode_long(s, np.zeros((1, 4, 50), dtype=np.int64)).shape
(1, 1, 32000)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .request import Request
from .result import Generation, versions
from .windows import Inputs, Plan, Run

if TYPE_CHECKING:
    from typing import Any

__all__ = ["DECODE_CHUNK", "DECODE_CONTEXT", "assemble", "decode_long"]

#: Codes longer than this many frames are decoded in overlapping pieces, so the
#: codec's activations stay bounded however long the piece is.
DECODE_CHUNK = 1500
#: Frames of context decoded on each side of a piece and then dropped.
DECODE_CONTEXT = 100


def decode_long(s: Any, codes: np.ndarray) -> np.ndarray:
    """Decode ``[B, K, frames]`` codes in overlapping pieces of :data:`DECODE_CHUNK` frames.

    Each piece is decoded with :data:`DECODE_CONTEXT` frames of context on both
    sides, which are then dropped, so the codec's memory stays bounded and the
    seams match a one-piece decode closely. Up to ``DECODE_CHUNK`` frames this is
    exactly ``s.decode(codes)``.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> codes = np.zeros((1, 4, 60), dtype=np.int64)
    >>> np.array_equal(decode_long(s, codes), s.decode(codes))
    True
    """
    frames = codes.shape[-1]
    if frames <= DECODE_CHUNK:
        return s.decode(codes)
    hop = s.hop_length
    out = np.empty((codes.shape[0], s.audio_channels, frames * hop), dtype=np.float32)
    for a in range(0, frames, DECODE_CHUNK):
        b = min(frames, a + DECODE_CHUNK)
        lo, hi = max(0, a - DECODE_CONTEXT), min(frames, b + DECODE_CONTEXT)
        piece = s.decode(codes[..., lo:hi])
        out[..., a * hop : b * hop] = piece[..., (a - lo) * hop : (b - lo) * hop]
    return out


def _audio(s, req: Request, codes: np.ndarray) -> np.ndarray:
    """Decode every item alone.

    Batched convolutions round differently, and an item's audio must not depend on its
    batch-mates (per-item seeds).
    """
    if not codes.shape[-1]:
        return np.zeros((req.batch, s.audio_channels, 0), dtype=np.float32)
    return np.concatenate([decode_long(s, codes[i : i + 1]) for i in range(req.batch)])


def assemble(s, req: Request, p: Plan, got: Inputs, run: Run) -> Generation:
    """Decode the stitched codes once and build the :class:`Generation`, trace and attentions.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.generation import make_request
    >>> from musicgen_nb.generation.windows import inputs, plan, run_windows
    >>> s = mg.load("tiny")
    >>> req = make_request(s, "x", duration=1, seed=0, progress=False)
    >>> got, p = inputs(s, req, plan(s, req))
    >>> assemble(s, req, p, got, run_windows(s, req, p, got)).audio.shape
    (1, 1, 32000)
    """
    t3 = time.perf_counter()
    codes = run.codes.cpu().numpy().astype(np.int64)
    wav = _audio(s, req, codes)
    timings = run.timings
    timings["codec_decode_s"] = time.perf_counter() - t3
    timings["steps_per_s"] = (
        timings["steps"] / timings["decode_loop_s"] if timings["decode_loop_s"] else 0.0
    )
    P = p.prompt_frames
    if not run.interrupted:
        wav = wav[..., : P * s.hop_length + round(req.opts["duration"] * s.sample_rate)]
    params = dict(req.opts, negative_prompt=req.negative, melody=req.melody is not None,
                  audio_prompt=req.audio_prompt is not None, windows=len(p.windows))  # fmt: skip
    g = Generation(
        audio=np.ascontiguousarray(wav, dtype=np.float32), sample_rate=s.sample_rate, codes=codes,
        prompts=req.texts, params=params, seed=req.seeds[0] if req.batch == 1 else req.seeds,
        timings=timings, frame_rate=s.frame_rate, model_name=s.name, prompt_frames=P,
        interrupted=run.interrupted, windows=run.windows,
        window_codes=[w.cpu().numpy() for w in run.window_codes] if len(run.window_codes) > 1 else [],
        melody_chroma=got.chroma, versions=versions(), standin=s.standin,
        model_provenance=dict(getattr(s, "provenance", {})),
    )  # fmt: skip
    _attach(s, req, p, run, g)
    return g


def _attach(s, req: Request, p: Plan, run: Run, g: Generation) -> None:
    """The trace (``trace=True``) and the attentions (``attentions=True``) of ``g``."""
    if run.record is not None:
        from ..trace import to_frame

        g.trace = to_frame(
            run.record, s, batch=req.batch, prompt_frames=p.prompt_frames, plan=p.windows,
            prefix_known=p.prompt_frames, codes=g.codes,
        )  # fmt: skip
    if p.capture is not None and run.captured is not None:
        g.attentions = run.captured  # collected when the first window ended
