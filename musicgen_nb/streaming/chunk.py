"""A chunk of a stream: a piece of audio and when it arrived.

Examples
--------
>>> import numpy as np
>>> Chunk(np.zeros((1, 1, 320), np.float32), 0.0, False, 0, 32000).duration
0.01
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Chunk"]


@dataclass
class Chunk:
    """A piece of a stream.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``[batch, channels, n]``, always with the stream's batch: a stream stopped
        before its first frame ends with one final chunk of shape ``[batch, channels, 0]``.
    start : float
        Seconds from the start of the clip (the audio prompt, if any, comes first).
    final : bool
        True on the last chunk; the chunks then cover the clip exactly once.
    index : int
    sample_rate : int
    arrived : float
        Seconds from the start of the stream to when this chunk was ready.
    remaining : float
        Estimated seconds until the last chunk is ready (0 on the last one),
        from the steps/s measured so far.
    steps_per_s : float
        Decode steps per second measured so far.
    total : float
        Seconds of audio the whole clip will hold (when not stopped early).
    samples : int
        Samples in this chunk (``audio.shape[-1]`` unless given: ``st.chunks``
        keeps the timeline without the audio).

    Examples
    --------
    >>> import numpy as np
    >>> c = Chunk(np.zeros((1, 1, 16000), np.float32), start=0.5, final=True, index=1,
    ...           sample_rate=32000)
    >>> c.duration, c.end
    (0.5, 1.0)
    >>> c
    Chunk(#1, 0.50-1.00 s, audio (1, 1, 16000), at 0.00 s, final)
    """

    audio: np.ndarray
    start: float
    final: bool
    index: int
    sample_rate: int
    arrived: float = 0.0
    remaining: float = 0.0
    steps_per_s: float = 0.0
    total: float = 0.0
    samples: int = -1

    def __post_init__(self):
        if self.samples < 0:
            self.samples = int(self.audio.shape[-1])

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk."""
        return self.samples / self.sample_rate

    @property
    def end(self) -> float:
        """Seconds from the start of the clip to the end of this chunk."""
        return self.start + self.duration

    def __repr__(self) -> str:
        last = ", final" if self.final else ""
        return (
            f"Chunk(#{self.index}, {self.start:.2f}-{self.end:.2f} s, audio {tuple(self.audio.shape[:2]) + (self.samples,)}"
            f", at {self.arrived:.2f} s{last})"
        )
