"""Attention capture: what the decoder looked at while it generated.

``s.generate(..., attentions=True)`` records, for the captured decoder layers:

- **cross-attention** (text models): for every decode step, how much each text
  token was attended, ``[layers, batch, steps, text_len]``;
- **self-attention**: for every sequence position, how much each earlier
  position was attended, ``[layers, batch, positions, positions]``. For melody
  models the conditioning (``chroma_length`` chroma frames, then the text
  states) is a prefix of this sequence: they have no cross-attention, and the
  first ``prefix_len`` positions are that prefix.

Weights are averaged over the selected heads (``attention_heads=``, default all)
and kept for the conditional guidance branch only (the first ``batch`` rows),
in float16 on the CPU. Only the first window of a long-form generation is
captured.

How it is captured ("eager only for that call")
-----------------------------------------------
The decode engine normally runs fused ``scaled_dot_product_attention``, which
never materialises the weights. For the layers in the capture, and only during
that ``generate`` call, it computes ``softmax(q k^T * scale + mask)`` explicitly
and keeps the weights; every other layer, and every other call, stays on the
fused path. Nothing is switched globally (no ``attn_implementation`` change on
the model), so a capture cannot leak into later generations, and the sampled
codes are the same with or without it.

Size
----
The self-attention matrix grows with the square of the length: a 30 s
generation has about 1,500 positions, so each captured layer and item holds
1,500 x 1,500 float16 values (4.5 MB). :func:`plan_capture` estimates the size
up front and refuses a capture over ``attention_budget_mb`` (default 512 MB),
saying how to shrink it.

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> g = s.generate("jazz", duration=1, seed=0, attentions=True, progress=False)
>>> a = g.attentions
>>> a.cross.shape[:3], a.self_attn.shape[2]
((2, 1, 53), 53)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TEXT_LEN = 64  # tokens assumed for the estimate when the text length is unknown


def _decoder_config(s):
    return s.model.decoder.config


def _int_list(name: str, value, count: int, what: str) -> list[int]:
    items = (
        [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    )
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            f"{name} must be None, an int or a list of ints in [0, {count}), got {value!r}"
        ) from None
    if not items:
        raise ValueError(f"{name} must not be empty; use None for all {what} (0..{count - 1})")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(
                f"{name} must hold ints in [0, {count}), got {type(i).__name__} {i!r} in {value!r}"
            )
        i = int(i)
        if not -count <= i < count:
            raise ValueError(
                f"{name} has {i}, out of range: the model has {count} {what} (0..{count - 1})"
            )
        out.append(i % count)
    return sorted(set(out))


def estimate_mb(s, *, batch: int, frames: int, text_len: int | None = None, layers: int) -> dict:
    """Estimate the size of an attention capture, in MB (10**6 bytes).

    Parameters
    ----------
    s : MusicGen
    batch : int
        Batch items (only the conditional branch is kept).
    frames : int
        Frames of the captured (first) window, audio-prompt frames included.
    text_len : int, optional
        Text tokens (padded); None assumes ``DEFAULT_TEXT_LEN``.
    layers : int
        Number of captured layers.

    Returns
    -------
    dict
        ``self_mb``, ``cross_mb``, ``total_mb``, ``positions`` (self-attention
        side), ``steps`` (cross-attention queries), ``text_len``, ``prefix_len``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> est = estimate_mb(mg.load("tiny"), batch=1, frames=100, text_len=10, layers=2)
    >>> est["positions"], est["steps"]
    (103, 103)
    """
    text_len = DEFAULT_TEXT_LEN if text_len is None else int(text_len)
    K = int(s.num_codebooks)
    steps = int(frames) + K - 1  # positions fed to the decoder: BOS + delayed frames - 1
    prefix = 0
    if s.is_melody:
        prefix = int(s.model.config.chroma_length) + text_len
    positions = prefix + steps
    self_b = layers * batch * positions * positions * 2  # dense float16 result
    cross_b = 0 if s.is_melody else layers * batch * steps * text_len * 2
    return dict(
        self_mb=self_b / 1e6, cross_mb=cross_b / 1e6, total_mb=(self_b + cross_b) / 1e6,
        positions=positions, steps=steps, text_len=text_len, prefix_len=prefix,
    )  # fmt: skip


def plan_capture(
    s, *, batch: int, frames: int, text_len: int | None = None, layers=None, heads=None,
    budget_mb: float = 512.0,
) -> dict:  # fmt: skip
    """Validate an attention request and return the engine's capture spec.

    Parameters
    ----------
    s : MusicGen
    batch : int
        Number of batch items; the first ``batch`` rows (the conditional
        guidance branch) are captured.
    frames : int
        Frames of the first window (the only one captured).
    text_len : int, optional
        Padded text length, for the estimate (None assumes 64 tokens).
    layers : int or list of int, optional
        Decoder layers to capture (``attention_layers=``); None captures all.
        Negative indices count from the end.
    heads : int or list of int, optional
        Heads to average (``attention_heads=``); None averages all heads.
    budget_mb : float
        Largest capture allowed (``attention_budget_mb=``).

    Returns
    -------
    dict
        ``{"layers": [...], "heads": [...] or None, "rows": batch}`` plus
        ``"estimate"`` (see :func:`estimate_mb`).

    Raises
    ------
    ValueError
        Layers or heads out of range, or an estimated size over ``budget_mb``;
        the message gives the size and how to shrink it.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> cap = plan_capture(mg.load("tiny"), batch=1, frames=100, layers=[-1])
    >>> cap["layers"], cap["heads"], cap["rows"]
    ([1], None, 1)
    """
    cfg = _decoder_config(s)
    n_layers, n_heads = int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
    layer_list = (
        list(range(n_layers))
        if layers is None
        else _int_list("attention_layers", layers, n_layers, "decoder layers")
    )
    head_list = (
        None if heads is None else _int_list("attention_heads", heads, n_heads, "attention heads")
    )
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float, np.number)):
        raise TypeError(f"attention_budget_mb must be a number of MB > 0, got {budget_mb!r}")
    budget_mb = float(budget_mb)
    if math.isnan(budget_mb) or budget_mb <= 0:
        raise ValueError(f"attention_budget_mb must be > 0 MB, got {budget_mb!r}")
    est = estimate_mb(s, batch=batch, frames=frames, text_len=text_len, layers=len(layer_list))
    if est["total_mb"] > budget_mb:
        seconds = frames / s.frame_rate
        per_layer = est["total_mb"] / len(layer_list)
        fit = int(budget_mb // per_layer)
        layers_hint = (
            f"e.g. attention_layers=[{n_layers - 1}]; each layer adds about {per_layer:.1f} MB"
            if fit >= 1
            else f"even one layer takes about {per_layer:.1f} MB here"
        )
        raise ValueError(
            f"attention capture would take about {est['total_mb']:.1f} MB "
            f"(self-attention {est['self_mb']:.1f} MB + cross-attention {est['cross_mb']:.1f} MB: "
            f"{len(layer_list)} layer(s) x {batch} item(s) x {est['positions']} positions, "
            f"{seconds:g} s captured), over attention_budget_mb={budget_mb:g}. "
            f"To shrink it: capture fewer layers with attention_layers= ({layers_hint}), "
            f"generate a shorter duration (self-attention grows with its square), "
            f"use fewer prompts per call, or raise the limit with "
            f"attention_budget_mb={math.ceil(est['total_mb'])}."
        )
    return {"layers": layer_list, "heads": head_list, "rows": int(batch), "estimate": est}


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
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"item must be an int in [0, {self.batch}), got {item!r}")
        if not 0 <= item < self.batch:
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


def text_tokens(s, texts) -> list[list[str]]:
    """Token strings of each text, as the model's tokenizer splits them (no padding)."""
    tok = s.processor.tokenizer
    out = []
    for t in texts:
        if t is None:
            out.append([])
            continue
        ids = tok(t).input_ids
        out.append([str(x) for x in tok.convert_ids_to_tokens(ids)])
    return out


def collect(decoder, capture: dict, s, texts, cond) -> Attentions:
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
    """
    layers = [int(x) for x in capture["layers"]]
    batch = int(capture["rows"])
    missing = [i for i in layers if not decoder.captured_self.get(i)]
    if missing:
        raise RuntimeError(f"no self-attention was captured for layers {missing}")
    self_attn = np.stack([_dense(decoder.captured_self[i]) for i in layers])
    tokens = text_tokens(s, texts)
    cross = None
    if not cond.prefix:
        cross = np.stack(
            [np.concatenate([c.numpy() for c in decoder.captured_cross[i]], axis=1) for i in layers]
        )
        mask = cond.mask[:batch].detach().cpu().numpy().astype(bool)  # [B, text_len]
        cross = np.where(mask[None, :, None, :], cross, np.float16(0)).astype(np.float16)
        # The tokenizer's tokens are the unpadded prefix of each mask row.
        for b, toks in enumerate(tokens):
            if len(toks) != int(mask[b].sum()):
                tokens[b] = [f"tok{j}" for j in range(int(mask[b].sum()))]
    chroma_len = int(s.model.config.chroma_length) if cond.prefix else 0
    return Attentions(
        cross=cross,
        self_attn=self_attn,
        layers=layers,
        heads=None if capture.get("heads") is None else list(capture["heads"]),
        text_tokens=tokens,
        frame_rate=int(s.frame_rate),
        prefix_len=int(decoder.offset),
        num_codebooks=int(s.num_codebooks),
        chroma_len=chroma_len,
    )
