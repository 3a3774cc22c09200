"""The decode loop of one window over the delay pattern, and the progress bar over all windows.

Position 0 of every codebook is the special BOS token, and codebook ``k``'s frame ``t``
sits at position ``t + delay[k] + 1`` (:func:`musicgen_nb.patterns.codebook_delays`);
decode step ``t`` predicts position ``t + 1``. Known frames (an audio prompt, or the
previous window's tail) are forced, not sampled.

Examples
--------
>>> import torch, musicgen_nb as mg
>>> from musicgen_nb.conditioning import conditioning
>>> from musicgen_nb.engine import Sampler
>>> s = mg.load("tiny")
>>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
>>> gen = [torch.Generator().manual_seed(0)]
>>> codes, steps, stopped, _ = run_window(
...     s, cond, batch=1, prefix=None, frames=10, sampler=Sampler(), generator=gen,
...     progress=Progress(13, False, None), trace=None, capture=None, stop=None)
>>> tuple(codes.shape), steps, stopped
((1, 4, 10), 13, False)
"""

from __future__ import annotations

import torch

from ..engine import Conditioning, Decoder, Sampler, StepRecord, guide, record, sample, warp
from ..engine.static import make_decoder
from ..patterns import codebook_delays

__all__ = ["Progress", "run_window"]


class Progress:
    """tqdm.auto over every decode step of every window, plus an optional callback.

    Examples
    --------
    >>> bar = Progress(2, False, lambda done, total: print(done, total))
    >>> bar.update(); bar.update(); bar.close()
    1 2
    2 2
    """

    def __init__(self, total: int, enabled: bool, callback):
        self.callback = callback
        self.done = 0
        self.total = total
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", desc="generating", leave=False)

    def update(self):
        """One step done: advance the bar and call the callback."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self):
        """Close the bar (if any)."""
        if self.bar is not None:
            self.bar.close()


def _start(s, batch: int, prefix, frames: int, delay: list[int]):
    """The window's sequence (special tokens, the prefix in place) and which positions are known."""
    K, length = s.num_codebooks, frames + max(delay) + 1  # BOS + delayed frames
    seq = torch.full((batch, K, length), s.special_id, dtype=torch.long, device=s.device)
    known = torch.zeros((K, length), dtype=torch.bool, device=s.device)
    P = 0 if prefix is None else prefix.shape[-1]
    for k, d in enumerate(delay):
        if P:
            seq[:, k, d + 1 : d + 1 + P] = prefix[:, k]
        known[k, : d + 1] = True  # BOS pad
        known[k, d + 1 + frames :] = True  # end pad
        known[k, d + 1 : d + 1 + P] = True
    return seq, known, P


def _frames(seq: torch.Tensor, delay: list[int], n: int) -> torch.Tensor:
    """The first ``n`` frames of every codebook, de-delayed: ``[B, K, n]``."""
    return torch.stack([seq[:, k, d + 1 : d + 1 + n] for k, d in enumerate(delay)], dim=1)


def run_window(
    s,
    cond: Conditioning,
    *,
    batch: int,
    prefix: torch.Tensor | None,
    frames: int,
    sampler: Sampler,
    generator,
    progress: Progress,
    trace: StepRecord | None,
    capture,
    stop,
    on_frames=None,
) -> tuple[torch.Tensor, int, bool, Decoder]:
    """Decode one window of ``frames`` frames over the delay pattern.

    ``prefix`` ``[B, K, P]`` holds known frames (audio prompt or the previous
    window's tail). Position 0 of every codebook is the special BOS token, and
    codebook k's frame t sits at position ``t + delay[k] + 1``; step ``t``
    predicts position ``t + 1``. Returns the codes ``[B, K, frames_done]``, the
    number of steps run, whether it was interrupted, and the decoder (for captures).
    ``on_frames(codes)`` (streaming) gets the window's frames that are complete in
    every codebook, ``[B, K, n]``: once with the prefix, then whenever ``n`` grows.
    (See the module's Examples.)
    """
    delay = codebook_delays(s.num_codebooks, s.audio_channels)
    D = max(delay)
    seq, known, P = _start(s, batch, prefix, frames, delay)
    decoder = make_decoder(s.model, cond, seq.shape[-1], capture=capture, step=s.step)
    first = P + 1  # first position whose codebook-0 token is unknown
    steps_total = seq.shape[-1] - 1
    rows = cond.hidden.shape[0]

    def feed(tokens):
        return decoder.step(tokens.repeat(cond.branches, 1, 1) if rows != batch else tokens)

    interrupted, done = False, 0
    if on_frames is not None:
        on_frames(_frames(seq, delay, P))
    try:
        logits = feed(seq[:, :, :first])
        for t in range(first - 1, steps_total):
            if stop is not None and stop.is_set():
                interrupted = True
                break
            guided, c, u = guide(logits.float(), batch, sampler)  # guidance and sampling in fp32
            tokens, probs = sample(warp(guided, sampler), sampler, generator)
            pos = t + 1
            new = torch.where(known[:, pos][None, :], seq[:, :, pos], tokens)
            seq[:, :, pos] = new
            if trace is not None:
                record(trace, probs, new, c, u, sampler.temperature)
            done = t + 1
            if on_frames is not None and P < pos - D <= frames:
                on_frames(_frames(seq, delay, pos - D))  # frame f is complete at f + D + 1
            progress.update()
            if pos < steps_total:
                logits = feed(new[:, :, None])
    except KeyboardInterrupt:
        interrupted = True
    finally:
        decoder.finish()  # the thread count it found, also after a stop or an exception
    # Frames complete in every codebook: frame f needs position f + D + 1.
    complete = frames if not interrupted else max(P, min(frames, done - D))
    return _frames(seq, delay, complete), done - (first - 1), interrupted, decoder
