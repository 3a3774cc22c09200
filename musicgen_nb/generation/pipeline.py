"""``generate`` is ``run(s, make_request(s, prompts, **options))``.

:func:`make_request` checks everything before any work; :func:`run` plans the windows,
encodes the inputs, decodes every window and assembles the :class:`Generation`.
Streaming makes its request once and calls :func:`run` in its worker thread.

Examples
--------
>>> import musicgen_nb as mg
>>> from musicgen_nb.generation import make_request
>>> s = mg.load("tiny")
>>> run(s, make_request(s, "jazz", duration=1, seed=1, progress=False)).codes.shape
(1, 4, 50)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..engine.memory import OutOfMemory, oom_message, release
from .decode import assemble
from .request import Request, make_request
from .result import Generation
from .windows import inputs, plan, run_windows

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

    from numpy.typing import ArrayLike

__all__ = ["generate", "run"]

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def run(s: Any, req: Request) -> Generation:
    """Carry out a checked request: plan, inputs, the windows, then decode and assemble.

    Parameters
    ----------
    s : MusicGen
    req : Request
        From :func:`musicgen_nb.generation.make_request` (made for ``s``).

    Returns
    -------
    Generation

    Raises
    ------
    musicgen_nb.engine.memory.OutOfMemory
        When the device runs out of memory: the message says what fits,
        ``err.partial`` is the Generation of the windows done (or None), and
        ``err.codes`` their codes on the CPU (all of them when only EnCodec's final
        decode ran out).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.generation import make_request
    >>> s = mg.load("tiny")
    >>> req = make_request(s, ["a", "b"], duration=0.5, seed=[1, 2], progress=False)
    >>> run(s, req).seed
    [1, 2]
    """
    if not isinstance(req, Request):
        raise TypeError(
            f"req must be a Request from make_request(s, prompts, ...), got {type(req).__name__}"
        )
    p = plan(s, req)
    got, p = inputs(s, req, p)
    done = run_windows(s, req, p, got)
    if done.oom is None:
        try:
            g = assemble(s, req, p, got, done)
        except _OOM:  # EnCodec's final decode: the codes are done, keep them
            done.oom = "out of memory in EnCodec's final decode (the codes are kept in err.codes)"
            done.oom += "; " + oom_message(s, req.batch, req.opts["duration"])
        else:
            release(s.device)  # only where torch keeps a lot cached (see release)
            return g
        partial = None
    else:
        partial = _partial(s, req, p, got, done)
    msg, codes = done.oom, None if done.codes is None else done.codes.cpu()
    done = None  # no decoder, cache or traceback left: release() frees them all
    release(s.device, force=True)
    raise OutOfMemory(msg, partial, codes=codes)  # outside any except: no traceback into the loop


def _partial(s, req: Request, p, got, done) -> Generation | None:
    """The Generation of the windows finished before running out of memory, if any."""
    if not done.window_codes:
        return None
    try:
        return assemble(s, req, p, got, done)
    except _OOM:  # even the codec's decode does not fit: the codes stay in done.codes
        return None


def generate(
    s: Any,
    prompts: str | list[str | None] | None = None,
    *,
    duration: float = 8.0,
    guidance_scale: float = 3.0,
    temperature: float = 1.0,
    top_k: int = 250,
    top_p: float = 0.0,
    do_sample: bool = True,
    seed: int | list[int] | None = None,
    melody: ArrayLike | None = None,
    melody_sr: int | None = None,
    audio_prompt: ArrayLike | None = None,
    audio_prompt_sr: int | None = None,
    negative_prompt: str | list[str | None] | None = None,
    cfg_coef_beta: float | None = None,
    extend_stride: float | None = None,
    progress: bool = True,
    trace: bool = False,
    attentions: bool = False,
    attention_layers: int | list[int] | None = None,
    attention_heads: int | list[int] | None = None,
    attention_budget_mb: float | None = 512.0,
    callback: Callable[..., Any] | None = None,
    stop: threading.Event | None = None,
) -> Generation:
    """Generate music with MusicGen.

    Parameters
    ----------
    s : MusicGen
    prompts : str, list of (str or None), or None
        Text prompt(s); ``None`` (alone or in a list) means unconditional.
    duration : float
        Seconds of new audio, from one frame (0.02 s) to :data:`MAX_DURATION`
        (3 hours). Frames are ``ceil(duration * frame_rate)`` and every
        delay-pattern step is counted inside, so the output is exactly this long.
        Longer than ``s.max_duration`` generates in windows (long-form).
    guidance_scale : float
        Classifier-free guidance, >= 1 (1 turns it off): ``u + scale * (c - u)``.
        Any finite value works; a huge one tends to the argmax of ``c - u``.
    temperature, top_k, top_p, do_sample
        Sampling: temperature > 0 (any finite value; a tiny one tends to argmax);
        top_k >= 0 (0 off); top_p in [0, 1] (0 off).
    seed : int or list of int, optional
        Ints in ``[0, 2**64)``. Same seed, same device: identical codes and audio.
        Each item samples from its own generator, so an item never depends on its
        batch-mates: a list gives one seed per prompt, and an int ``n`` seeds item
        ``i`` with ``n + i`` (item 0 equals the same prompt generated alone with
        ``n``). None draws a fresh ``n``. The seeds are recorded in ``g.seed``.
    melody, melody_sr
        Melody-conditioning audio (melody checkpoints only), any shape that
        :func:`musicgen_nb.audio.as_batch` takes. Its chroma follows the output
        position and loops when the melody is shorter than the output. Only
        the chroma frames the output uses are computed.
    audio_prompt, audio_prompt_sr
        Audio to continue; its codes are the prefix (see ``g.prompt_frames``).
        It must be shorter than the model's window (``s.max_duration``).
    negative_prompt : str or list, optional
        Replaces the unconditional branch of guidance with this text.
    cfg_coef_beta : float, optional
        Melody checkpoints: double guidance (audiocraft), with logits
        ``u + s * (m + beta * (c - m) - u)`` where c is text+melody, m is
        melody-only and u is neither.
    extend_stride : float, optional
        Long-form: seconds of new audio per window (default 60% of the window,
        18 s for 30 s). Each window re-uses the previous window's tail as prompt.
    progress : bool
        tqdm progress bar over decode steps (all windows).
    trace : bool
        Record per-step sampling statistics in ``g.trace``.
    attentions : bool
        Capture cross/self attention (see :mod:`musicgen_nb.attention`).
    attention_layers, attention_heads, attention_budget_mb
        What to capture with ``attentions=True`` (see
        :func:`musicgen_nb.attention.plan_capture`).
    callback : callable, optional
        ``callback(done_steps, total_steps)`` after each step.
    stop : threading.Event, optional
        Anything with ``is_set()``. Set it to stop at the next step; the partial
        result is returned.

    Returns
    -------
    Generation

    Raises
    ------
    TypeError, ValueError
        Before any work, for any bad argument: the message names it, the bad
        value and what is allowed.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> g = s.generate("jazz", duration=2, seed=1, progress=False)
    >>> g.audio.shape, g.codes.shape
    ((1, 1, 64000), (1, 4, 100))
    """
    req = make_request(
        s, prompts, duration=duration, guidance_scale=guidance_scale, temperature=temperature,
        top_k=top_k, top_p=top_p, do_sample=do_sample, seed=seed, melody=melody, melody_sr=melody_sr,
        audio_prompt=audio_prompt, audio_prompt_sr=audio_prompt_sr, negative_prompt=negative_prompt,
        cfg_coef_beta=cfg_coef_beta, extend_stride=extend_stride, progress=progress, trace=trace,
        attentions=attentions, attention_layers=attention_layers, attention_heads=attention_heads,
        attention_budget_mb=attention_budget_mb, callback=callback, stop=stop,
    )  # fmt: skip
    return run(s, req)
