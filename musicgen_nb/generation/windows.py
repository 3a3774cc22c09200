"""Long-form windows: the plan of a call, what the windows condition on, and the run over them.

A call longer than the model's window (``s.max_frames``) is generated in windows; each
window after the first starts with the previous window's tail as its prompt
(``extend_stride`` seconds of new audio per window, 60% of the window by default).
:func:`plan` lays them out and counts the steps, :func:`inputs` encodes the audio
prompt and the melody's chroma, and :func:`run_windows` decodes them one after another
with :func:`musicgen_nb.generation.loop.run_window`.

Examples
--------
>>> import musicgen_nb as mg
>>> from musicgen_nb.generation import make_request
>>> s = mg.load("tiny")  # a 4 s window of 200 frames
>>> p = plan(s, make_request(s, "x", duration=8.0))
>>> p.windows, p.steps
([(0, 200), (120, 320), (200, 400)], 409)
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..conditioning import chroma_start, conditioning, fit_chroma
from ..engine import Conditioning, Sampler, StepRecord, oom_message
from ..engine.memory import device_free, largest_fit, release
from ..engine.static import release as release_static
from ..patterns import codebook_delays
from .loop import Progress, run_window
from .request import Request, guidance_branches, prompt_frames

__all__ = ["Inputs", "Plan", "Run", "inputs", "plan", "run_windows", "spans", "window_conditioning"]


@dataclass
class Plan:
    """Frame ranges ``[start, end)`` of each window and what the run will cost.

    Examples
    --------
    >>> Plan(windows=[(0, 50)], prompt_frames=0, total_frames=50, steps=53, capture=None).steps
    53
    """

    windows: list
    prompt_frames: int
    total_frames: int
    steps: int
    capture: dict | None


def spans(s, total_frames: int, extend_stride: float | None) -> list[tuple[int, int]]:
    """Windows over the output; each after the first re-uses the tail before its ``start``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> spans(mg.load("tiny"), 300, 2.0)
    [(0, 200), (100, 300)]
    """
    window = s.max_frames
    stride_s = extend_stride or 0.6 * s.max_duration
    stride = max(1, min(window - 1, int(round(stride_s * s.frame_rate))))
    out = [(0, min(total_frames, window))]
    while out[-1][1] < total_frames:
        end = min(total_frames, out[-1][1] + stride)
        out.append((end - window if end - window > 0 else 0, end))
    return out


def plan(s, req: Request, known_frames: int | None = None) -> Plan:
    """Lay out the windows of ``req``, count its decode steps and plan the attention capture.

    ``known_frames`` are the audio prompt's frames when known (after encoding it);
    None counts them from its samples and rate. (See the module's Examples.)
    """
    P = known_frames or 0
    if known_frames is None and req.audio_prompt is not None:
        P = prompt_frames(s, req.audio_prompt.shape[-1], req.audio_prompt_sr)
    total = P + req.new_frames
    windows = spans(s, total, req.opts["extend_stride"])
    D = max(codebook_delays(s.num_codebooks, s.audio_channels))
    steps = 0
    for i, (start, end) in enumerate(windows):
        known = P if i == 0 else windows[i - 1][1] - start
        steps += (end - start) + D - known
    capture = None
    if req.attentions:
        from .. import attention

        text_len = s.processor.tokenizer(
            [t or "" for t in req.texts + (req.negative or [])], padding=True
        ).input_ids
        capture = attention.plan_capture(
            s, batch=req.batch, frames=min(total, s.max_frames), text_len=len(text_len[0]),
            layers=req.attention["layers"], heads=req.attention["heads"],
            budget_mb=req.attention["budget_mb"],
        )  # fmt: skip
    return Plan(windows=windows, prompt_frames=P, total_frames=total, steps=steps, capture=capture)


@dataclass
class Inputs:
    """What the windows condition on: prompt codes, melody chroma and the sampler.

    Examples
    --------
    >>> from musicgen_nb.engine import Sampler
    >>> Inputs(prefix=None, chroma=None, sampler=Sampler()).sampler.top_k
    250
    """

    prefix: torch.Tensor | None
    chroma: np.ndarray | None
    sampler: Sampler


def inputs(s, req: Request, p: Plan) -> tuple[Inputs, Plan]:
    """Encode the audio prompt, compute the melody chroma, make the sampler.

    Returns the plan too: it is re-made if the prompt's frames differ from the
    count the plan made from samples / sr (a rounding edge).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.generation import make_request
    >>> s = mg.load("tiny")
    >>> req = make_request(s, "x", duration=1, audio_prompt=mg.audio.sine(440, 0.5, 32000),
    ...                    audio_prompt_sr=32000)
    >>> got, p = inputs(s, req, plan(s, req))
    >>> tuple(got.prefix.shape), p.prompt_frames
    ((1, 4, 25), 25)
    """
    prefix = None
    if req.audio_prompt is not None:
        codes_p = s.encode(req.audio_prompt, req.audio_prompt_sr)
        if codes_p.shape[0] == 1 and req.batch > 1:
            codes_p = np.repeat(codes_p, req.batch, axis=0)
        if codes_p.shape[-1] != p.prompt_frames:  # the plan counted frames from samples / sr
            p = plan(s, req, known_frames=codes_p.shape[-1])
        prefix = torch.as_tensor(codes_p, device=s.device)
    chroma = None if req.melody is None else _melody_chroma(s, req, p)
    o = req.opts
    sampler = Sampler(
        guidance_scale=o["guidance_scale"], temperature=o["temperature"], top_k=o["top_k"],
        top_p=o["top_p"], do_sample=o["do_sample"], cfg_coef_beta=o["cfg_coef_beta"],
    )  # fmt: skip
    return Inputs(prefix=prefix, chroma=chroma, sampler=sampler), p


def _melody_chroma(s, req: Request, p: Plan) -> np.ndarray:
    """The melody's chroma ``[B, frames, 12]``: only the frames some window reads."""
    from ..melody import chroma as melody_chroma

    # Up to the last window's start + its length.
    needed = chroma_start(s, p.windows[-1][0]) + s.model.config.chroma_length
    chroma = melody_chroma(req.melody, req.melody_sr, frames=needed, name="melody")
    if chroma.ndim == 2:
        chroma = chroma[None]
    if chroma.shape[0] != req.batch:
        chroma = np.repeat(chroma, req.batch, axis=0)
    return chroma


def window_conditioning(s, req: Request, got: Inputs, start: int) -> Conditioning:
    """The conditioning of the window that starts at output frame ``start``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.engine import Sampler
    >>> from musicgen_nb.generation import make_request
    >>> s = mg.load("tiny")
    >>> got = Inputs(prefix=None, chroma=None, sampler=Sampler())
    >>> window_conditioning(s, make_request(s, "x", duration=1), got, 0).branches
    2
    """
    chroma = None
    if got.chroma is not None:
        chroma = fit_chroma(got.chroma, s.model.config.chroma_length, chroma_start(s, start))
    return conditioning(
        s, req.texts, negative=req.negative, guidance_scale=got.sampler.guidance_scale,
        melody_chroma=chroma, cfg_coef_beta=got.sampler.cfg_coef_beta,
    )  # fmt: skip


@dataclass
class Run:
    """What the windows produced.

    ``captured`` holds the attention captured in the first window (an
    :class:`~musicgen_nb.attention.Attentions`, collected as that window ends, so
    no decoder outlives its window); ``oom`` is the out-of-memory message when the
    run ran out of memory.

    Examples
    --------
    >>> Run(codes=None, windows=[], window_codes=[], interrupted=False, timings={},
    ...     record=None, captured=None).interrupted
    False
    """

    codes: torch.Tensor | None
    windows: list
    window_codes: list
    interrupted: bool
    timings: dict
    record: StepRecord | None
    captured: Any  # the first window's Attentions, when capturing
    oom: str | None = None


def run_windows(s, req: Request, p: Plan, got: Inputs) -> Run:
    """Decode every window of the plan in order; a stop or KeyboardInterrupt keeps what is done.

    One key/value cache is alive at a time: a window's decoder is dropped before
    the next is built (captured attention is collected first). On an
    out-of-memory error the run stops like an interrupt, keeping the windows done,
    and ``run.oom`` says what fits; the error and its traceback (which hold the
    decoder) are dropped and the cache freed before :func:`~musicgen_nb.generation.run`
    raises :class:`~musicgen_nb.engine.memory.OutOfMemory`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.generation import make_request
    >>> s = mg.load("tiny")
    >>> req = make_request(s, "x", duration=1, seed=0, progress=False)
    >>> p = plan(s, req)
    >>> run = run_windows(s, req, p, inputs(s, req, p)[0])
    >>> tuple(run.codes.shape), run.timings["steps"], run.captured
    ((1, 4, 50), 53, None)
    """
    run = Run(
        codes=got.prefix, windows=[], window_codes=[], interrupted=False,
        timings=dict(text_encode_s=0.0, decode_loop_s=0.0, codec_decode_s=0.0, steps=0),
        record=StepRecord() if req.trace else None, captured=None,
    )  # fmt: skip
    bar = Progress(p.steps, req.progress, req.callback)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    failed = False
    try:
        with torch.inference_mode():
            _windows(s, req, p, got, run, bar)
    except KeyboardInterrupt:  # between steps (e.g. while conditioning a window): keep what is done
        run.interrupted = True
        if run.codes is None:  # before the first window's codes: nothing is done (0 frames)
            run.codes = torch.zeros(
                (req.batch, s.num_codebooks, 0), dtype=torch.long, device=s.device
            )
    except oom:  # the traceback holds the failing window's decoder: leave this block first
        failed = True
    finally:
        bar.close()
    if failed:
        run.interrupted, run.captured = True, None
        release_static(s.model)  # the static step's pooled cache, graphs and fused copies
        release(s.device, force=True)
        run.oom = _oom_text(s, req, p.prompt_frames)
    return run


def _oom_text(s, req: Request, known: int) -> str:
    """The out-of-memory message, with what the estimate says fits (``known``: prompt frames)."""
    msg = oom_message(s, req.batch, req.opts["duration"])
    free = device_free(s.device)
    if free is None:
        return msg
    frames = known + round(req.opts["duration"] * s.frame_rate)
    branches = guidance_branches(req.opts["guidance_scale"], req.opts["cfg_coef_beta"])
    longest, widest = largest_fit(s, req.batch, frames, free, branches=branches)
    fits = f" With {free / 1e9:.2f} GB free, the estimate fits "
    new = longest - known  # the audio prompt's frames are not part of the duration
    fits += f"{new / s.frame_rate:g} s for {req.batch} prompt(s)" if new > 0 else "no call"
    fits += f", or {widest} prompt(s) of {req.opts['duration']:g} s." if widest else "."
    return msg + fits


def _windows(s, req: Request, p: Plan, got: Inputs, run: Run, bar: Progress) -> None:
    """The loop of :func:`run_windows`: condition each window, decode it, stitch its codes."""
    generator = [torch.Generator(device=s.device).manual_seed(x) for x in req.seeds]
    for i, (start, end) in enumerate(p.windows):
        t0 = time.perf_counter()
        cond = window_conditioning(s, req, got, start)
        t1 = time.perf_counter()
        pre = None if run.codes is None else run.codes[..., start:]
        hook = None if req.on_frames is None else functools.partial(req.on_frames, start)
        capture = p.capture if i == 0 else None  # attention is captured in the first window only
        out, n_steps, run.interrupted, decoder = run_window(
            s, cond, batch=req.batch, prefix=pre, frames=end - start, sampler=got.sampler,
            generator=generator, progress=bar, trace=run.record,
            capture=capture, stop=req.stop, on_frames=hook,
        )  # fmt: skip
        if capture is not None:  # collected now, so that no decoder outlives its window
            from ..attention import collect

            run.captured = collect(decoder, capture, s, req.texts, cond)
        del decoder  # its cache goes now, before the next window's is allocated
        run.timings["text_encode_s"] += t1 - t0
        run.timings["decode_loop_s"] += time.perf_counter() - t1
        run.timings["steps"] += n_steps
        run.codes = out if run.codes is None else torch.cat([run.codes[..., :start], out], -1)
        run.windows.append((start, start + out.shape[-1]))
        run.window_codes.append(out)
        if run.interrupted:
            break
