"""A checked ``generate`` call: :func:`make_request` runs every check before any work.

Types and ranges of every argument (:mod:`.checks`), the negative prompt, the length of
every text, the audio inputs and their rates, the audio prompt against the window, and
the memory the output and the decoder's cache need. The result, a :class:`Request`,
holds every value normalised and nothing computed yet; :func:`musicgen_nb.generation.run`
carries it out. :class:`musicgen_nb.streaming.Stream` makes its request once, up front,
and runs it in its worker.

Examples
--------
>>> import musicgen_nb as mg
>>> req = make_request(mg.load("tiny"), ["jazz", None], duration=1, seed=3)
>>> req.batch, req.seeds, req.new_frames
(2, [3, 4], 50)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_bool, check_sr
from ..conditioning import MAX_TEXT_TOKENS
from ..tokens import num_frames
from .checks import check_hooks, check_prompts, seeds, validate

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

    from numpy.typing import ArrayLike

__all__ = [
    "guidance_branches",
    "Request",
    "audio_input",
    "check_memory",
    "check_negative",
    "check_prompt_length",
    "check_text_lengths",
    "make_request",
    "prompt_frames",
]


@dataclass
class Request:
    """A checked ``generate`` call: every value normalised, nothing computed yet.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> req = make_request(mg.load("tiny"), ["jazz", "rock"], duration=2, seed=1)
    >>> req.opts["duration"], req.batch
    (2.0, 2)
    """

    texts: list
    negative: list | None
    opts: dict
    seeds: list  # one per item
    new_frames: int
    melody: np.ndarray | None  # [B or 1, C, N], as given (not resampled)
    melody_sr: int | None
    audio_prompt: np.ndarray | None  # [B or 1, C, N], as given (not resampled)
    audio_prompt_sr: int | None
    progress: bool
    trace: bool
    attentions: bool
    attention: dict
    callback: object
    stop: object
    on_frames: object = None  # on_frames(start, codes): see generation.loop.run_window

    @property
    def batch(self) -> int:
        """Number of batch items (prompts)."""
        return len(self.texts)


def make_request(
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
    on_frames: Callable[..., Any] | None = None,
) -> Request:
    """Check every argument by type and range, and every input size, before any work.

    Parameters
    ----------
    s : MusicGen
    prompts, **options
        Every argument of :func:`musicgen_nb.generation.generate`, with its defaults.
    on_frames : callable, optional
        ``on_frames(start, codes)`` with a window's first output frame and its frames
        complete in every codebook so far, ``[B, K, n]`` (see
        :func:`musicgen_nb.generation.loop.run_window`). Streaming uses it.

    Returns
    -------
    Request

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> make_request(mg.load("tiny"), "jazz", duration=0.01)
    Traceback (most recent call last):
    ...
    ValueError: duration must be at least one frame (0.02 s at 50 frames/s), got 0.01
    """
    texts = check_prompts(prompts)
    opts = validate(
        s, duration=duration, guidance_scale=guidance_scale, temperature=temperature,
        top_k=top_k, top_p=top_p, do_sample=do_sample, seed=seed, cfg_coef_beta=cfg_coef_beta,
        extend_stride=extend_stride,
    )  # fmt: skip
    progress = check_bool(progress, "progress")
    trace = check_bool(trace, "trace")
    attentions = check_bool(attentions, "attentions")
    check_hooks(callback, stop)
    batch = len(texts)
    negative = check_negative(negative_prompt, batch, opts["guidance_scale"])
    check_text_lengths(s, texts + (negative or []))
    melody, melody_sr, audio_prompt, audio_prompt_sr = _check_audio(
        s, opts, batch, melody, melody_sr, audio_prompt, audio_prompt_sr
    )
    new_frames = num_frames(opts["duration"], frame_rate=s.frame_rate)
    known = 0 if audio_prompt is None else prompt_frames(s, audio_prompt.shape[-1], audio_prompt_sr)
    attention = dict(layers=attention_layers, heads=attention_heads, budget_mb=attention_budget_mb)
    check_memory(
        s, batch, known + new_frames, opts["duration"], known=known,
        branches=guidance_branches(opts["guidance_scale"], opts["cfg_coef_beta"]),
        attention=_capture_bytes(s, batch, known + new_frames, attention) if attentions else 0,
    )  # fmt: skip
    return Request(
        texts=texts, negative=negative, opts=opts, seeds=seeds(seed, batch), new_frames=new_frames,
        melody=melody, melody_sr=melody_sr, audio_prompt=audio_prompt,
        audio_prompt_sr=audio_prompt_sr, progress=progress, trace=trace, attentions=attentions,
        attention=attention, callback=callback, stop=stop, on_frames=on_frames,
    )  # fmt: skip


def _check_audio(s, opts, batch, melody, melody_sr, audio_prompt, audio_prompt_sr):
    """The melody and the audio prompt with their rates, checked against the model."""
    if opts["cfg_coef_beta"] is not None and opts["guidance_scale"] <= 1:
        raise ValueError("cfg_coef_beta needs guidance_scale > 1")
    if melody is not None and not s.is_melody:
        raise ValueError(
            f"melody= needs a melody checkpoint ('melody', 'tiny-melody'); {s.name!r} is a text-only model"
        )
    melody, melody_sr = audio_input(melody, melody_sr, "melody", batch)
    audio_prompt, audio_prompt_sr = audio_input(
        audio_prompt, audio_prompt_sr, "audio_prompt", batch
    )
    if audio_prompt is not None:
        check_prompt_length(s, audio_prompt.shape[-1], audio_prompt_sr)
    return melody, melody_sr, audio_prompt, audio_prompt_sr


def check_negative(negative_prompt, batch: int, guidance_scale: float) -> list | None:
    """The negative prompt, one per item; it needs guidance (it replaces the unconditional branch).

    Examples
    --------
    >>> check_negative("drums", 2, 3.0)
    ['drums', 'drums']
    """
    if negative_prompt is None:
        return None
    negative = check_prompts(negative_prompt, "negative_prompt")
    if len(negative) == 1:
        negative = negative * batch
    if len(negative) != batch:
        raise ValueError(
            f"negative_prompt must be one text or {batch} (one per prompt), got {len(negative)}"
        )
    if guidance_scale <= 1:
        raise ValueError(
            "negative_prompt needs guidance_scale > 1: it replaces the unconditional branch"
        )
    return negative


def check_text_lengths(s, texts) -> None:
    """Refuse a text longer than :data:`~musicgen_nb.conditioning.MAX_TEXT_TOKENS` before the encoder sees it.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> check_text_lengths(mg.load("tiny"), ["jazz", None])
    """
    for i, text in enumerate(texts):
        if text is None:
            continue
        # A token covers at least one character, so a long enough text needs no tokenizing.
        if len(text) > MAX_TEXT_TOKENS * 64:
            count = f"{len(text):,} characters"
        else:
            n = len(s.processor.tokenizer(text).input_ids)
            if n <= MAX_TEXT_TOKENS:
                continue
            count = f"{n:,} tokens"
        raise ValueError(
            f"prompt {i} is {count} long ({text[:30]!r}...); the text encoder takes at most "
            f"{MAX_TEXT_TOKENS} tokens (about 2,000 characters). Shorten it."
        )


def audio_input(audio, sr, name: str, batch: int):
    """Check an audio argument and its rate together; return ``([B, C, N] float32, sr)``.

    Examples
    --------
    >>> import numpy as np
    >>> arr, sr = audio_input(np.zeros(3200), 32000, "melody", 1)
    >>> arr.shape, sr
    ((1, 1, 3200), 32000)
    """
    from ..audio import as_batch

    if audio is None:
        if sr is not None:
            raise ValueError(f"{name}_sr was given without {name}=")
        return None, None
    if sr is None:
        raise ValueError(f"{name}_sr is required with {name}= (the {name}'s sample rate in Hz)")
    sr = check_sr(sr, f"{name}_sr")
    arr = as_batch(audio, name=name)
    if arr.shape[0] not in (1, batch):
        raise ValueError(f"{name} has {arr.shape[0]} items but there are {batch} prompts")
    return arr, sr


def prompt_frames(s, samples: int, sr: int) -> int:
    """Frames of an audio prompt of ``samples`` at ``sr``, computed without resampling it.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> prompt_frames(mg.load("tiny"), 8000, 16000)  # 0.5 s
    25
    """
    resampled = samples if sr == s.sample_rate else round(samples * s.sample_rate / sr)
    return math.ceil(resampled / s.hop_length)


def check_prompt_length(s, samples: int, sr: int) -> None:
    """The prompt must fit the window: judged from samples / sr, before resampling.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> check_prompt_length(mg.load("tiny"), 32000, 32000)  # 1 s in a 4 s window
    """
    if prompt_frames(s, samples, sr) < s.max_frames:
        return
    raise ValueError(
        f"audio_prompt is {samples / sr:.2f} s ({samples} samples at audio_prompt_sr={sr} Hz) "
        f"but the model's window is {s.max_duration:g} s; give a prompt shorter than "
        f"{s.max_duration:g} s (e.g. its last {s.max_duration / 2:g} s), and check audio_prompt_sr"
    )


def _capture_bytes(s, batch: int, frames: int, attention: dict) -> int:
    """Device bytes of an attention capture: the estimate twice (torch.cat copies it to the host)."""
    from ..attention import plan_capture

    frames = min(frames, s.max_frames)  # the first window only
    spec = dict(attention, batch=batch, frames=frames)
    return int(2 * plan_capture(s, **spec)["estimate"]["total_mb"] * 1e6)


def guidance_branches(guidance_scale: float, cfg_coef_beta: float | None = None) -> int:
    """Rows per prompt the decoder runs: conditional, unconditional with guidance, a third with beta.

    Examples
    --------
    >>> guidance_branches(1.0), guidance_branches(3.0), guidance_branches(3.0, 1.0)
    (1, 2, 3)
    """
    guided = guidance_scale > 1
    return 1 + guided + (guided and cfg_coef_beta is not None)


def check_memory(
    s, batch: int, frames: int, duration: float, *, known: int = 0, branches: int = 2,
    attention: int = 0,
) -> None:  # fmt: skip
    """Refuse a call that cannot fit in memory, naming the longest duration or batch that can.

    ``frames`` counts the audio prompt's ``known`` frames; the duration named
    excludes them. ``branches`` is :func:`guidance_branches`; ``attention`` the bytes
    of an attention capture (``attentions=True``).

    On the device: one window's key/value cache, the activations and EnCodec's
    decode (:func:`musicgen_nb.engine.memory.call_bytes`), against its free memory
    (the weights are already there). On the host: the float32 audio three times
    (decoded pieces, their concatenation, the trimmed copy). On the CPU both share
    the host's memory.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> check_memory(mg.load("tiny"), 1, 100, 2.0)
    """
    from .._util.memory import available_bytes
    from ..engine.memory import call_bytes, device_free

    audio = 3 * batch * s.audio_channels * frames * s.hop_length * 4
    device = call_bytes(s, batch, frames, branches=branches, attention=attention)["total"]
    free = device_free(s.device)
    if s.device.type == "cpu":
        audio, device = 0, device + audio
    elif (host := available_bytes()) is not None and audio > host:
        raise ValueError(
            f"duration={duration:g} s for {batch} prompt(s) needs about {audio / 1e9:.1f} GB of "
            f"host memory for the audio but only {host / 1e9:.1f} GB is available; ask for a "
            "shorter duration or fewer prompts"
        )
    if free is None or device <= free:
        return
    raise ValueError(
        _refusal(s, (batch, frames, known, branches, attention), duration, device, free)
    )


def _refusal(s, call: tuple, duration: float, need: int, free: int) -> str:
    """What a call that cannot fit needs, what is free, and the largest call that fits."""
    from ..engine.memory import largest_fit

    where = "memory" if s.device.type == "cpu" else f"{s.device.type} memory"
    # On the CPU the output audio (3 float32 copies) shares the same memory.
    audio = 3 * s.audio_channels * s.hop_length * 4 if s.device.type == "cpu" else 0
    batch, frames, known, branches, attention = call
    room = free - attention  # a capture for a shorter call is smaller: this stays on the safe side
    longest, widest = largest_fit(s, batch, frames, room, branches=branches, per_frame=audio)
    fits = []
    if longest > known:  # the audio prompt's frames are not part of the duration
        fits.append(f"at most {(longest - known) / s.frame_rate:g} s for {batch} prompt(s)")
    if widest and widest < batch:
        fits.append(f"at most {widest} prompt(s) of {duration:g} s")
    hint = " or ".join(fits) if fits else "no call of this model: free memory or load a smaller one"
    return (
        f"duration={duration:g} s for {batch} prompt(s) needs about {need / 1e9:.2f} GB of "
        f"{where} (key/value cache, activations, audio) but only {free / 1e9:.2f} GB is available; "
        f"the estimate fits {hint}. Ask for a shorter duration or fewer prompts"
    )
