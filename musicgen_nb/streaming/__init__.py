"""Streaming: hear the music while it is being generated.

:meth:`MusicGen.stream` runs generation in a worker thread and yields the audio
in chunks as soon as their frames are complete in every codebook. Streaming
never changes what is sampled: after the loop, ``st.generation`` is the very
``Generation`` that ``generate`` returns (same codes, audio decoded in one pass).

Chunks are decoded by :class:`ChunkDecoder` so that, joined end to end, they
match the one-pass decode. MusicGen's 32 kHz EnCodec decoder is a convolution,
then an LSTM, then a stack of (transposed) convolutions. The first convolution
looks 3 frames ahead, the LSTM carries its state from chunk to chunk, and the
convolutions after it reach less than 3 frames either side: so the decoder
holds back the last 6 frames (0.12 s) until their right context exists,
re-runs a few frames of left context, and gives the same samples as the
one-pass decode up to float rounding. A decoder of another shape falls back to
decoding each chunk with a fixed left and right context (``method="context"``).

Modules: :mod:`~musicgen_nb.streaming.streams` (Stream, stream),
:mod:`~musicgen_nb.streaming.worker` (the generation thread, stopped when its stream
is abandoned and at interpreter exit),
:mod:`~musicgen_nb.streaming.chunk` (Chunk),
:mod:`~musicgen_nb.streaming.chunk_decoder` (ChunkDecoder, snr_db, check_threads) and
:mod:`~musicgen_nb.streaming.playback` (the live player's start rule).

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> st = s.stream("lo-fi beat", duration=2.0, seed=1, chunk=0.5)
>>> chunks = list(st)
>>> [round(c.start, 2) for c in chunks][:3], chunks[-1].final
([0.0, 0.5, 1.0], True)
>>> import numpy as np
>>> audio = np.concatenate([c.audio for c in chunks], axis=-1)
>>> audio.shape == st.generation.audio.shape
True
"""

from .chunk import Chunk
from .chunk_decoder import ChunkDecoder, snr_db
from .playback import START_MARGIN, remaining_seconds, should_start, simulate
from .streams import Stream, stream

__all__ = [
    "Chunk", "ChunkDecoder", "Stream", "stream", "snr_db", "should_start", "remaining_seconds",
    "simulate", "START_MARGIN",
]  # fmt: skip
