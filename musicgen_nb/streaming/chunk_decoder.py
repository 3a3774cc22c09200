"""Chunk decoding: decode codes piece by piece so that the pieces join into the one-pass decode.

MusicGen's 32 kHz EnCodec decoder is a convolution, then an LSTM, then a stack
of (transposed) convolutions. The first convolution looks 3 frames ahead, the
LSTM carries its state from chunk to chunk, and the convolutions after it reach
less than 3 frames either side: so :class:`ChunkDecoder` holds back the last 6
frames (0.12 s) until their right context exists, re-runs a few frames of left
context, and gives the same samples as the one-pass decode up to float
rounding. A decoder of another shape falls back to decoding each chunk with a
fixed left and right context (``method="context"``).

Examples
--------
>>> import numpy as np
>>> x = np.sin(np.arange(1000) / 10)
>>> snr_db(x, x) == float("inf")
True
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._util.checks import check_int
from ..engine.precision import exact_convolutions
from ..engine.threads import fixed

if TYPE_CHECKING:
    from typing import Any

    from numpy.typing import ArrayLike

__all__ = ["ChunkDecoder", "check_threads", "snr_db"]


def _threads(n: int | None):
    """Run torch ops with ``n`` intra-op threads, counted as a decode (no thread tuner acts)."""
    return fixed(n)


def _seanet_reach(layers) -> float | None:
    """Frames of context each side that the layers after the LSTM need.

    None when a layer is of a kind this module does not know (then use ``context``).
    """
    from transformers.models.encodec.modeling_encodec import (
        EncodecConv1d,
        EncodecConvTranspose1d,
        EncodecResnetBlock,
    )

    rate = 1  # samples per frame at the current layer
    reach = 0.0
    for layer in layers:
        if isinstance(layer, torch.nn.ELU):
            continue
        if isinstance(layer, EncodecConvTranspose1d):
            k, st = layer.conv.kernel_size[0], layer.conv.stride[0]
            reach += math.ceil(k / st) / rate
            rate *= st
        elif isinstance(layer, EncodecConv1d):
            if int(layer.stride) != 1 or getattr(layer, "norm_type", "") != "weight_norm":
                return None
            reach += (int(layer.kernel_size) // 2) / rate
        elif isinstance(layer, EncodecResnetBlock):
            for sub in layer.block:
                if isinstance(sub, EncodecConv1d):
                    reach += (int(sub.kernel_size) // 2) / rate
                elif not isinstance(sub, torch.nn.ELU):
                    return None
            if not isinstance(layer.shortcut, torch.nn.Identity):
                reach += (int(layer.shortcut.kernel_size) // 2) / rate
        else:
            return None
    return reach


class ChunkDecoder:
    """Decode codes piece by piece so that the pieces join into the one-pass decode.

    Feed frames with :meth:`push` as they become known and take the audio that
    is ready with :meth:`pull`; ``pull(final=True)`` flushes the tail.

    Parameters
    ----------
    s : MusicGen
    method : {"auto", "exact", "context"}
        ``"exact"`` carries the LSTM state and re-runs only the few frames the
        convolutions need (MusicGen's EnCodec); ``"context"`` decodes each piece
        whole with ``left``/``right`` frames of context; ``"auto"`` picks
        ``"exact"`` when the codec has the expected layers.
    left, right : int
        Context frames of the ``"context"`` method.
    threads : int or None
        Intra-op threads for decoding (this thread only); None keeps torch's.

    Attributes
    ----------
    hold : int
        Frames held back until their right context exists.
    overlap_frames : int
        Frames decoded more than once so far (the cost of the overlap).
    seconds : float
        Time spent decoding so far.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 60))
    >>> d = ChunkDecoder(s)
    >>> d.push(codes[..., :30]); a = d.pull()
    >>> d.push(codes[..., 30:]); b = d.pull(final=True)
    >>> joined = np.concatenate([a, b], axis=-1)
    >>> joined.shape, snr_db(s.decode(codes), joined) > 60
    ((1, 1, 38400), True)
    """

    def __init__(
        self,
        s: Any,
        *,
        method: str = "auto",
        left: int = 50,
        right: int = 5,
        threads: int | None = None,
    ) -> None:
        if method not in ("auto", "exact", "context"):
            raise ValueError(f"method must be 'auto', 'exact' or 'context', got {method!r}")
        codec = s.model.audio_encoder
        self.s = s
        self.codec = codec
        self.hop = int(s.hop_length)
        self.channels = int(s.audio_channels)
        self.threads = check_threads(threads)
        self.codes = None  # [B, K, n] int64 tensor of every frame pushed
        self.emitted = 0  # frames whose audio was pulled
        self.overlap_frames = 0
        self.seconds = 0.0  # time spent decoding
        layers = list(codec.decoder.layers)
        reach = None
        if method != "context":
            from transformers.models.encodec.modeling_encodec import EncodecConv1d, EncodecLSTM

            ok = (
                len(layers) > 2
                and isinstance(layers[0], EncodecConv1d)
                and int(layers[0].stride) == 1
                and isinstance(layers[1], EncodecLSTM)
            )
            reach = _seanet_reach(layers[2:]) if ok else None
            if method == "exact" and reach is None:
                raise ValueError(
                    "method='exact' needs EnCodec's conv + LSTM + conv-stack decoder; "
                    "this codec has other layers, use method='context'"
                )
        self.method = "exact" if reach is not None else "context"
        if self.method == "exact":
            pad = int(layers[0].padding_total)
            self.pre_right = pad // 2  # frames the first conv looks ahead
            self.pre_left = pad - self.pre_right
            self.post = int(math.ceil(reach))  # frames of context after the LSTM
            self.hold = self.pre_right + self.post
            self.lstm_out = None  # per channel: [B, D, m] LSTM outputs so far
            self.state = [None] * self.channels
            self.lstm_done = 0
            self.lstm_off = 0  # absolute frame of lstm_out[c][..., 0]
        else:
            self.left, self.right = int(left), int(right)
            self.hold = self.right

    @property
    def frames(self) -> int:
        """Frames pushed so far.

        Examples
        --------
        >>> import numpy as np, musicgen_nb as mg
        >>> d = ChunkDecoder(mg.load("tiny"))
        >>> d.push(np.zeros((1, 4, 30), dtype=int)); d.frames
        30
        """
        return 0 if self.codes is None else int(self.codes.shape[-1])

    def push(self, codes: ArrayLike) -> None:
        """Append frames ``[B, K, n]`` (numpy or torch, int)."""
        c = torch.as_tensor(codes).to(self.codec.device, torch.long)
        self.codes = c if self.codes is None else torch.cat([self.codes, c], dim=-1)

    def ready(self, final: bool = False) -> int:
        """Frames whose audio :meth:`pull` would give now.

        Examples
        --------
        >>> import numpy as np, musicgen_nb as mg
        >>> d = ChunkDecoder(mg.load("tiny"))
        >>> d.push(np.zeros((1, 4, 30), dtype=int))
        >>> d.ready() == 30 - d.hold, d.ready(final=True)
        (True, 30)
        """
        return self.frames if final else max(self.emitted, self.frames - self.hold)

    def pull(self, final: bool = False) -> np.ndarray:
        """The audio ``[B, C, samples]`` of the frames ready since the last pull.

        ``final=True`` decodes up to the last frame pushed (the clip's end).
        """
        end = self.ready(final)
        if end <= self.emitted or self.codes is None:
            b = 0 if self.codes is None else self.codes.shape[0]
            return np.zeros((b, self.channels, 0), dtype=np.float32)
        t0 = time.perf_counter()
        saved = self._state()
        try:
            # TF32 convolutions (cuDNN's default on Ampere+) would break the >= 100 dB promise
            with torch.inference_mode(), _threads(self.threads), exact_convolutions():
                if self.method == "exact":
                    wav = self._exact(self.emitted, end, final)
                else:
                    wav = self._context(self.emitted, end, final)
            out = wav.to("cpu", torch.float32).numpy()
        except BaseException:
            # An interrupt (or error) mid-pull leaves the decoder as it was before the pull,
            # so the same frames can be pulled again and decode to the same audio.
            self._set_state(saved)
            raise
        self.seconds += time.perf_counter() - t0
        self.emitted = end
        return out

    def _state(self) -> tuple:
        """What a pull changes besides ``emitted`` (every update is a reassignment)."""
        if self.method != "exact":
            return (self.overlap_frames,)
        lstm_out = None if self.lstm_out is None else list(self.lstm_out)
        return self.overlap_frames, list(self.state), lstm_out, self.lstm_done, self.lstm_off

    def _set_state(self, saved: tuple) -> None:
        if self.method != "exact":
            (self.overlap_frames,) = saved
            return
        self.overlap_frames, self.state, self.lstm_out, self.lstm_done, self.lstm_off = saved

    # -- exact: first conv with 3 frames of look-ahead, stateful LSTM, conv stack with context
    def _embed(self, c: int, a: int, b: int) -> torch.Tensor:
        sub = self.codes[:, c :: self.channels, a:b]  # [B, k, n]
        return self.codec.quantizer.decode(sub.transpose(0, 1))  # [B, D, n]

    def _exact(self, a: int, b: int, final: bool) -> torch.Tensor:
        layers = self.codec.decoder.layers
        n = self.frames
        lstm_end = n if final else n - self.pre_right
        outs = []
        for c in range(self.channels):
            # 1. new LSTM frames [lstm_done, lstm_end): the first conv sees pre_left/pre_right
            #    frames of real context (reflect padding only at the clip's own edges).
            x0, x1 = self.lstm_done, lstm_end
            if x1 > x0:
                lo, hi = max(0, x0 - self.pre_left), min(n, x1 + self.pre_right)
                h = layers[0](self._embed(c, lo, hi))[..., x0 - lo : x1 - lo]
                self.overlap_frames += (x0 - lo) + (hi - x1) if c == 0 else 0
                seq = h.permute(2, 0, 1)
                y, self.state[c] = layers[1].lstm(seq, self.state[c])
                y = (y + seq).permute(1, 2, 0)
                prev = None if self.lstm_out is None else self.lstm_out[c]
                y = y if prev is None else torch.cat([prev, y], dim=-1)
                if self.lstm_out is None:
                    self.lstm_out = [None] * self.channels
                self.lstm_out[c] = y
            # 2. samples of frames [a, b) from LSTM frames [a - post, b + post).
            off = self.lstm_off
            m = off + self.lstm_out[c].shape[-1]
            lo, hi = max(0, a - self.post), min(m, b + self.post)
            x = self.lstm_out[c][..., lo - off : hi - off]
            for layer in layers[2:]:
                x = layer(x)
            outs.append(x[..., (a - lo) * self.hop : (b - lo) * self.hop])
            if c == 0:
                self.overlap_frames += (a - lo) + (hi - b)
        self.lstm_done = max(self.lstm_done, lstm_end)
        # LSTM outputs before the next piece's left context are no longer needed.
        drop = max(0, b - self.post) - self.lstm_off
        if drop > 0:
            self.lstm_out = [y[..., drop:] for y in self.lstm_out]
            self.lstm_off += drop
        return torch.cat(outs, dim=1)

    # -- context: decode [a - left, b + right) whole and keep [a, b)
    def _context(self, a: int, b: int, final: bool) -> torch.Tensor:
        from ..tokens import decode

        lo, hi = max(0, a - self.left), b if final else min(self.frames, b + self.right)
        self.overlap_frames += (a - lo) + (hi - b)
        wav = decode(self.s, self.codes[..., lo:hi].cpu().numpy())
        return torch.from_numpy(wav[..., (a - lo) * self.hop : (b - lo) * self.hop])


def check_threads(value: object, name: str = "threads") -> int | None:
    """None, or an int from 1 to the CPUs this process may use: a count of intra-op threads.

    The cap is ``len(os.sched_getaffinity(0))`` where there is one (a container or
    ``taskset`` may allow fewer CPUs than ``os.cpu_count()``), else ``os.cpu_count()``.

    Examples
    --------
    >>> check_threads(None) is None, check_threads(1, "decode_threads")
    (True, 1)
    >>> check_threads(0, "decode_threads")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: decode_threads must be an int in [1, ...], got 0; or None (torch's setting)
    """
    if value is None:
        return None
    cap = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        return check_int(value, name, minimum=1, maximum=cap or 1)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err}; or None (torch's setting)") from None


def snr_db(reference: ArrayLike, estimate: ArrayLike) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` in dB, over the whole clip.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(np.arange(1000) / 10)
    >>> round(snr_db(x, x + 0.01 * x), 1)
    40.0
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(
            f"reference and estimate must have one shape, got {ref.shape} and {est.shape}"
        )
    noise = float(np.sum((ref - est) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-30) / noise)
