"""Text and chroma conditioning, shared by generation and fine-tuning.

The decoder conditions on the T5 text encoder's states (projected to the decoder's
width) and, for melody checkpoints, on a prefix of projected chroma frames.
:func:`conditioning` stacks the guidance branches the decode loop runs (conditional,
melody-only for double guidance, unconditional or negative); :func:`text_states` and
:func:`stack_states` are the caching variant fine-tuning uses, one caption at a time.

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> hidden, mask = encode_text(s, ["jazz", None])
>>> hidden.shape[0], mask[1].any().item()
(2, False)
>>> conditioning(s, ["jazz"], negative=None, guidance_scale=3.0).branches
2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .engine import Conditioning

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_TEXT_TOKENS",
    "chroma_start",
    "conditioning",
    "encode_text",
    "fit_chroma",
    "null_chroma",
    "pad",
    "stack_states",
    "text_states",
]

#: Longest text prompt, in tokens: the length T5 was trained on. Longer texts
#: would make the encoder's attention grow with the square of the length.
MAX_TEXT_TOKENS = 512


def encode_text(s: Any, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Project texts to decoder states ``[B, S, D]`` and a bool mask ``[B, S]``.

    ``None`` (unconditional) gives zero states and an all-False mask, which is
    what transformers feeds its unconditional branch.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> hidden, mask = encode_text(mg.load("tiny"), ["jazz", None])
    >>> hidden.shape[:2] == mask.shape, bool(hidden[1].abs().sum())
    (True, False)
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


def text_states(s: Any, texts: list[str | None]) -> dict:
    """Projected text states and masks of each distinct text (None: unconditional), on the CPU.

    Each text is encoded alone, once, so a caption's states never depend on the
    other captions of a batch (fine-tuning encodes its captions once, before step 1).

    Returns
    -------
    dict
        ``text -> (hidden [1, S, D] float32, mask [1, S] bool)``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> states = text_states(mg.load("tiny"), ["jazz", None, "jazz"])
    >>> list(states), states["jazz"][0].dtype
    (['jazz', None], torch.float32)
    """
    out = {}
    with torch.no_grad():
        for t in texts:
            if t not in out:
                h, m = encode_text(s, [t])
                out[t] = (h.float().cpu(), m.cpu())
    return out


def stack_states(
    states: dict, texts: list[str | None], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the states of ``texts`` (keys of :func:`text_states`), right-padded to one width.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> states = text_states(mg.load("tiny"), ["jazz", "a longer rock prompt"])
    >>> h, m = stack_states(states, ["jazz", "a longer rock prompt"], "cpu")
    >>> h.shape[1] == m.shape[1] == states["a longer rock prompt"][0].shape[1]
    True
    """
    width = max(states[t][0].shape[1] for t in texts)
    h = torch.cat([pad(states[t][0], width) for t in texts]).to(device)
    m = torch.cat([pad(states[t][1], width) for t in texts]).to(device)
    return h, m


def null_chroma(s: Any, rows: int) -> torch.Tensor:
    """The melody models' 'no melody' input: pitch class 0 everywhere.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> c = null_chroma(mg.load("tiny-melody"), 2)
    >>> c.shape[0], c[..., 0].min().item(), c[..., 1:].max().item()
    (2, 1.0, 0.0)
    """
    chroma = torch.zeros(
        rows, s.model.config.chroma_length, s.model.config.num_chroma, device=s.device
    )
    chroma[..., 0] = 1
    return chroma


def fit_chroma(chroma: np.ndarray, length: int, start: int = 0) -> np.ndarray:
    """Take ``length`` chroma frames from ``start``, looping the melody when it is shorter.

    A melody shorter than what is asked is tiled end to end (it loops), as the
    transformers melody model does with a short melody.

    Examples
    --------
    >>> import numpy as np
    >>> fit_chroma(np.eye(12)[[0, 4, 7]], 5).argmax(-1).tolist()
    [0, 4, 7, 0, 4]
    """
    frames = chroma.shape[-2]
    idx = (np.arange(length) + start) % frames
    return chroma[..., idx, :]


def chroma_start(s: Any, start_frame: int) -> int:
    """The chroma frame that lines up with output frame ``start_frame``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> chroma_start(mg.load("tiny-melody"), 100)  # 2 s at 7.8125 chroma frames/s
    16
    """
    from .melody import HOP_LENGTH

    return int(round(start_frame / s.frame_rate * (s.sample_rate / HOP_LENGTH)))


def conditioning(
    s: Any,
    texts: list[str | None],
    *,
    negative: list[str | None] | None,
    guidance_scale: float,
    melody_chroma: torch.Tensor | None = None,
    cfg_coef_beta: float | None = None,
) -> Conditioning:
    """Build the stacked guidance branches for the decoder.

    Branch order: conditional, [melody-only when ``cfg_coef_beta``], unconditional.
    The unconditional branch is the negative prompt when one is given.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> cond = conditioning(mg.load("tiny"), ["jazz"], negative=["drums"], guidance_scale=3.0)
    >>> cond.branches, cond.hidden.shape[0], cond.prefix
    (2, 2, False)
    """
    batch = len(texts)
    guided = guidance_scale > 1
    branches = [encode_text(s, texts)]
    if guided and cfg_coef_beta is not None:
        branches.append(encode_text(s, [None] * batch))
    if guided:
        branches.append(encode_text(s, negative if negative is not None else [None] * batch))
    width = max(h.shape[1] for h, _ in branches)
    hs = torch.cat([pad(h, width) for h, _ in branches])
    ms = torch.cat([pad(m, width) for _, m in branches])
    if not s.is_melody:
        return Conditioning(hidden=hs, mask=ms, prefix=False, branches=len(branches))
    chroma = _melody_rows(s, batch, len(branches), guided, melody_chroma)
    proj = getattr(s.model, "audio_enc_to_dec_proj", None)
    audio_states = proj(chroma) if proj is not None else chroma
    return Conditioning(
        hidden=torch.cat([audio_states, hs], dim=1), mask=None, prefix=True, branches=len(branches)
    )


def _melody_rows(s, batch: int, branches: int, guided: bool, melody_chroma) -> torch.Tensor:
    """Melody prefix of every branch: the chroma, or the null chroma on the unconditional one."""
    rows = []
    for i in range(branches):
        null = i == branches - 1 and guided
        if melody_chroma is None or null:
            rows.append(null_chroma(s, batch))
        else:
            rows.append(torch.as_tensor(melody_chroma, dtype=torch.float32, device=s.device))
    return torch.cat(rows).to(s.dtype)


def pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad dim 1 of ``t`` with zeros (False) to ``width``.

    Examples
    --------
    >>> import torch
    >>> pad(torch.ones(1, 2, dtype=torch.bool), 4).tolist()
    [[True, True, False, False]]
    """
    extra = width - t.shape[1]
    if extra == 0:
        return t
    padding = torch.zeros((t.shape[0], extra, *t.shape[2:]), dtype=t.dtype, device=t.device)
    return torch.cat([t, padding], dim=1)
