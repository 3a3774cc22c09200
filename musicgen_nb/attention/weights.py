"""Captured attention weights: the :class:`Attentions` result and :func:`collect`, which builds it.

Examples
--------
>>> import musicgen_nb as mg
>>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
>>> g.attentions.self_for(0).shape
(53, 53)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_int

if TYPE_CHECKING:
    from typing import Any

    from ..engine import Conditioning, Decoder

__all__ = ["Attentions", "collect", "text_tokens"]


@dataclass
class Attentions:
    """Captured attention weights of one generation (first window), float16.

    Attributes
    ----------
    cross : np.ndarray or None
        ``[layers, batch, steps, text_len]``: row ``j`` is the query at audio
        position ``j`` (0 is BOS), the step that predicts codebook 0's frame
        ``j``, at ``j / frame_rate`` seconds. None for melody models. Padding
        keys and unconditional (``None``) prompts are zero.
    self_attn : np.ndarray
        ``[layers, batch, positions, positions]``, lower triangular: row ``i``
        holds the weights of query position ``i`` over keys ``0..i``.
        Positions ``0..prefix_len-1`` are the melody prefix (chroma, then
        text), then the audio positions (BOS first).
    layers : list of int
        Decoder layer of each entry along axis 0.
    heads : list of int or None
        Heads averaged (None: all heads).
    text_tokens : list of list of str
        Each item's text tokens (axis labels); empty for ``None`` prompts.
    frame_rate : int
    prefix_len : int
        Melody prefix length (``chroma_length + text_len``); 0 for text models.
    num_codebooks : int
    chroma_len : int
        Melody models: chroma frames at the start of the prefix (then text); 0 otherwise.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
    >>> g.attentions.layers, g.attentions.batch, g.attentions.steps
    ([0, 1], 1, 53)
    >>> a = g.attentions
    >>> a.positions, a.nbytes, a.layer_index(1), float(a.times[1])
    (53, 11660, 1, 0.02)
    """

    cross: np.ndarray | None
    self_attn: np.ndarray
    layers: list
    heads: list | None
    text_tokens: list
    frame_rate: int
    prefix_len: int = 0
    num_codebooks: int = 4
    chroma_len: int = 0

    @property
    def batch(self) -> int:
        """Number of batch items."""
        return int(self.self_attn.shape[1])

    @property
    def positions(self) -> int:
        """Self-attention length (prefix included)."""
        return int(self.self_attn.shape[-1])

    @property
    def steps(self) -> int:
        """Audio positions fed to the decoder (cross-attention queries)."""
        return self.positions - self.prefix_len

    @property
    def times(self) -> np.ndarray:
        """Seconds of the codebook-0 frame each audio query position predicts."""
        return np.arange(self.steps) / float(self.frame_rate)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return int(self.self_attn.nbytes + (0 if self.cross is None else self.cross.nbytes))

    def layer_index(self, layer: int) -> int:
        """Index along axis 0 of decoder layer ``layer``; ValueError when not captured."""
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise TypeError(
                f"layer must be an int among the captured layers {self.layers}, got {layer!r}"
            )
        if int(layer) not in self.layers:
            raise ValueError(f"layer {layer!r} was not captured; captured layers: {self.layers}")
        return self.layers.index(int(layer))

    def _item(self, item: int) -> int:
        if not 0 <= check_int(item, "item", minimum=0) < self.batch:
            raise ValueError(f"item must be in [0, {self.batch}), got {item}")
        return int(item)

    def cross_for(self, layer: int, item: int = 0) -> np.ndarray:
        """Cross-attention of one layer and item, float32 ``[steps, n_tokens]``.

        Columns are the item's tokens (``text_tokens[item]``), padding dropped.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
        >>> g.attentions.cross_for(0, 0).shape[0]
        53
        """
        if self.cross is None:
            raise ValueError(
                "this model has no cross-attention (a melody model: its text is a prefix of the "
                "self-attention; see self_for and prefix_len)"
            )
        li, it = self.layer_index(layer), self._item(item)
        return self.cross[li, it, :, : len(self.text_tokens[it])].astype(np.float32)

    def self_for(self, layer: int, item: int = 0) -> np.ndarray:
        """Self-attention of one layer and item, float32 ``[positions, positions]``.

        Examples
        --------
        >>> import musicgen_nb as mg
        >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, attentions=True, progress=False)
        >>> g.attentions.self_for(1, 0).shape
        (53, 53)
        """
        li, it = self.layer_index(layer), self._item(item)
        return self.self_attn[li, it].astype(np.float32)

    def __repr__(self) -> str:
        cross = "none" if self.cross is None else f"{tuple(self.cross.shape)}"
        return (
            f"Attentions(layers={self.layers}, heads={'all' if self.heads is None else self.heads}, "
            f"batch={self.batch}, positions={self.positions}, prefix_len={self.prefix_len}, "
            f"cross={cross}, {self.nbytes / 1e6:.1f} MB)"
        )


def _to_host(store: dict) -> dict:
    """``{layer: [tensors]}`` on the host, in one transfer for all of them (not one per step)."""
    import torch

    parts = [t for calls in store.values() for t in calls]
    if not parts or all(t.device.type == "cpu" for t in parts):
        return store
    flat = torch.cat([t.reshape(-1) for t in parts]).cpu()
    pieces = iter(flat.split([t.numel() for t in parts]))
    return {i: [next(pieces).view(t.shape) for t in calls] for i, calls in store.items()}


def _dense(calls: list) -> np.ndarray:
    """Stack per-call weights ``[rows, n, m]`` into a lower-triangular ``[rows, N, N]``."""
    rows = calls[0].shape[0]
    total = sum(int(c.shape[1]) for c in calls)
    out = np.zeros((rows, total, total), dtype=np.float16)
    pos = 0
    for c in calls:
        w = c.numpy() if hasattr(c, "numpy") else np.asarray(c)
        n, m = w.shape[1], w.shape[2]
        if m > total:
            raise RuntimeError(
                f"captured attention has {m} keys but only {total} positions were fed"
            )
        out[:, pos : pos + n, :m] = w
        pos += n
    return np.tril(out)


def text_tokens(s: Any, texts: list[str | None]) -> list[list[str]]:
    """Token strings of each text, as the model's tokenizer splits them (no padding).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> text_tokens(mg.load("tiny"), [None])
    [[]]
    """
    tok = s.processor.tokenizer
    out = []
    for t in texts:
        if t is None:
            out.append([])
            continue
        ids = tok(t).input_ids
        out.append([str(x) for x in tok.convert_ids_to_tokens(ids)])
    return out


def collect(
    decoder: Decoder, capture: dict, s: Any, texts: list[str | None], cond: Conditioning
) -> Attentions:
    """Build :class:`Attentions` from what a :class:`~musicgen_nb.engine.Decoder` captured.

    Parameters
    ----------
    decoder : musicgen_nb.engine.Decoder
        Its ``captured_self``/``captured_cross``: layer -> list of per-call
        float16 ``[rows, n_query, n_key]`` (prefill first, then one per step).
    capture : dict
        From :func:`plan_capture`.
    s : MusicGen
    texts : list of (str or None)
    cond : musicgen_nb.engine.Conditioning

    Returns
    -------
    Attentions

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.load("tiny").generate("x", duration=0.5, seed=0, attentions=True, progress=False)
    >>> type(g.attentions).__name__  # generate calls collect after the first window
    'Attentions'
    """
    layers = [int(x) for x in capture["layers"]]
    batch = int(capture["rows"])
    missing = [i for i in layers if not decoder.captured_self.get(i)]
    if missing:
        raise RuntimeError(f"no self-attention was captured for layers {missing}")
    captured_self = _to_host(decoder.captured_self)
    self_attn = np.stack([_dense(captured_self[i]) for i in layers])
    tokens = text_tokens(s, texts)
    cross = None
    if not cond.prefix:
        captured_cross = _to_host(decoder.captured_cross)
        cross = np.stack(
            [np.concatenate([c.numpy() for c in captured_cross[i]], axis=1) for i in layers]
        )
        mask = cond.mask[:batch].detach().cpu().numpy().astype(bool)  # [B, text_len]
        cross = np.where(mask[None, :, None, :], cross, np.float16(0)).astype(np.float16)
        # The tokenizer's tokens are the unpadded prefix of each mask row.
        for b, toks in enumerate(tokens):
            if len(toks) != int(mask[b].sum()):
                tokens[b] = [f"tok{j}" for j in range(int(mask[b].sum()))]
    chroma_len = int(s.model.config.chroma_length) if cond.prefix else 0
    return Attentions(
        cross=cross, self_attn=self_attn, layers=layers,
        heads=None if capture.get("heads") is None else list(capture["heads"]),
        text_tokens=tokens, frame_rate=int(s.frame_rate), prefix_len=int(decoder.offset),
        num_codebooks=int(s.num_codebooks), chroma_len=chroma_len,
    )  # fmt: skip
