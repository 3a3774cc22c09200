"""What a generation needs in memory: the key/value cache, and the one out-of-memory message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from typing import Any

__all__ = ["cache_bytes", "oom_message", "SMALLER"]

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
