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
from .memory import available_bytes as _available_bytes

_FORMATS = ("wav", "flac")


# --------------------------------------------------------------------------- validation
#: Longest ``duration`` one call accepts, in seconds (3 hours). ``duration`` is in
#: seconds, so a value past this is almost always a unit mistake; a longer piece can
#: be made in parts, each continuing the last with ``audio_prompt=``.
MAX_DURATION = 3 * 3600.0
#: Largest seed torch's generators take: seeds are integers in ``[0, 2**64)``.
SEED_LIMIT = 2**64


def _finite_number(name, value, *, allowed):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{name} must be a number ({allowed}), got {type(value).__name__} {value!r}"
        )
    try:
        value = float(value)
    except OverflowError:  # an int too big for a float
        raise ValueError(
            f"{name} must be a finite number ({allowed}), got an int of {len(str(value))} digits"
        ) from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number ({allowed}), got {value!r}")
    return value


def _check_bool(name, value) -> bool:
    """``value`` must be a real bool: ``"no"`` or ``0`` would otherwise read as a choice."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _check_seed(seed) -> int | None:
    """None, or an int in ``[0, 2**64)`` (the range of torch's generator seeds)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be None or an int in [0, 2**64), got {type(seed).__name__} {seed!r}"
        )
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
    return int(seed)


def _seeds(seed, batch: int) -> list[int]:
    """One seed per batch item: a list as given, ``n`` as ``n, n + 1, ...``, None as a fresh ``n``.

    Each item samples from its own generator, so an item never depends on its batch-mates.
    """
    if isinstance(seed, (list, tuple)):
        if any(x is None for x in seed):
            raise ValueError(f"seed lists must hold ints in [0, 2**64), got {seed!r}")
        seeds = [_check_seed(x) for x in seed]
        if len(seeds) != batch:
            raise ValueError(
                f"seed must list one seed per prompt ({batch}), got {len(seeds)}: {seed!r}"
            )
        return seeds
    first = _check_seed(seed)
    if first is None:
        first = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    if first + batch > SEED_LIMIT:
        raise ValueError(
            f"seed={first} gives item i the seed {first} + i, which must stay below 2**64 "
            f"for {batch} prompts; give a smaller seed or a list of seeds"
        )
    return [first + i for i in range(batch)]


def _check_hooks(callback, stop) -> None:
    """``callback`` must be callable and ``stop`` must have ``is_set()``, checked before step 1."""
    if callback is not None and not callable(callback):
        raise TypeError(
            "callback must be None or a callable taking (done_steps, total_steps), "
            f"got {type(callback).__name__} {callback!r:.60}"
        )
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(
            "stop must be None or an object with is_set(), such as threading.Event(), "
            f"got {type(stop).__name__} {stop!r:.60}"
        )


def _check_duration(s, duration) -> float:
    duration = _finite_number("duration", duration, allowed="seconds > 0")
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    frame = 1.0 / s.frame_rate
    if duration < frame - 1e-9:
        raise ValueError(
            f"duration must be at least one frame ({frame:g} s at {s.frame_rate} frames/s), "
            f"got {duration!r}"
        )
    if duration > MAX_DURATION:
        raise ValueError(
            f"duration must be <= {MAX_DURATION:g} s (3 hours, the most one call generates; "
            f"duration is in seconds), got {duration:g} s, which would be "
            f"{math.ceil(duration * s.frame_rate):,} frames. For a longer piece, generate it "
            "in parts, each continuing the last with audio_prompt="
        )
    return duration


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
    duration = _check_duration(s, duration)
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
    do_sample = _check_bool("do_sample", do_sample)
    if not isinstance(seed, (list, tuple)):  # lists are checked against the batch: _seeds
        _check_seed(seed)
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
    seed : int or list of int
        The seed of each item: an int for a batch of one, else one int per item.
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
    standin : str or None
        The offline checkpoint that made this in place of ``model_name``
        (stand-ins on, :mod:`musicgen_nb.testing`): its audio is noise. Saved in
        the sidecar.
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    prompts: list
    params: dict
    seed: int | list
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
    standin: str | None = None
    model_provenance: dict = field(default_factory=dict)  # s.provenance: e.g. the adapter

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
            seed=self.seed[item] if isinstance(self.seed, list) else self.seed,
            params=self.params,
            sample_rate=self.sample_rate,
            frames=int(self.codes.shape[-1]),
            prompt_frames=self.prompt_frames,
            interrupted=self.interrupted,
            versions=self.versions,
            standin=self.standin,
            item=item,
            **self.model_provenance,
        )

    def save(self, directory, fmt: str = "wav", loudness: float | None = None) -> list[Path]:
        """Write one audio file per batch item plus a JSON sidecar of provenance.

        Nothing is ever overwritten or orphaned. A name is used only when both
        ``<name>.<fmt>`` and ``<name>.json`` are free; otherwise ``-1``, ``-2``...
        is appended. Both files are written completely to temporary files first;
        then the sidecar is linked into place, then the audio, each failing
        atomically if another process took the name meanwhile (then the next
        name is tried). So a crash, even ``kill -9``, never leaves an audio file
        without its sidecar, and concurrent saves to one folder never collide.
        Files follow the umask. A full disk raises ``OSError`` ("no space left
        ... <path>") and leaves no temporary files. An interrupted generation is
        saved as ``<name>_partial``.

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

        directory, fmt, loudness = check_save(directory, fmt, loudness)
        if self.audio.shape[-1] == 0:
            raise ValueError(
                "nothing to save: this generation holds no audio (it was interrupted before "
                "its first complete frame)"
            )
        paths = []
        for i in range(len(self)):
            wav = self.audio[i]
            if loudness is not None:
                wav = audio_io.normalize_loudness(wav, self.sample_rate, loudness)
            seed = self.provenance(i)["seed"]
            stem = _slug(self.prompts[i]) + f"_seed{seed}" + (f"_{i}" if len(self) > 1 else "")
            if self.interrupted:
                stem += "_partial"
            meta = self.provenance(i) | dict(
                loudness_lufs=loudness,
                sha256=hashlib.sha256(
                    np.ascontiguousarray(wav, dtype=np.float32).tobytes()
                ).hexdigest(),
            )
            data = audio_io.encode(wav, self.sample_rate, fmt)
            paths.append(_save_pair(directory, stem, fmt, data, meta))
        return paths


def check_save(
    directory, fmt="wav", loudness=None, *, names=None
) -> tuple[Path, str, float | None]:
    """Check the arguments of :meth:`Generation.save` and make the folder, before any work.

    Parameters
    ----------
    directory, fmt, loudness
        As for :meth:`Generation.save`.
    names : dict, optional
        How to call each argument in messages, e.g. ``{"directory": "--out"}``.

    Returns
    -------
    (Path, str, float or None)
        The folder (created and known to be writable), the format and the loudness.
    """
    from . import audio as audio_io

    names = {"directory": "directory", "fmt": "fmt", "loudness": "loudness"} | (names or {})
    if not isinstance(fmt, str) or fmt not in _FORMATS:
        raise ValueError(f"{names['fmt']} must be one of {_FORMATS}, got {fmt!r}")
    if loudness is not None:
        loudness = _finite_number(names["loudness"], loudness, allowed="LUFS <= 0, e.g. -14.0")
        if loudness > 0:
            raise ValueError(
                f"{names['loudness']} must be a loudness in LUFS <= 0 (e.g. -14.0), got {loudness!r}"
            )
    if isinstance(directory, str) and not directory.strip():
        raise ValueError(f"{names['directory']} is an empty string; give a folder")
    directory = audio_io._check_path(directory, names["directory"])
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{names['directory']} {str(directory)!r} is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        audio_io.write_temp(directory, "write-check", b"").unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        denied = PermissionError(
            f"{names['directory']} {str(directory)!r} is not writable: {reason}"
        )
        denied.errno = err.errno
        raise denied from None
    return directory, fmt, loudness


def _save_pair(directory: Path, stem: str, fmt: str, data: bytes, meta: dict) -> Path:
    """Claim the first name whose audio and sidecar are both free; write both, sidecar first."""
    from . import audio as audio_io

    tmp_audio = audio_io.write_temp(directory, f"{stem}.{fmt}", data)
    try:
        for n in range(100_000):
            name = stem if n == 0 else f"{stem}-{n}"
            path, side = directory / f"{name}.{fmt}", directory / f"{name}.json"
            if path.exists() or side.exists():
                continue
            text = json.dumps(meta | dict(file=path.name), indent=1, default=str).encode()
            tmp_side = audio_io.write_temp(directory, side.name, text)
            try:
                try:
                    audio_io.link_new(tmp_side, side)
                except FileExistsError:
                    continue  # taken meanwhile by another process: next name
                try:
                    audio_io.link_new(tmp_audio, path)
                except FileExistsError:
                    side.unlink(missing_ok=True)
                    continue
                except BaseException:
                    side.unlink(missing_ok=True)
                    raise
                return path
            finally:
                tmp_side.unlink(missing_ok=True)
        raise FileExistsError(f"no free name for {stem}.{fmt} in {directory} after 100000 tries")
    finally:
        tmp_audio.unlink(missing_ok=True)


def _slug(text: str | None) -> str:
    if not text:
        return "unconditional"
    keep = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in keep:
        keep = keep.replace("--", "-")
    return keep[:40] or "prompt"


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
    callback : callable, optional
        ``callback(done_steps, total_steps)`` after each step.
    stop : threading.Event, optional
        Anything with ``is_set()``. Set it to stop at the next step; the partial
        result is returned.
    _on_frames : callable, optional
        Private (streaming): ``_on_frames(start, codes)`` with a window's first
        output frame and its frames complete in every codebook so far,
        ``[B, K, n]`` (see :func:`run_window`).

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
    req = _request(
        s, prompts, duration=duration, guidance_scale=guidance_scale, temperature=temperature,
        top_k=top_k, top_p=top_p, do_sample=do_sample, seed=seed, melody=melody, melody_sr=melody_sr,
        audio_prompt=audio_prompt, audio_prompt_sr=audio_prompt_sr, negative_prompt=negative_prompt,
        cfg_coef_beta=cfg_coef_beta, extend_stride=extend_stride, progress=progress, trace=trace,
        attentions=attentions, attention_layers=attention_layers, attention_heads=attention_heads,
        attention_budget_mb=attention_budget_mb, callback=callback, stop=stop, on_frames=_on_frames,
    )  # fmt: skip
    plan = _plan(s, req)
    inputs, plan = _inputs(s, req, plan)
    run = _run_windows(s, req, plan, inputs)
    return _assemble(s, req, plan, inputs, run)


# --------------------------------------------------------------------------- 1. validate
@dataclass
class _Request:
    """A checked ``generate`` call: every value normalised, nothing computed yet."""

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
    on_frames: object = None  # private streaming hook: see run_window

    @property
    def batch(self) -> int:
        return len(self.texts)


#: Longest text prompt, in tokens: the length T5 was trained on. Longer texts
#: would make the encoder's attention grow with the square of the length.
MAX_TEXT_TOKENS = 512


def _request(s, prompts, *, negative_prompt, melody, melody_sr, audio_prompt, audio_prompt_sr,
             progress, trace, attentions, attention_layers, attention_heads, attention_budget_mb,
             callback, stop, seed, on_frames=None, **sampling) -> _Request:  # fmt: skip
    """Check every argument by type and range, and every input size, before any work."""
    texts = _prompts(prompts)
    opts = validate(s, seed=seed, **sampling)
    progress = _check_bool("progress", progress)
    trace = _check_bool("trace", trace)
    attentions = _check_bool("attentions", attentions)
    _check_hooks(callback, stop)
    batch = len(texts)
    negative = _negative(negative_prompt, batch, opts["guidance_scale"])
    _check_text_lengths(s, texts + (negative or []))
    if opts["cfg_coef_beta"] is not None and opts["guidance_scale"] <= 1:
        raise ValueError("cfg_coef_beta needs guidance_scale > 1")
    if melody is not None and not s.is_melody:
        raise ValueError(
            f"melody= needs a melody checkpoint ('melody', 'tiny-melody'); {s.name!r} is a text-only model"
        )
    melody, melody_sr = _audio_input(melody, melody_sr, "melody", batch)
    audio_prompt, audio_prompt_sr = _audio_input(
        audio_prompt, audio_prompt_sr, "audio_prompt", batch
    )
    if audio_prompt is not None:
        _check_prompt_length(s, audio_prompt.shape[-1], audio_prompt_sr)
    new_frames = num_frames(opts["duration"], s.frame_rate)
    prompt_frames = (
        0 if audio_prompt is None else _prompt_frames(s, audio_prompt.shape[-1], audio_prompt_sr)
    )
    _check_memory(s, batch, prompt_frames + new_frames, opts["duration"])
    seeds = _seeds(seed, batch)
    attention = dict(layers=attention_layers, heads=attention_heads, budget_mb=attention_budget_mb)
    return _Request(
        texts=texts, negative=negative, opts=opts, seeds=seeds, new_frames=new_frames,
        melody=melody, melody_sr=melody_sr, audio_prompt=audio_prompt,
        audio_prompt_sr=audio_prompt_sr, progress=progress, trace=trace, attentions=attentions,
        attention=attention, callback=callback, stop=stop, on_frames=on_frames,
    )  # fmt: skip


def _negative(negative_prompt, batch: int, guidance_scale: float) -> list | None:
    if negative_prompt is None:
        return None
    negative = _prompts(negative_prompt, "negative_prompt")
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


def _check_text_lengths(s, texts) -> None:
    """Refuse a text longer than :data:`MAX_TEXT_TOKENS` before the encoder sees it."""
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


def _audio_input(audio, sr, name: str, batch: int):
    """Check an audio argument and its rate together; return ``([B, C, N] float32, sr)``."""
    from . import audio as audio_io

    if audio is None:
        if sr is not None:
            raise ValueError(f"{name}_sr was given without {name}=")
        return None, None
    if sr is None:
        raise ValueError(f"{name}_sr is required with {name}= (the {name}'s sample rate in Hz)")
    sr = audio_io._check_sr(sr, f"{name}_sr")
    arr = audio_io.as_batch(audio, name=name)
    if arr.shape[0] not in (1, batch):
        raise ValueError(f"{name} has {arr.shape[0]} items but there are {batch} prompts")
    return arr, sr


def _prompt_frames(s, samples: int, sr: int) -> int:
    """Frames of an audio prompt of ``samples`` at ``sr``, computed without resampling it."""
    resampled = samples if sr == s.sample_rate else round(samples * s.sample_rate / sr)
    return math.ceil(resampled / s.hop_length)


def _check_prompt_length(s, samples: int, sr: int) -> None:
    """The prompt must fit the window: judged from samples / sr, before resampling."""
    if _prompt_frames(s, samples, sr) < s.max_frames:
        return
    raise ValueError(
        f"audio_prompt is {samples / sr:.2f} s ({samples} samples at audio_prompt_sr={sr} Hz) "
        f"but the model's window is {s.max_duration:g} s; give a prompt shorter than "
        f"{s.max_duration:g} s (e.g. its last {s.max_duration / 2:g} s), and check audio_prompt_sr"
    )


def _check_memory(s, batch: int, frames: int, duration: float) -> None:
    """Refuse a call whose output audio and key/value cache cannot fit in memory.

    The estimate counts the float32 audio three times (decoded pieces, their
    concatenation, the trimmed copy) and the decoder's cache for one window.
    """
    from .engine import cache_bytes

    available = _available_bytes()
    if available is None:
        return
    audio = 3 * batch * s.audio_channels * frames * s.hop_length * 4
    rows = 3 * batch  # at most three guidance branches
    cache = cache_bytes(s.model, rows, min(frames, s.max_frames) + s.num_codebooks, s.dtype)
    need = audio + (cache if s.device.type == "cpu" else 0)
    if need <= available:
        return
    raise ValueError(
        f"duration={duration:g} s for {batch} prompt(s) needs about {need / 1e9:.1f} GB "
        f"(audio {audio / 1e9:.1f} GB, decoder cache {cache / 1e9:.1f} GB) but only "
        f"{available / 1e9:.1f} GB of memory is available; ask for a shorter duration or fewer prompts"
    )


# --------------------------------------------------------------------------- 2. plan
@dataclass
class _Plan:
    """Frame ranges ``[start, end)`` of each window and what the run will cost."""

    windows: list
    prompt_frames: int
    total_frames: int
    steps: int
    capture: dict | None


def _windows(s, total_frames: int, extend_stride: float | None) -> list[tuple[int, int]]:
    """Windows over the output; each after the first re-uses the tail before its ``start``."""
    window = s.max_frames
    stride_s = extend_stride or 0.6 * s.max_duration
    stride = max(1, min(window - 1, int(round(stride_s * s.frame_rate))))
    plan = [(0, min(total_frames, window))]
    while plan[-1][1] < total_frames:
        end = min(total_frames, plan[-1][1] + stride)
        plan.append((end - window if end - window > 0 else 0, end))
    return plan


def _plan(s, req: _Request, prompt_frames: int | None = None) -> _Plan:
    P = prompt_frames or 0
    if prompt_frames is None and req.audio_prompt is not None:
        P = _prompt_frames(s, req.audio_prompt.shape[-1], req.audio_prompt_sr)
    total = P + req.new_frames
    windows = _windows(s, total, req.opts["extend_stride"])
    steps = 0
    for i, (start, end) in enumerate(windows):
        known_frames = P if i == 0 else windows[i - 1][1] - start
        steps += (end - start) + max(delays(s)) - known_frames
    capture = None
    if req.attentions:
        from . import attention as attention_mod

        text_len = s.processor.tokenizer(
            [t or "" for t in req.texts + (req.negative or [])], padding=True
        ).input_ids
        capture = attention_mod.plan_capture(
            s, batch=req.batch, frames=min(total, s.max_frames), text_len=len(text_len[0]),
            layers=req.attention["layers"], heads=req.attention["heads"],
            budget_mb=req.attention["budget_mb"],
        )  # fmt: skip
    return _Plan(windows=windows, prompt_frames=P, total_frames=total, steps=steps, capture=capture)


# --------------------------------------------------------------------------- 3. conditioning
@dataclass
class _Inputs:
    """What the windows condition on: prompt codes, melody chroma and the sampler."""

    prefix: torch.Tensor | None
    chroma: np.ndarray | None
    sampler: Sampler


def _inputs(s, req: _Request, plan: _Plan) -> tuple[_Inputs, _Plan]:
    """Encode the audio prompt, compute the melody chroma, make the sampler.

    Returns the plan too: it is re-made if the prompt's frames differ from the
    count the plan made from samples / sr (a rounding edge).
    """
    prefix = None
    if req.audio_prompt is not None:
        codes_p = s.encode(req.audio_prompt, req.audio_prompt_sr)
        if codes_p.shape[0] == 1 and req.batch > 1:
            codes_p = np.repeat(codes_p, req.batch, axis=0)
        if codes_p.shape[-1] != plan.prompt_frames:  # the plan counted frames from samples / sr
            plan = _plan(s, req, prompt_frames=codes_p.shape[-1])
        prefix = torch.as_tensor(codes_p, device=s.device)
    chroma = None
    if req.melody is not None:
        from . import melody as melody_mod

        # Only the chroma frames some window reads: up to the last window's start + its length.
        last = _chroma_start(s, plan.windows[-1][0])
        needed = last + s.model.config.chroma_length
        chroma = melody_mod.chroma(req.melody, req.melody_sr, frames=needed, name="melody")
        if chroma.ndim == 2:
            chroma = chroma[None]
        if chroma.shape[0] != req.batch:
            chroma = np.repeat(chroma, req.batch, axis=0)
    o = req.opts
    sampler = Sampler(
        guidance_scale=o["guidance_scale"], temperature=o["temperature"], top_k=o["top_k"],
        top_p=o["top_p"], do_sample=o["do_sample"], cfg_coef_beta=o["cfg_coef_beta"],
    )  # fmt: skip
    return _Inputs(prefix=prefix, chroma=chroma, sampler=sampler), plan


def _chroma_start(s, start_frame: int) -> int:
    """The chroma frame that lines up with output frame ``start_frame``."""
    from .melody import HOP_LENGTH

    return int(round(start_frame / s.frame_rate * (s.sample_rate / HOP_LENGTH)))


def _window_conditioning(s, req: _Request, inputs: _Inputs, start: int) -> Conditioning:
    chroma = None
    if inputs.chroma is not None:
        chroma = fit_chroma(inputs.chroma, s.model.config.chroma_length, _chroma_start(s, start))
    return conditioning(
        s, req.texts, negative=req.negative, guidance_scale=inputs.sampler.guidance_scale,
        melody_chroma=chroma, cfg_coef_beta=inputs.sampler.cfg_coef_beta,
    )  # fmt: skip


# --------------------------------------------------------------------------- 4. run
@dataclass
class _Run:
    """What the windows produced."""

    codes: torch.Tensor | None
    windows: list
    window_codes: list
    interrupted: bool
    timings: dict
    record: StepRecord | None
    captured: tuple | None  # (decoder, conditioning) of the first window


def _run_windows(s, req: _Request, plan: _Plan, inputs: _Inputs) -> _Run:
    generator = [torch.Generator(device=s.device).manual_seed(x) for x in req.seeds]
    bar = _Progress(plan.steps, req.progress, req.callback)
    run = _Run(
        codes=inputs.prefix, windows=[], window_codes=[], interrupted=False,
        timings=dict(text_encode_s=0.0, decode_loop_s=0.0, codec_decode_s=0.0, steps=0),
        record=StepRecord() if req.trace else None, captured=None,
    )  # fmt: skip
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    try:
        with torch.inference_mode():
            for i, (start, end) in enumerate(plan.windows):
                t0 = time.perf_counter()
                cond = _window_conditioning(s, req, inputs, start)
                t1 = time.perf_counter()
                pre = None if run.codes is None else run.codes[..., start:]
                out, n_steps, run.interrupted, decoder = run_window(
                    s, cond, batch=req.batch, prefix=pre, frames=end - start,
                    sampler=inputs.sampler, generator=generator, progress=bar, trace=run.record,
                    capture=plan.capture if i == 0 else None, stop=req.stop,
                    _on_frames=None if req.on_frames is None else functools.partial(req.on_frames, start),
                )  # fmt: skip
                run.timings["text_encode_s"] += t1 - t0
                run.timings["decode_loop_s"] += time.perf_counter() - t1
                run.timings["steps"] += n_steps
                run.codes = (
                    out if run.codes is None else torch.cat([run.codes[..., :start], out], -1)
                )
                if i == 0:  # attention is captured in the first window only
                    run.captured = (decoder, cond)
                run.windows.append((start, start + out.shape[-1]))
                run.window_codes.append(out)
                if run.interrupted:
                    break
    except KeyboardInterrupt:  # between steps (e.g. while conditioning a window): keep what is done
        run.interrupted = True
    except oom as exc:
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
        raise MemoryError(oom_message(s, req.batch, req.opts["duration"])) from exc
    finally:
        bar.close()
    return run


# --------------------------------------------------------------------------- 5. assemble
#: Codes longer than this many frames are decoded in overlapping pieces, so the
#: codec's activations stay bounded however long the piece is.
DECODE_CHUNK = 1500
#: Frames of context decoded on each side of a piece and then dropped.
DECODE_CONTEXT = 100


def decode_long(s, codes: np.ndarray) -> np.ndarray:
    """Decode ``[B, K, frames]`` codes in overlapping pieces of :data:`DECODE_CHUNK` frames.

    Each piece is decoded with :data:`DECODE_CONTEXT` frames of context on both
    sides, which are then dropped, so the codec's memory stays bounded and the
    seams match a one-piece decode closely. Up to ``DECODE_CHUNK`` frames this is
    exactly ``s.decode(codes)``.
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


def _assemble(s, req: _Request, plan: _Plan, inputs: _Inputs, run: _Run) -> Generation:
    t3 = time.perf_counter()
    codes = run.codes.cpu().numpy().astype(np.int64)
    if codes.shape[-1]:
        # One item at a time: batched convolutions round differently, and an item's
        # audio must not depend on its batch-mates (per-item seeds).
        wav = np.concatenate([decode_long(s, codes[i : i + 1]) for i in range(req.batch)])
    else:
        wav = np.zeros((req.batch, s.audio_channels, 0), dtype=np.float32)
    timings = run.timings
    timings["codec_decode_s"] = time.perf_counter() - t3
    timings["steps_per_s"] = (
        timings["steps"] / timings["decode_loop_s"] if timings["decode_loop_s"] else 0.0
    )
    P = plan.prompt_frames
    if not run.interrupted:
        wav = wav[..., : P * s.hop_length + round(req.opts["duration"] * s.sample_rate)]
    params = dict(req.opts, negative_prompt=req.negative, melody=req.melody is not None,
                  audio_prompt=req.audio_prompt is not None, windows=len(plan.windows))  # fmt: skip
    g = Generation(
        audio=np.ascontiguousarray(wav, dtype=np.float32), sample_rate=s.sample_rate, codes=codes,
        prompts=req.texts, params=params, seed=req.seeds[0] if req.batch == 1 else req.seeds, timings=timings, frame_rate=s.frame_rate,
        model_name=s.name, prompt_frames=P, interrupted=run.interrupted, windows=run.windows,
        window_codes=[w.cpu().numpy() for w in run.window_codes] if len(run.window_codes) > 1 else [],
        melody_chroma=inputs.chroma, versions=versions(), standin=s.standin,
        model_provenance=dict(getattr(s, "provenance", {})),
    )  # fmt: skip
    if run.record is not None:
        from .trace import to_frame

        g.trace = to_frame(
            run.record, s, batch=req.batch, prompt_frames=P, plan=plan.windows, prefix_known=P,
            codes=codes,
        )  # fmt: skip
    if plan.capture is not None and run.captured is not None:
        from . import attention as attention_mod

        g.attentions = attention_mod.collect(
            run.captured[0], plan.capture, s, req.texts, run.captured[1]
        )
    return g
