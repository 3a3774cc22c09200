"""Generation: parameters, the decode loop over the delay pattern, and the result.

``generate`` turns a request into frames, builds the conditioning (text, melody,
negative prompt), runs :class:`musicgen_nb.engine.Decoder` over the delay
pattern in one or more windows (long-form), and decodes the stitched codes once
with EnCodec. The result is a :class:`Generation`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .engine import Conditioning, Decoder, Sampler, StepRecord, guide, record, sample, warp

_FORMATS = ("wav", "flac")


# --------------------------------------------------------------------------- validation
def _finite_number(name, value, *, allowed):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{name} must be a number ({allowed}), got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number ({allowed}), got {value!r}")
    return value


def validate(
    s,
    *,
    duration,
    guidance_scale,
    temperature,
    top_k,
    top_p,
    do_sample,
    seed,
    cfg_coef_beta,
    extend_stride,
) -> dict:
    """Check every sampling parameter; return them normalised. Errors name the argument."""
    duration = _finite_number("duration", duration, allowed="seconds > 0")
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    guidance_scale = _finite_number(
        "guidance_scale", guidance_scale, allowed=">= 1; 1 turns guidance off"
    )
    if guidance_scale < 1:
        raise ValueError(
            f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale!r}"
        )
    temperature = _finite_number("temperature", temperature, allowed="> 0")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an int >= 0 (0 turns it off), got {top_k!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 turns it off), got {top_k!r}")
    top_p = _finite_number("top_p", top_p, allowed="in [0, 1]; 0 turns it off")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1] (0 turns it off), got {top_p!r}")
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample must be True or False, got {do_sample!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    if cfg_coef_beta is not None:
        if not s.is_melody:
            raise ValueError(
                f"cfg_coef_beta needs a melody checkpoint; {s.name!r} is a text-only model"
            )
        cfg_coef_beta = _finite_number("cfg_coef_beta", cfg_coef_beta, allowed=">= 0")
        if cfg_coef_beta < 0:
            raise ValueError(f"cfg_coef_beta must be >= 0, got {cfg_coef_beta!r}")
    if extend_stride is not None:
        extend_stride = _finite_number("extend_stride", extend_stride, allowed="seconds")
        if not 0 < extend_stride < s.max_duration:
            raise ValueError(
                f"extend_stride must be in (0, {s.max_duration:g}) seconds (the window), got {extend_stride!r}"
            )
    return dict(
        duration=duration, guidance_scale=guidance_scale, temperature=temperature, top_k=int(top_k),
        top_p=top_p, do_sample=do_sample, cfg_coef_beta=cfg_coef_beta, extend_stride=extend_stride,
    )  # fmt: skip


def _prompts(prompts, name="prompts") -> list[str | None]:
    if prompts is None or isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)):
        if not prompts:
            raise ValueError(
                f"{name} must not be an empty list; use None for unconditional generation"
            )
        for p in prompts:
            if p is not None and not isinstance(p, str):
                raise TypeError(f"{name} must be strings or None, got {type(p).__name__} {p!r}")
        return list(prompts)
    raise TypeError(
        f"{name} must be a string, a list of strings/None, or None; got {type(prompts).__name__}"
    )


# --------------------------------------------------------------------------- conditioning
def encode_text(s, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Project texts to decoder states ``[B, S, D]`` and a bool mask ``[B, S]``.

    ``None`` (unconditional) gives zero states and an all-False mask, which is
    what transformers feeds its unconditional branch.
    """
    tok = s.processor.tokenizer
    batch = tok([t or "" for t in texts], padding=True, return_tensors="pt")
    ids = batch.input_ids.to(s.device)
    mask = batch.attention_mask.to(s.device).bool()
    hidden = s.model.text_encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    proj = getattr(s.model, "enc_to_dec_proj", None)
    if (
        proj is not None
        and s.model.text_encoder.config.hidden_size != s.model.decoder.config.hidden_size
    ):
        hidden = proj(hidden)
    none = torch.tensor([t is None for t in texts], device=s.device)
    mask = mask & ~none[:, None]
    hidden = hidden * mask[..., None].to(hidden.dtype)
    return hidden.to(s.dtype), mask


def _null_chroma(s, rows: int) -> torch.Tensor:
    """The melody models' 'no melody' input: pitch class 0 everywhere."""
    chroma = torch.zeros(
        rows, s.model.config.chroma_length, s.model.config.num_chroma, device=s.device
    )
    chroma[..., 0] = 1
    return chroma


def fit_chroma(chroma: np.ndarray, length: int, start: int = 0) -> np.ndarray:
    """Take ``length`` chroma frames from ``start``, looping the melody when it is shorter.

    A melody shorter than what is asked is tiled end to end (it loops), as the
    transformers melody model does with a short melody.
    """
    frames = chroma.shape[-2]
    idx = (np.arange(length) + start) % frames
    return chroma[..., idx, :]


def conditioning(
    s, texts, *, negative, guidance_scale, melody_chroma=None, cfg_coef_beta=None
) -> Conditioning:
    """Build the stacked guidance branches for the decoder.

    Branch order: conditional, [melody-only when ``cfg_coef_beta``], unconditional.
    The unconditional branch is the negative prompt when one is given.
    """
    hidden, mask = encode_text(s, texts)
    batch = len(texts)
    guided = guidance_scale > 1
    branches = [(hidden, mask)]
    if guided and cfg_coef_beta is not None:
        branches.append(encode_text(s, [None] * batch))
    if guided:
        branches.append(
            encode_text(s, negative) if negative is not None else encode_text(s, [None] * batch)
        )
    width = max(h.shape[1] for h, _ in branches)
    hs = torch.cat([F_pad(h, width) for h, _ in branches])
    ms = torch.cat([F_pad(m, width) for _, m in branches])
    if not s.is_melody:
        return Conditioning(hidden=hs, mask=ms, prefix=False, branches=len(branches))
    # Melody: prefix = projected chroma (chroma_length frames) then the text states.
    rows = []
    for i in range(len(branches)):
        null = i == len(branches) - 1 and guided
        if melody_chroma is None or null:
            rows.append(_null_chroma(s, batch))
        else:
            rows.append(torch.as_tensor(melody_chroma, dtype=torch.float32, device=s.device))
    chroma = torch.cat(rows).to(s.dtype)
    proj = getattr(s.model, "audio_enc_to_dec_proj", None)
    audio_states = proj(chroma) if proj is not None else chroma
    return Conditioning(
        hidden=torch.cat([audio_states, hs], dim=1), mask=None, prefix=True, branches=len(branches)
    )


def F_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad dim 1 of ``t`` with zeros (False) to ``width``."""
    extra = width - t.shape[1]
    if extra == 0:
        return t
    pad = torch.zeros((t.shape[0], extra, *t.shape[2:]), dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


# --------------------------------------------------------------------------- result
@dataclass
class Generation:
    """The result of :meth:`MusicGen.generate`.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``[batch, channels, samples]``; audio prompt (if any) then new audio.
    sample_rate : int
    codes : np.ndarray
        int64 ``[batch, num_codebooks, frames]``, de-interleaved.
    prompts : list of str or None
    params : dict
        Every parameter of the call.
    seed : int
    timings : dict
        ``text_encode_s``, ``decode_loop_s``, ``codec_decode_s``, ``steps``, ``steps_per_s``.
    frame_rate : int
    model_name : str
    prompt_frames : int
        Frames of ``codes`` (and ``prompt_frames * hop`` samples of audio) that
        came from the audio prompt.
    interrupted : bool
        True when the run was stopped early; ``codes``/``audio`` hold what was done.
    windows : list of (int, int)
        Frame ranges covered by each window (long-form): a window after the
        first starts with the previous window's tail as its prompt.
    window_codes : list of np.ndarray
        Long-form only: each window's codes ``[B, K, end - start]``, prompt tail included.
    trace : pandas.DataFrame or None
        Per (item, frame, codebook) sampling statistics (``trace=True``), see
        :func:`musicgen_nb.trace.to_frame`.
    attentions : musicgen_nb.attention.Attentions or None
        Captured attention of the first window (``attentions=True``).
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    prompts: list
    params: dict
    seed: int
    timings: dict
    frame_rate: int = 50
    model_name: str = ""
    prompt_frames: int = 0
    interrupted: bool = False
    windows: list = field(default_factory=list)
    window_codes: list = field(default_factory=list, repr=False)
    trace: object = None
    attentions: object = None
    melody_chroma: object = None
    versions: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds of audio held in ``audio``."""
        return self.audio.shape[-1] / self.sample_rate

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __repr__(self) -> str:
        state = ", interrupted" if self.interrupted else ""
        return (
            f"Generation({len(self)} x {self.duration:.2f} s at {self.sample_rate} Hz, "
            f"codes {tuple(self.codes.shape)}, seed={self.seed}, model={self.model_name!r}{state})"
        )

    def _repr_html_(self) -> str:
        from .players import gallery

        return gallery([self])._repr_html_()

    def provenance(self, item: int = 0) -> dict:
        """Everything needed to reproduce batch item ``item``."""
        return dict(
            prompt=self.prompts[item],
            model=self.model_name,
            seed=self.seed,
            params=self.params,
            sample_rate=self.sample_rate,
            frames=int(self.codes.shape[-1]),
            prompt_frames=self.prompt_frames,
            interrupted=self.interrupted,
            versions=self.versions,
            item=item,
        )

    def save(self, directory, fmt: str = "wav", loudness: float | None = None) -> list[Path]:
        """Write one audio file per batch item plus a JSON sidecar of provenance.

        Files are written atomically (temp file, then rename) and never
        overwrite: an existing name gets a ``-1``, ``-2``... suffix.

        Parameters
        ----------
        directory : path
            Created if missing.
        fmt : {"wav", "flac"}
        loudness : float, optional
            Target integrated loudness in LUFS (e.g. -14.0); None keeps the level.

        Returns
        -------
        list of Path
            The audio files; each has ``<name>.json`` beside it.

        Examples
        --------
        >>> import musicgen_nb as mg, tempfile
        >>> g = mg.load("tiny").generate("jazz", duration=1, seed=1, progress=False)
        >>> [p.suffix for p in g.save(tempfile.mkdtemp())]
        ['.wav']
        """
        from . import audio as audio_io

        if fmt not in _FORMATS:
            raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
        if loudness is not None:
            loudness = _finite_number("loudness", loudness, allowed="LUFS, e.g. -14.0")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(self)):
            wav = self.audio[i]
            if loudness is not None:
                wav = audio_io.normalize_loudness(wav, self.sample_rate, loudness)
            stem = _slug(self.prompts[i]) + f"_seed{self.seed}" + (f"_{i}" if len(self) > 1 else "")
            path = audio_io.unique_path(directory / f"{stem}.{fmt}")
            path = audio_io.write(path, wav, self.sample_rate, fmt=fmt)
            meta = self.provenance(i) | dict(
                file=path.name,
                loudness_lufs=loudness,
                sha256=hashlib.sha256(
                    np.ascontiguousarray(wav, dtype=np.float32).tobytes()
                ).hexdigest(),
            )
            _write_json_atomic(path.with_suffix(".json"), meta)
            paths.append(path)
        return paths


def _slug(text: str | None) -> str:
    if not text:
        return "unconditional"
    keep = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in keep:
        keep = keep.replace("--", "-")
    return keep[:40] or "prompt"


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    if path.exists():  # never overwrite a sidecar
        tmp.unlink()
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    os.replace(tmp, path)


def versions() -> dict:
    """Versions of the toolkit and the libraries a result depends on."""
    import transformers

    from . import __version__

    return dict(
        musicgen_nb=__version__, transformers=transformers.__version__, torch=torch.__version__,
        numpy=np.__version__, python=platform.python_version(),
    )  # fmt: skip


# --------------------------------------------------------------------------- decode loop
class _Progress:
    """tqdm.auto over every decode step of every window, plus an optional callback."""

    def __init__(self, total: int, enabled: bool, callback):
        self.callback = callback
        self.done = 0
        self.total = total
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", desc="generating", leave=False)

    def update(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def num_frames(duration: float, frame_rate: int) -> int:
    """Frames needed for ``duration`` seconds (ceil, tolerant of float error)."""
    return max(1, math.ceil(duration * frame_rate - 1e-6))


def delays(s) -> list[int]:
    """The delay of each codebook: k for mono; stereo checkpoints interleave
    left/right codebooks, so codebooks 2c and 2c+1 are both delayed by c."""
    if s.audio_channels == 2:
        return [k // 2 for k in range(s.num_codebooks)]
    return list(range(s.num_codebooks))


def run_window(
    s,
    cond: Conditioning,
    *,
    batch: int,
    prefix: torch.Tensor | None,
    frames: int,
    sampler: Sampler,
    generator,
    progress: _Progress,
    trace: StepRecord | None,
    capture,
    stop,
    _on_frames=None,
) -> tuple[torch.Tensor, int, bool, Decoder]:
    """Decode one window of ``frames`` frames over the delay pattern.

    ``prefix`` ``[B, K, P]`` holds known frames (audio prompt or the previous
    window's tail). Position 0 of every codebook is the special BOS token, and
    codebook k's frame t sits at position ``t + delay[k] + 1``; step ``t``
    predicts position ``t + 1``. Returns the codes ``[B, K, frames_done]``, the
    number of steps run, whether it was interrupted, and the decoder (for captures).
    ``_on_frames(codes)`` (private, for streaming) gets the window's frames that
    are complete in every codebook, ``[B, K, n]``: once with the prefix, then
    whenever ``n`` grows.
    """
    K = s.num_codebooks
    delay = delays(s)
    D = max(delay)
    special = s.special_id
    length = frames + D + 1  # BOS + delayed frames
    seq = torch.full((batch, K, length), special, dtype=torch.long, device=s.device)
    known = torch.zeros((K, length), dtype=torch.bool, device=s.device)
    P = 0 if prefix is None else prefix.shape[-1]
    for k, d in enumerate(delay):
        if P:
            seq[:, k, d + 1 : d + 1 + P] = prefix[:, k]
        known[k, : d + 1] = True  # BOS pad
        known[k, d + 1 + frames :] = True  # end pad
        known[k, d + 1 : d + 1 + P] = True
    decoder = Decoder(s.model, cond, max_len=length, capture=capture)
    rows = cond.hidden.shape[0]
    first = P + 1  # first position whose codebook-0 token is unknown
    steps_total = length - 1
    interrupted = False
    done = 0
    if _on_frames is not None:
        _on_frames(torch.stack([seq[:, k, d + 1 : d + 1 + P] for k, d in enumerate(delay)], dim=1))
    try:
        logits = decoder.step(
            seq[:, :, :first].repeat(cond.branches, 1, 1) if rows != batch else seq[:, :, :first]
        )
        for t in range(first - 1, steps_total):
            if stop is not None and stop.is_set():
                interrupted = True
                break
            guided, c, u = guide(logits, batch, sampler)
            probs_in = warp(guided, sampler)
            tokens, probs = sample(probs_in, sampler, generator)
            pos = t + 1
            col = known[:, pos]
            new = torch.where(col[None, :], seq[:, :, pos], tokens)
            seq[:, :, pos] = new
            if trace is not None:
                record(trace, probs, new, c, u, sampler.temperature)
            done = t + 1
            if _on_frames is not None and P < pos - D <= frames:
                n = pos - D  # frame f is complete once position f + D + 1 is filled
                _on_frames(
                    torch.stack([seq[:, k, d + 1 : d + 1 + n] for k, d in enumerate(delay)], 1)
                )
            progress.update()
            if pos < steps_total:
                step_in = new[:, :, None]
                logits = decoder.step(
                    step_in.repeat(cond.branches, 1, 1) if rows != batch else step_in
                )
    except KeyboardInterrupt:
        interrupted = True
    # Frames complete in every codebook: frame f needs position f + D + 1.
    complete = frames if not interrupted else max(P, min(frames, done - D))
    codes = torch.stack([seq[:, k, d + 1 : d + 1 + complete] for k, d in enumerate(delay)], dim=1)
    return codes, done - (first - 1), interrupted, decoder


_SMALLER = {"large": "medium", "medium": "small", "melody-large": "melody", "stereo-large": "stereo-medium",
            "stereo-medium": "stereo-small", "stereo-melody-large": "stereo-melody"}  # fmt: skip


def oom_message(s, batch: int, duration: float) -> str:
    """A clear out-of-memory message that names what to shrink."""
    tips = []
    short = s.name.removeprefix("facebook/musicgen-")
    if short in _SMALLER:
        tips.append(f"a smaller model (mg.load({_SMALLER[short]!r}))")
    if s.precision == "fp32":
        tips.append("half precision (mg.load(..., precision='fp16'))")
    if batch > 1:
        tips.append(f"fewer prompts per call (now {batch})")
    tips.append(f"a shorter duration (now {duration:g} s)")
    return f"out of GPU memory generating with {s.name!r} ({s.precision}); try " + ", or ".join(
        tips
    )


def generate(
    s, prompts=None, *, duration=8.0, guidance_scale=3.0, temperature=1.0, top_k=250, top_p=0.0,
    do_sample=True, seed=None, melody=None, melody_sr=None, audio_prompt=None, audio_prompt_sr=None,
    negative_prompt=None, cfg_coef_beta=None, extend_stride=None, progress=True, trace=False,
    attentions=False, attention_layers=None, attention_heads=None, attention_budget_mb=512.0,
    callback=None, stop=None, _on_frames=None,
):  # fmt: skip
    """Generate music with MusicGen.

    Parameters
    ----------
    s : MusicGen
    prompts : str, list of (str or None), or None
        Text prompt(s); ``None`` (alone or in a list) means unconditional.
    duration : float
        Seconds of new audio. Frames are ``ceil(duration * frame_rate)`` and every
        delay-pattern step is counted inside, so the output is exactly this long.
        Longer than ``s.max_duration`` generates in windows (long-form).
    guidance_scale : float
        Classifier-free guidance, >= 1 (1 turns it off): ``u + scale * (c - u)``.
    temperature, top_k, top_p, do_sample
        Sampling: temperature > 0; top_k >= 0 (0 off); top_p in [0, 1] (0 off).
    seed : int, optional
        Same seed, same device: identical codes and audio. None draws a fresh
        seed, recorded in ``g.seed``.
    melody, melody_sr
        Melody-conditioning audio (melody checkpoints only), any shape that
        :func:`musicgen_nb.audio.as_batch` takes. Its chroma follows the output
        position and loops when the melody is shorter than the output.
    audio_prompt, audio_prompt_sr
        Audio to continue; its codes are the prefix (see ``g.prompt_frames``).
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
    callback : callable, optional
        ``callback(done_steps, total_steps)`` after each step.
    stop : threading.Event, optional
        Set it to stop at the next step; the partial result is returned.
    _on_frames : callable, optional
        Private (streaming): ``_on_frames(start, codes)`` with a window's first
        output frame and its frames complete in every codebook so far,
        ``[B, K, n]`` (see :func:`run_window`).

    Returns
    -------
    Generation

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> g = s.generate("jazz", duration=2, seed=1, progress=False)
    >>> g.audio.shape, g.codes.shape
    ((1, 1, 64000), (1, 4, 100))
    """
    texts = _prompts(prompts)
    opts = validate(
        s, duration=duration, guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
        top_p=top_p, do_sample=do_sample, seed=seed, cfg_coef_beta=cfg_coef_beta,
        extend_stride=extend_stride,
    )  # fmt: skip
    batch = len(texts)
    negative = None
    if negative_prompt is not None:
        negative = _prompts(negative_prompt, "negative_prompt")
        if len(negative) == 1:
            negative = negative * batch
        if len(negative) != batch:
            raise ValueError(
                f"negative_prompt must be one text or {batch} (one per prompt), got {len(negative)}"
            )
        if opts["guidance_scale"] <= 1:
            raise ValueError(
                "negative_prompt needs guidance_scale > 1: it replaces the unconditional branch"
            )
    if melody is not None and not s.is_melody:
        raise ValueError(
            f"melody= needs a melody checkpoint ('melody', 'tiny-melody'); {s.name!r} is a text-only model"
        )
    if melody is None and melody_sr is not None:
        raise ValueError("melody_sr was given without melody=")
    if audio_prompt is None and audio_prompt_sr is not None:
        raise ValueError("audio_prompt_sr was given without audio_prompt=")
    if cfg_coef_beta is not None and opts["guidance_scale"] <= 1:
        raise ValueError("cfg_coef_beta needs guidance_scale > 1")

    seed = int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    fr = s.frame_rate
    new_frames = num_frames(opts["duration"], fr)

    # Audio prompt -> prefix codes.
    prefix = None
    P = 0
    if audio_prompt is not None:
        if audio_prompt_sr is None:
            raise ValueError(
                "audio_prompt_sr is required with audio_prompt= (the prompt's sample rate)"
            )
        codes_p = s.encode(audio_prompt, audio_prompt_sr)
        if codes_p.shape[0] == 1 and batch > 1:
            codes_p = np.repeat(codes_p, batch, axis=0)
        if codes_p.shape[0] != batch:
            raise ValueError(
                f"audio_prompt has {codes_p.shape[0]} items but there are {batch} prompts"
            )
        P = codes_p.shape[-1]
        if P >= s.max_frames:
            raise ValueError(
                f"audio_prompt is {P / fr:.2f} s but the model's window is {s.max_duration:g} s; "
                f"give a prompt shorter than {s.max_duration:g} s (e.g. its last {s.max_duration / 2:g} s)"
            )
        prefix = torch.as_tensor(codes_p, device=s.device)
    total_frames = P + new_frames

    # Melody -> chroma frames covering the whole output (looped when short).
    chroma_full = None
    if melody is not None:
        from . import melody as melody_mod

        if melody_sr is None:
            raise ValueError("melody_sr is required with melody= (the melody's sample rate)")
        chroma_full = melody_mod.chroma(melody, melody_sr)
        if chroma_full.ndim == 2:
            chroma_full = np.repeat(chroma_full[None], batch, axis=0)
        if chroma_full.shape[0] != batch:
            raise ValueError(
                f"melody has {chroma_full.shape[0]} items but there are {batch} prompts"
            )
    chroma_rate = s.sample_rate / 4096 if s.is_melody else None

    sampler = Sampler(
        guidance_scale=opts["guidance_scale"], temperature=opts["temperature"], top_k=opts["top_k"],
        top_p=opts["top_p"], do_sample=opts["do_sample"], cfg_coef_beta=opts["cfg_coef_beta"],
    )  # fmt: skip

    # Windows: frames [start, end) of the output, each re-using the tail before `start`.
    window = s.max_frames
    stride_s = opts["extend_stride"] or 0.6 * s.max_duration
    stride = max(1, min(window - 1, int(round(stride_s * fr))))
    plan = [(0, min(total_frames, window))]
    while plan[-1][1] < total_frames:
        end = min(total_frames, plan[-1][1] + stride)
        plan.append((end - window if end - window > 0 else 0, end))
    steps = 0
    for i, (start, end) in enumerate(plan):
        known_frames = P if i == 0 else plan[i - 1][1] - start
        steps += (end - start) + max(delays(s)) - known_frames

    capture = None
    if attentions:
        from . import attention as attention_mod

        text_len = s.processor.tokenizer(
            [t or "" for t in texts + (negative or [])], padding=True
        ).input_ids
        capture = attention_mod.plan_capture(
            s, batch=batch, frames=min(total_frames, window), text_len=len(text_len[0]),
            layers=attention_layers, heads=attention_heads, budget_mb=attention_budget_mb,
        )  # fmt: skip

    generator = torch.Generator(device=s.device).manual_seed(seed)
    bar = _Progress(steps, progress, callback)
    rec = StepRecord() if trace else None
    timings = dict(text_encode_s=0.0, decode_loop_s=0.0, codec_decode_s=0.0, steps=0)
    codes = prefix
    interrupted = False
    windows, window_codes = [], []
    decoder = cond = cap_decoder = cap_cond = None
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    try:
        with torch.inference_mode():
            for i, (start, end) in enumerate(plan):
                t0 = time.perf_counter()
                chroma = None
                if chroma_full is not None:
                    begin = int(round(start / fr * chroma_rate))
                    chroma = fit_chroma(chroma_full, s.model.config.chroma_length, begin)
                cond = conditioning(
                    s, texts, negative=negative, guidance_scale=sampler.guidance_scale,
                    melody_chroma=chroma, cfg_coef_beta=sampler.cfg_coef_beta,
                )  # fmt: skip
                t1 = time.perf_counter()
                pre = None if codes is None else codes[..., start:]
                out, n_steps, interrupted, decoder = run_window(
                    s, cond, batch=batch, prefix=pre, frames=end - start, sampler=sampler,
                    generator=generator, progress=bar, trace=rec, capture=capture if i == 0 else None, stop=stop,
                    _on_frames=None if _on_frames is None else functools.partial(_on_frames, start),
                )  # fmt: skip
                t2 = time.perf_counter()
                timings["text_encode_s"] += t1 - t0
                timings["decode_loop_s"] += t2 - t1
                timings["steps"] += n_steps
                codes = out if codes is None else torch.cat([codes[..., :start], out], dim=-1)
                if i == 0:  # attention is captured in the first window only
                    cap_decoder, cap_cond = decoder, cond
                windows.append((start, start + out.shape[-1]))
                window_codes.append(out)
                if interrupted:
                    break
    except oom as exc:
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
        raise MemoryError(oom_message(s, batch, opts["duration"])) from exc
    finally:
        bar.close()

    t3 = time.perf_counter()
    codes_np = codes.cpu().numpy().astype(np.int64)
    if codes_np.shape[-1]:
        wav = s.decode(codes_np)
    else:
        wav = np.zeros((batch, s.audio_channels, 0), dtype=np.float32)
    timings["codec_decode_s"] = time.perf_counter() - t3
    timings["steps_per_s"] = (
        timings["steps"] / timings["decode_loop_s"] if timings["decode_loop_s"] else 0.0
    )
    hop = s.hop_length
    if not interrupted:
        wav = wav[..., : P * hop + round(opts["duration"] * s.sample_rate)]
    params = dict(opts, negative_prompt=negative, melody=melody is not None,
                  audio_prompt=audio_prompt is not None, windows=len(plan))  # fmt: skip
    g = Generation(
        audio=np.ascontiguousarray(wav, dtype=np.float32),
        sample_rate=s.sample_rate,
        codes=codes_np,
        prompts=texts,
        params=params,
        seed=seed,
        timings=timings,
        frame_rate=fr,
        model_name=s.name,
        prompt_frames=P,
        interrupted=interrupted,
        windows=windows,
        window_codes=[w.cpu().numpy() for w in window_codes] if len(window_codes) > 1 else [],
        melody_chroma=chroma_full,
        versions=versions(),
    )
    if rec is not None:
        from .trace import to_frame

        g.trace = to_frame(
            rec, s, batch=batch, prompt_frames=P, plan=plan, prefix_known=P, codes=codes_np
        )
    if capture is not None and cap_decoder is not None:
        from . import attention as attention_mod

        g.attentions = attention_mod.collect(cap_decoder, capture, s, texts, cap_cond)
    return g
