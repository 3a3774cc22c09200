"""Codebook interleaving patterns compared in the MusicGen paper (Copet et al., 2023).

EnCodec gives ``K`` parallel token streams (codebooks) of ``T`` frames. A language model
predicts one step at a time, so the streams must be laid out as a sequence of steps. A
:class:`Pattern` says, for every step and codebook, which frame is predicted there, or -1
where a special (pad) token goes.

- ``parallel`` (T steps): all codebooks of frame t at step t.
- ``delay`` (T + K - 1 steps): codebook k predicts frame t at step t + k (MusicGen).
- ``unroll`` (K * T steps): flattening, one codebook per step, frame by frame.
- ``coarse_first`` (2 * T steps): VALL-E style, codebook 0 for all frames, then
  codebooks 1..K-1 in parallel, frame by frame.
- ``musiclm`` (K * T steps): codebooks 0-1 flattened over all frames, then codebooks
  2..K-1 flattened over all frames.

Examples
--------
>>> from musicgen_nb import patterns
>>> p = patterns.build("delay", 4, 3)
>>> p.num_steps
6
>>> p.layout.T
array([[ 0,  1,  2, -1, -1, -1],
       [-1,  0,  1,  2, -1, -1],
       [-1, -1,  0,  1,  2, -1],
       [-1, -1, -1,  0,  1,  2]])
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._util.checks import check_int

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

__all__ = ["Pattern", "build", "names", "interleave", "deinterleave", "codebook_delays"]

#: Codebooks in the coarse group of the ``musiclm`` pattern.
MUSICLM_COARSE = 2


@dataclass(frozen=True, eq=False)
class Pattern:
    """A codebook interleaving pattern.

    Attributes
    ----------
    name : str
        One of :func:`names`.
    num_codebooks : int
        ``K``.
    frames : int
        ``T``.
    layout : np.ndarray
        int64 ``[num_steps, num_codebooks]``, read-only: the frame predicted at that step
        for that codebook, or -1 where a special token goes. Every (codebook, frame) pair
        appears exactly once.

    Examples
    --------
    >>> p = build("parallel", 2, 3)
    >>> p
    Pattern('parallel', num_codebooks=2, frames=3, num_steps=3)
    >>> p.num_steps, p.layout.shape
    (3, (3, 2))
    >>> p.to_frame().head(2)
       step  codebook  frame
    0     0         0      0
    1     0         1      0
    """

    name: str
    num_codebooks: int
    frames: int
    layout: np.ndarray = field(repr=False)

    def __post_init__(self):
        layout = np.array(self.layout, dtype=np.int64)
        if layout.ndim != 2 or layout.shape[1] != self.num_codebooks:
            raise ValueError(
                f"layout must be [num_steps, {self.num_codebooks}], got shape {layout.shape}"
            )
        for k in range(self.num_codebooks):
            got = np.sort(layout[:, k][layout[:, k] >= 0])
            if not np.array_equal(got, np.arange(self.frames)):
                raise ValueError(
                    f"layout must hold every frame 0..{self.frames - 1} exactly once per codebook; "
                    f"codebook {k} does not"
                )
        layout.setflags(write=False)
        object.__setattr__(self, "layout", layout)

    @property
    def num_steps(self) -> int:
        """Number of sequence steps the model runs."""
        return int(self.layout.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """int64 ``[num_codebooks, frames]``: the step at which each frame is predicted.

        Examples
        --------
        >>> build("delay", 2, 3).positions
        array([[0, 1, 2],
               [1, 2, 3]])
        """
        pos = np.empty((self.num_codebooks, self.frames), dtype=np.int64)
        steps, books = np.nonzero(self.layout >= 0)
        pos[books, self.layout[steps, books]] = steps
        return pos

    def __repr__(self) -> str:
        return (
            f"Pattern({self.name!r}, num_codebooks={self.num_codebooks}, frames={self.frames}, "
            f"num_steps={self.num_steps})"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return self.name == other.name and np.array_equal(self.layout, other.layout)

    def __hash__(self) -> int:
        return hash((self.name, self.num_codebooks, self.frames))

    def to_frame(self) -> pd.DataFrame:
        """A tidy ``pandas.DataFrame`` with one row per (step, codebook): step, codebook, frame.

        ``frame`` is -1 where a special token goes.
        """
        import pandas as pd

        steps, books = np.meshgrid(
            np.arange(self.num_steps), np.arange(self.num_codebooks), indexing="ij"
        )
        return pd.DataFrame(
            {"step": steps.ravel(), "codebook": books.ravel(), "frame": self.layout.ravel()}
        )


# ---------------------------------------------------------------------------- layouts
def _parallel(k: int, t: int) -> np.ndarray:
    return np.repeat(np.arange(t)[:, None], k, axis=1)


def _delay(k: int, t: int) -> np.ndarray:
    frame = np.arange(t + k - 1)[:, None] - np.arange(k)[None, :]
    return np.where((frame >= 0) & (frame < t), frame, -1)


def _flatten(codebooks, t: int, k: int) -> np.ndarray:
    """One codebook per step, frame by frame, over ``codebooks``: ``[len * t, k]``."""
    n = len(codebooks)
    out = np.full((n * t, k), -1, dtype=np.int64)
    steps = np.arange(n * t)
    out[steps, np.asarray(codebooks)[steps % n]] = steps // n
    return out


def _unroll(k: int, t: int) -> np.ndarray:
    return _flatten(range(k), t, k)


def _coarse_first(k: int, t: int) -> np.ndarray:
    first = np.full((t, k), -1, dtype=np.int64)
    first[:, 0] = np.arange(t)
    rest = np.full((t, k), -1, dtype=np.int64)
    rest[:, 1:] = np.arange(t)[:, None]
    return np.concatenate([first, rest])


def _musiclm(k: int, t: int) -> np.ndarray:
    coarse = list(range(min(MUSICLM_COARSE, k)))
    fine = list(range(len(coarse), k))
    parts = [_flatten(coarse, t, k)]
    if fine:
        parts.append(_flatten(fine, t, k))
    return np.concatenate(parts)


_BUILDERS = {
    "parallel": (_parallel, 1),
    "delay": (_delay, 1),
    "unroll": (_unroll, 1),
    "coarse_first": (_coarse_first, 2),
    "musiclm": (_musiclm, 2),
}


def names() -> list[str]:
    """Names accepted by :func:`build`.

    Examples
    --------
    >>> names()
    ['parallel', 'delay', 'unroll', 'coarse_first', 'musiclm']
    """
    return list(_BUILDERS)


def build(name: str, num_codebooks: int, frames: int) -> Pattern:
    """Build an interleaving pattern.

    Parameters
    ----------
    name : str
        ``parallel`` (T steps), ``delay`` (T + K - 1), ``unroll`` (K * T), ``coarse_first``
        (2 * T, VALL-E style) or ``musiclm`` (K * T).
    num_codebooks : int
        ``K``; ``coarse_first`` and ``musiclm`` need K >= 2.
    frames : int
        ``T``, the number of audio frames.

    Notes
    -----
    ``delay`` is MusicGen's pattern: at step ``s`` codebook ``k`` predicts frame ``s - k``.
    transformers' ``MusicgenForCausalLM.build_delay_pattern_mask`` uses the same layout
    shifted right by one: its column 0 is a BOS column (the pad token for every codebook),
    so frame ``t`` of codebook ``k`` lies at position ``t + k + 1`` and a full sequence is
    ``T + K`` long. Prepend a pad column to :func:`interleave`'s output to get theirs.

    ``musiclm`` follows the MusicGen paper's description of MusicLM's hierarchy: the coarse
    group (codebooks 0 and 1) is flattened over all frames first (2T steps), then the fine
    group (codebooks 2..K-1) is flattened over all frames ((K-2)T steps).

    Examples
    --------
    >>> build("coarse_first", 4, 5).num_steps
    10
    >>> build("unroll", 2, 2).layout
    array([[ 0, -1],
           [-1,  0],
           [ 1, -1],
           [-1,  1]])
    """
    if name not in _BUILDERS:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    fn, min_k = _BUILDERS[name]
    k = check_int(num_codebooks, "num_codebooks", minimum=min_k)
    t = check_int(frames, "frames", minimum=1)
    return Pattern(name=name, num_codebooks=k, frames=t, layout=fn(k, t))


#: The most codebooks a delay layout is built for (MusicGen uses 4, stereo 8; EnCodec at most 32).
MAX_CODEBOOKS = 64


def codebook_delays(num_codebooks: int, channels: int = 1) -> list[int]:
    """The delay (in steps) of each codebook in MusicGen's ``delay`` pattern.

    Mono: codebook ``k`` is delayed by ``k``. Stereo checkpoints interleave the left and
    right codebooks, so codebooks ``2c`` and ``2c + 1`` are both delayed by ``c``.

    Parameters
    ----------
    num_codebooks : int
        ``K``, as ``s.num_codebooks``.
    channels : {1, 2}
        Audio channels of the checkpoint, as ``s.audio_channels``.

    Returns
    -------
    list of int
        ``K`` delays; the largest is the number of extra steps the pattern needs.

    Examples
    --------
    >>> codebook_delays(4)
    [0, 1, 2, 3]
    >>> codebook_delays(8, channels=2)
    [0, 0, 1, 1, 2, 2, 3, 3]
    """
    k = check_int(num_codebooks, "num_codebooks", minimum=1, maximum=MAX_CODEBOOKS)
    channels = check_int(channels, "channels", minimum=1)
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels!r}")
    if channels == 2:
        return [i // 2 for i in range(k)]
    return list(range(k))


# ---------------------------------------------------------------------------- (de)interleave
def _as_int_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be [K, T] or [batch, K, T], got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _check_pattern(pattern) -> Pattern:
    if not isinstance(pattern, Pattern):
        raise TypeError(
            f"pattern must be a Pattern from patterns.build(), got {type(pattern).__name__}"
        )
    return pattern


def interleave(codes: ArrayLike, pattern: Pattern, special_id: int) -> np.ndarray:
    """Lay codes out as a step sequence following ``pattern``.

    Parameters
    ----------
    codes : array_like of int
        ``[batch, K, T]`` or ``[K, T]``, with K and T matching the pattern.
    pattern : Pattern
    special_id : int
        Token id written where the layout is -1 (MusicGen uses its pad id, 2048).

    Returns
    -------
    np.ndarray
        int64 ``[batch, K, num_steps]`` (``[K, num_steps]`` for 2-D input):
        ``seq[..., k, s] = codes[..., k, layout[s, k]]``.

    Examples
    --------
    >>> import numpy as np
    >>> interleave(np.array([[1, 2], [3, 4]]), build("delay", 2, 2), special_id=9)
    array([[1, 2, 9],
           [9, 3, 4]])
    """
    pattern = _check_pattern(pattern)
    arr = _as_int_array(codes, "codes")
    if isinstance(special_id, bool) or not isinstance(special_id, numbers.Integral):
        raise TypeError(f"special_id must be an integer token id, got {special_id!r}")
    want = (pattern.num_codebooks, pattern.frames)
    if arr.shape[-2:] != want:
        raise ValueError(
            f"codes have shape {arr.shape}, but the pattern needs [..., K={want[0]}, T={want[1]}]"
        )
    idx = pattern.layout.T  # [K, S]
    gathered = np.take_along_axis(
        arr, np.broadcast_to(np.maximum(idx, 0), arr.shape[:-2] + idx.shape), -1
    )
    return np.where(idx >= 0, gathered, np.int64(special_id))


def deinterleave(seq: ArrayLike, pattern: Pattern) -> np.ndarray:
    """Undo :func:`interleave`: recover codes ``[batch, K, T]`` from a step sequence.

    Special tokens are dropped. ``deinterleave(interleave(c, p, i), p) == c`` exactly.

    Parameters
    ----------
    seq : array_like of int
        ``[batch, K, num_steps]`` or ``[K, num_steps]``.
    pattern : Pattern

    Returns
    -------
    np.ndarray
        int64 ``[batch, K, T]`` (``[K, T]`` for 2-D input).

    Examples
    --------
    >>> import numpy as np
    >>> deinterleave(np.array([[1, 2, 9], [9, 3, 4]]), build("delay", 2, 2))
    array([[1, 2],
           [3, 4]])
    """
    pattern = _check_pattern(pattern)
    arr = _as_int_array(seq, "seq")
    want = (pattern.num_codebooks, pattern.num_steps)
    if arr.shape[-2:] != want:
        raise ValueError(
            f"seq has shape {arr.shape}, but pattern {pattern!r} needs "
            f"[..., K={want[0]}, num_steps={want[1]}]"
        )
    pos = pattern.positions  # [K, T]
    return np.take_along_axis(arr, np.broadcast_to(pos, arr.shape[:-2] + pos.shape), -1)
