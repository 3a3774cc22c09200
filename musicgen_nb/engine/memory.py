"""What a generation needs in memory, the up-front estimate, releasing it, and out-of-memory errors.

* :func:`cache_bytes`: the key/value cache of one window.
* :func:`call_bytes`: what one call needs on the device beyond the weights (cache,
  activations of a step and of the prefix, cross-attention keys, EnCodec's decode),
  and :func:`largest_fit`, the longest duration / largest batch a free figure holds.
  The generation refuses a call that cannot fit before any work.
* :func:`release`: garbage-collect and hand CUDA's cached blocks back, after an
  out-of-memory error or a call that left much cached.
* :class:`OutOfMemory`: raised when a call runs out of memory after all; it keeps
  the windows done so far (``err.partial``) and holds no decoder.

Free memory comes from :func:`musicgen_nb.engine.precision.device_facts`, which a test
fakes with :func:`~musicgen_nb.engine.precision.fake_device` (``free_bytes=``).
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import torch

from .precision import device_facts

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "OutOfMemory", "SMALLER", "cache_bytes", "call_bytes", "device_free", "largest_fit",
    "oom_message", "release", "weight_bytes",
]  # fmt: skip

#: Text tokens assumed for the cross-attention keys of the estimate (prompts are ~10-30).
TEXT_TOKENS = 64
#: Frames EnCodec decodes at once (generation's DECODE_CHUNK plus its context on both sides).
CODEC_FRAMES = 1700

#: The next smaller checkpoint to try after running out of memory.
SMALLER = {
    "large": "medium", "medium": "small", "melody-large": "melody", "melody": "small",
    "stereo-large": "stereo-medium", "stereo-medium": "stereo-small",
    "stereo-melody-large": "stereo-melody", "stereo-melody": "stereo-small",
}  # fmt: skip


def cache_bytes(model: Any, rows: int, positions: int, dtype: torch.dtype) -> int:
    """Bytes of the static key/value cache for ``rows`` batch rows and ``positions`` positions.

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> cfg = mg.load("tiny").model.config.decoder
    >>> n = cache_bytes(mg.load("tiny").model, 2, 10, torch.float32)
    >>> n == 2 * cfg.num_hidden_layers * 2 * cfg.hidden_size * 10 * 4
    True
    """
    cfg = model.config.decoder
    return (
        2
        * cfg.num_hidden_layers
        * rows
        * cfg.hidden_size
        * positions
        * torch.empty((), dtype=dtype).element_size()
    )


def _tips(name: str, precision: str, device: torch.device, batch: int, duration) -> list[str]:
    """What to try next, most effective first."""
    tips = []
    if precision == "fp32":
        # fp16 where a GPU runs it natively, bf16 on the CPU; either halves the weights
        half, other = ("fp16", "bf16") if device.type == "cuda" else ("bf16", "fp16")
        tips.append(
            f"half precision (mg.load({name!r}, precision={half!r}) or precision={other!r} "
            "halves the weights)"
        )
    if name in SMALLER:
        tips.append(f"a smaller model (mg.load({SMALLER[name]!r}))")
    if batch > 1:
        tips.append(f"fewer prompts per call (now {batch})")
    if duration is not None:
        tips.append(f"a shorter duration (now {duration:g} s)")
    if device.type == "cuda":
        tips.append("device='cpu' (slow, but bounded by RAM)")
    return tips


def oom_message(s: Any, batch: int = 1, duration: float | None = None) -> str:
    """A clear out-of-memory message naming a smaller model or dtype to try.

    Parameters
    ----------
    s : MusicGen
        The session that ran out of memory.
    batch : int
        Prompts in the failed call.
    duration : float, optional
        Seconds requested in the failed call.

    Returns
    -------
    str
        What the model's weights and this call's cache need, what the device
        has, and the next things to try (half precision, a smaller model,
        fewer prompts, a shorter duration).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.engine import oom_message
    >>> "out of memory" in oom_message(mg.load("tiny"), batch=2, duration=8.0)
    True
    """
    model = s.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    dtype = getattr(s, "dtype", torch.float32)
    frames = round((duration or getattr(s, "max_duration", 30.0)) * getattr(s, "frame_rate", 50))
    frames = min(frames, getattr(s, "max_frames", frames))
    rows = 2 * batch  # guidance: conditional + unconditional rows
    kv = cache_bytes(model, rows, frames + getattr(s, "num_codebooks", 4), dtype)
    device = getattr(s, "device", torch.device("cpu"))
    have = ""
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        have = f"; the GPU has {total / 1e9:.1f} GB ({free / 1e9:.1f} GB free now)"
    name = str(getattr(s, "name", "this model")).removeprefix("facebook/musicgen-")
    precision = getattr(s, "precision", "fp32")
    tips = _tips(name, precision, device, batch, duration)
    return (
        f"out of memory running {name!r} in {precision} on {device.type}: weights {weights / 1e9:.2f} GB "
        f"+ key/value cache {kv / 1e9:.2f} GB for {batch} prompt(s) x {frames} frames{have}. Try "
        + ", or ".join(tips)
        + "."
    )


class OutOfMemory(MemoryError):
    """A call ran out of memory: the message says what fits, ``partial`` keeps what was done.

    ``partial`` is the :class:`~musicgen_nb.generation.Generation` of the windows
    finished before the error (``interrupted=True``), or None when none was;
    ``codes`` the codes decoded so far, on the CPU (``s.decode(err.codes)`` makes
    their audio where there is room), or None. The error holds no decoder, no key/value cache and no traceback into the decode
    loop: in Jupyter, ``sys.last_value`` pins nothing on the device.

    Examples
    --------
    >>> err = OutOfMemory("out of memory")
    >>> isinstance(err, MemoryError), err.partial
    (True, None)
    """

    def __init__(self, message: str, partial: Any = None, codes: Any = None) -> None:
        super().__init__(message)
        self.partial, self.codes = partial, codes


def weight_bytes(model: Any) -> int:
    """Bytes of ``model``'s parameters and buffers.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> weight_bytes(mg.load("tiny").model) > 0
    True
    """
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total + sum(b.numel() * b.element_size() for b in model.buffers())


def _codec_bytes(model: Any, frames: int) -> int:
    """EnCodec's decode activations for one item of ``frames`` frames (a few live maps per stage)."""
    codec = model.config.audio_encoder
    dtype = next(model.audio_encoder.parameters()).dtype
    channels, length, total = codec.num_filters * 2 ** len(codec.upsampling_ratios), frames, 0
    total += channels * length
    for ratio in codec.upsampling_ratios:
        channels, length = channels // 2, length * ratio
        total += channels * length
    return 3 * total * torch.empty((), dtype=dtype).element_size()


def call_bytes(s: Any, batch: int, frames: int, branches: int = 2, attention: int = 0) -> dict:
    """Device bytes of one call beyond the weights, by part, and their ``total``.

    ``kv``: one window's key/value cache (one window is alive at a time);
    ``activations``: the prefix feed's scores and states, the cross-attention keys
    and the fp32 logits of a step; ``codec``: EnCodec's decode of the whole batch
    (one call) and its output; ``attention``: the bytes of an attention capture
    (``attentions=True``), passed in; ``fused``: the static step's fused q/k/v and
    lm_heads copies (kept beside the weights), when the call runs that step.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> b = call_bytes(s, 1, 100)
    >>> b["total"] == b["kv"] + b["activations"] + b["codec"] + b["attention"] + b["fused"]
    True
    """
    cfg, model = s.model.config.decoder, s.model
    rows, window = branches * batch, min(frames, s.max_frames)
    positions = window + s.num_codebooks
    if s.is_melody:
        positions += model.config.chroma_length + TEXT_TOKENS
    size = torch.empty((), dtype=s.dtype).element_size()
    kv = cache_bytes(model, rows, positions, s.dtype)
    prefix = min(positions, int(0.4 * s.max_frames) + s.num_codebooks)  # a window's known tail
    scores = rows * cfg.num_attention_heads * prefix * prefix * size
    states = rows * prefix * (4 * cfg.hidden_size + cfg.ffn_dim) * size
    cross = 2 * cfg.num_hidden_layers * rows * TEXT_TOKENS * cfg.hidden_size * size
    logits = 4 * rows * cfg.num_codebooks * cfg.vocab_size * 4
    act = scores + states + cross + logits
    # tokens.decode runs the whole batch through EnCodec in one call, a channel at a time,
    # keeping each channel's output until their concatenation
    piece = min(frames, CODEC_FRAMES)
    out = (
        2 * s.audio_channels * piece * s.hop_length * torch.empty((), dtype=s.dtype).element_size()
    )
    codec = batch * (_codec_bytes(model, piece) + out)
    fused = _fused_bytes(s)
    total = kv + act + codec + attention + fused
    return dict(kv=kv, activations=act, codec=codec, attention=attention, fused=fused, total=total)


def _fused_bytes(s: Any) -> int:
    """The static step's copies (q/k/v of every layer, the lm_heads); 0 when the call runs without them."""
    from .static import resolve_step  # the step module imports the engine, not the reverse

    step = resolve_step(getattr(s, "step", "auto"), s.device)
    if step != "static" or getattr(s, "precision", "fp32") in ("int8", "int4"):
        return 0
    cfg = s.model.config.decoder
    size = torch.empty((), dtype=s.dtype).element_size()
    qkv = cfg.num_hidden_layers * 3 * cfg.hidden_size * (cfg.hidden_size + 1)
    return (qkv + cfg.num_codebooks * cfg.vocab_size * cfg.hidden_size) * size


def device_free(device: torch.device) -> int | None:
    """Free bytes on ``device``: faked, CUDA's (plus the blocks torch holds cached), the host's; None if unknown.

    Examples
    --------
    >>> import torch
    >>> from musicgen_nb.engine.precision import fake_device
    >>> with fake_device("cpu", free_bytes=123):
    ...     device_free(torch.device("cpu"))
    123
    """
    facts = device_facts(device)
    if facts.faked or (facts.free_bytes is not None and device.type != "cuda"):
        return facts.free_bytes
    if device.type == "cuda":  # blocks torch keeps cached are free to this process too
        if facts.free_bytes is None:
            return None
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return facts.free_bytes + max(0, cached)
    if device.type != "cpu":
        return facts.free_bytes
    from .._util.memory import available_bytes

    return available_bytes()


def largest_fit(
    s: Any, batch: int, frames: int, free: int, branches: int = 2, per_frame: int = 0
) -> tuple[int, int]:
    """(most frames at ``batch``, most prompts at ``frames``) whose :func:`call_bytes` fit ``free``.

    ``per_frame`` adds bytes per frame and prompt held in the same memory (the
    output audio, on the CPU). 0 means not even one frame (or one prompt) fits.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> largest_fit(s, 1, 100, 10**12)
    (100, 1)
    """

    def need(b: int, f: int) -> int:
        return call_bytes(s, b, f, branches)["total"] + per_frame * f * b

    def most(hi: int, fits) -> int:
        lo = 1
        if not fits(lo):
            return 0
        while lo < hi:  # the largest n in [lo, hi] that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    longest = most(frames, lambda f: need(batch, f) <= free)
    widest = most(batch, lambda b: need(b, frames) <= free)
    return longest, widest


#: Cached CUDA bytes (reserved, not allocated) above which a finished call hands them back.
RELEASE_CACHED = 2**30


def release(device: torch.device, force: bool = False) -> None:
    """Free what a call left: collect garbage, then return CUDA's cached blocks.

    On the CPU there is nothing to do: the cache is freed when its decoder goes.
    On CUDA it runs after an out-of-memory error (``force=True``) or when torch
    keeps more than :data:`RELEASE_CACHED` bytes cached; otherwise a call pays no
    ``gc.collect()`` and the next call reuses the cached blocks.

    Examples
    --------
    >>> import torch
    >>> release(torch.device("cpu"))
    """
    if device.type != "cuda" or not torch.cuda.is_available():
        return
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if force or cached > RELEASE_CACHED:
        gc.collect()
        torch.cuda.empty_cache()
