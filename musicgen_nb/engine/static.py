"""The static-shape decode step: one cache reused across windows and calls, a mask, a position tensor.

:class:`StaticDecoder` runs the same decoder as :class:`~musicgen_nb.engine.Decoder`
(``step="dynamic"``, today's engine) with shapes that do not change during a window:

* the key/value cache is allocated once per model (:class:`Pool`) and reused by
  every later window and call of that size (on CUDA, of that size or less), in
  any thread; a decoder that runs while another one holds the pool gets its own;
* the self-attention reads a fixed span of the cache through an additive mask that
  each step opens in place at one position; the position is a device tensor
  (``index``), advanced on the device; no step reads a value back to the host;
* q/k/v are one fused linear and the 4 lm_heads one fused linear (fp32/fp16/bf16;
  fused copies made once per set of weights, see :func:`fused_weights`);
* every linear runs as ``F.linear`` (``x @ W.T``, as transformers does). The dynamic
  step runs fp32 on the CPU as ``W @ x.T``, which read the weights 1.7-1.9x slower
  on this project's CPU (the whole fp32 step: 1.5-1.7x); ``matvec=True`` runs that
  form (the dynamic step's logits, bit for bit);
* on CUDA each step is a CUDA graph, one per shape bucket (cache positions, text
  length, span, rows; :mod:`musicgen_nb.engine.graphs`), replayed from the pool; the
  sampling stays outside the graph. On the CPU a step attends to the positions so
  far without the mask (the mask over the whole cache measured slower there);
  ``whole=True`` runs the graphs' shapes on the CPU (tests).

int8 and int4 models keep the C++ kernels as they are: there the static step is
today's step on the pooled cache. Attention capture (``attentions=True``) always
runs the dynamic step. :func:`make_decoder` picks the step (``mg.load(step=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .._kernels.build import SWITCH as KERNELS_SWITCH
from .._util.env import env_switch
from . import threads
from .decoder import Conditioning, Decoder
from .graphs import CACHE_STEP, SPAN_STEP, TEXT_STEP, Pool, bucket, capture, drop, take
from .static_layers import compiled_static
from .static_weights import forget, fused_weights
from .table import LINEAR, MATVEC

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "STEPS", "StaticDecoder", "Pool", "check_step", "resolve_step", "make_decoder",
    "fused_weights", "release", "check_environment",
]  # fmt: skip

#: The decode steps ``mg.load(step=...)`` accepts.
STEPS = ("auto", "static", "dynamic")


def check_step(step: object) -> str:
    """``step`` if it is one of :data:`STEPS`, else a ValueError naming it.

    Examples
    --------
    >>> check_step("static")
    'static'
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    return step


def check_environment() -> None:
    """Refuse a bad ``MUSICGEN_NB_ADAPTIVE_THREADS`` or ``MUSICGEN_NB_KERNELS``, by name.

    Each takes 0/false/off/no or 1/true/on/yes; ``mg.load`` calls this before any work.

    Examples
    --------
    >>> import os
    >>> saved = os.environ.get("MUSICGEN_NB_KERNELS")
    >>> os.environ["MUSICGEN_NB_KERNELS"] = "perhaps"
    >>> try:
    ...     check_environment()
    ... except ValueError as e:
    ...     print(str(e).split(" must")[0])
    MUSICGEN_NB_KERNELS
    >>> _ = os.environ.pop("MUSICGEN_NB_KERNELS"); os.environ.update({"MUSICGEN_NB_KERNELS": saved} if saved else {})
    """
    threads.check_switch()
    env_switch(KERNELS_SWITCH, default=True)


def resolve_step(step: str, device: torch.device) -> str:
    """``"static"`` or ``"dynamic"`` for ``step`` on ``device``.

    ``"auto"`` is static on CUDA (its graphs) and dynamic elsewhere. On the CPU
    (``benchmarks/bench_static.py``, musicgen-small, 1 and 2 threads) the static
    step ran 1.63-1.70x the dynamic one's speed in fp32, from its ``F.linear``
    (with the dynamic step's ``W @ x.T``: 0.98), and 0.99-1.00x in int8 (the same
    kernels). Its fp32 logits are not the dynamic step's bit for bit, and it keeps
    its cache and fused copies between calls: "auto" stays dynamic there.

    Examples
    --------
    >>> import torch
    >>> resolve_step("auto", torch.device("cpu")), resolve_step("static", torch.device("cpu"))
    ('dynamic', 'static')
    """
    check_step(step)
    if step == "auto":
        return "static" if device.type == "cuda" else "dynamic"
    return step


def make_decoder(
    model: Any,
    cond: Conditioning,
    max_len: int,
    capture: dict | None = None,
    step: str = "auto",
) -> Decoder:
    """The decoder of one window for ``step``; attention capture always runs the dynamic step.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.conditioning import conditioning
    >>> s = mg.load("tiny")
    >>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
    >>> type(make_decoder(s.model, cond, 8, step="static")).__name__
    'StaticDecoder'
    """
    if capture is not None or resolve_step(step, cond.hidden.device) == "dynamic":
        return Decoder(model, cond, max_len, capture=capture)
    return StaticDecoder(model, cond, max_len)


def release(model: Any) -> None:
    """Free the static step's buffers, graphs and fused weights of ``model``.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.engine.graphs import pool_of
    >>> from musicgen_nb.engine.static_weights import has_fused
    >>> s = mg.load("tiny", step="static")
    >>> _ = s.generate("jazz", duration=0.1, progress=False)
    >>> held = pool_of(s.model.decoder) is not None and has_fused(s.model.decoder)
    >>> release(s.model)
    >>> held, pool_of(s.model.decoder) is not None or has_fused(s.model.decoder)
    (True, False)
    """
    lm = getattr(model, "decoder", model)
    drop(lm)
    forget(lm)


class StaticDecoder(Decoder):
    """A :class:`~musicgen_nb.engine.Decoder` whose step keeps every shape of a window fixed.

    Parameters
    ----------
    model, cond, max_len, kernels
        As for :class:`~musicgen_nb.engine.Decoder` (no attention capture).
    graphs : bool, optional
        Record each step in a graph and replay it (default: on CUDA). Needs CUDA,
        or a ``recorder``.
    whole : bool, optional
        Attend over the window's span of the cache (:data:`~musicgen_nb.engine.graphs.SPAN_STEP`),
        as the graphs do (default: with ``graphs``). On the CPU this runs the graphs'
        shapes eagerly, for tests.
    recorder : callable, optional
        How a step is recorded (:func:`~musicgen_nb.engine.graphs.capture`); default a
        CUDA graph. :func:`~musicgen_nb.engine.graphs.eager` runs the graph path on the CPU.
    matvec : bool, optional
        fp32/fp16/bf16 weights: run each linear as ``W @ x.T`` (the dynamic step's
        form for fp32 on the CPU: the same logits, bit for bit) instead of
        ``F.linear`` (``x @ W.T``, as transformers does; the default). On this
        project's 2-core CPU (torch 2.13, MKL 2024.2), ``F.linear`` reads the fp32
        weights of 2 rows 1.7-1.9x faster (``benchmarks/bench_static.py --matvec``).

    Notes
    -----
    The decoder holds its model's :class:`Pool` from its creation until :meth:`finish`
    (``run_window`` calls it); a decoder made meanwhile gets a pool of its own.

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> from musicgen_nb.conditioning import conditioning
    >>> s = mg.load("tiny")
    >>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
    >>> dec = StaticDecoder(s.model, cond, max_len=8)
    >>> dec.step(torch.full((2, 4, 1), s.special_id)).shape, dec.index.tolist()
    (torch.Size([2, 4, 2048]), [1])
    """

    def __init__(
        self,
        model: Any,
        cond: Conditioning,
        max_len: int,
        kernels: bool | None = None,
        graphs: bool | None = None,
        whole: bool | None = None,
        recorder: Any = None,
        matvec: bool = False,
    ) -> None:
        device = cond.hidden.device
        self.matvec = bool(matvec)
        self.graphs = device.type == "cuda" if graphs is None else bool(graphs)
        if self.graphs and device.type != "cuda" and recorder is None:
            raise ValueError(f"graphs=True needs a CUDA device (or a recorder), not {device.type}")
        self.whole = self.graphs if whole is None else bool(whole)
        self.recorder, self.holding = recorder, True
        super().__init__(model, cond, max_len, capture=None, kernels=kernels)
        if self.fp and self.whole:  # the graphs' shapes: all they read lives in the pool
            rows = self.pool.buffer("positions", (self.span_total, self.positions.shape[1]),
                                    self.dtype, self.device)  # fmt: skip
            rows[: self.positions.shape[0]].copy_(self.positions)
            self.positions = rows
            if not cond.prefix:
                self._pad_text()

    def _allocate_cache(self) -> None:
        """The pooled cache (and, for fp weights, the mask, the position and the fused weights)."""
        self.pool = take(self.lm, self)
        self.fp = self.table.mode in (MATVEC, LINEAR)
        if not self.fp:  # int8/int4: today's step, on the pooled cache
            self._kv_cache(
                lambda name, shape, dtype: self.pool.buffer(name, shape, dtype, self.device)
            )
            return
        L, R, H, hd = len(self.layers), self.rows, self.heads, self.head_dim
        shape = (L, R, H, bucket(self.total, CACHE_STEP), hd)
        dev, dt, grow = self.device, self.dtype, (3 if self.graphs else None)
        self.k_cache = self.pool.buffer("k", shape, dt, dev, at_least=grow)
        self.v_cache = self.pool.buffer("v", self.k_cache.shape, dt, dev)
        self.span_total = self.k_cache.shape[3]
        self.span = min(self.span_total, bucket(self.total, SPAN_STEP))  # what `whole` reads
        self.k_layers, self.v_layers = list(self.k_cache.unbind(0)), list(self.v_cache.unbind(0))
        self.k_scales, self.v_scales = [], []
        self.mask = self.pool.buffer("mask", (1, self.span_total), dt, dev)
        self.mask.fill_(torch.finfo(dt).min)
        self.index = self.pool.buffer("index", (1,), torch.long, dev).zero_()
        self.tokens = self.pool.buffer("tokens", (R, len(self.lm.lm_heads), 1), torch.long, dev)
        self.fused = fused_weights(self.lm, self.layers, self.matvec)
        self.run_static = compiled_static()

    def _pad_text(self) -> None:
        """Cross keys/values/bias in pooled buffers, the text padded to a bucket (masked keys)."""
        k0 = self.cross_k[0]
        rows, heads, length, hd = k0.shape
        S = bucket(length, TEXT_STEP)
        shape = (len(self.layers), rows, heads, S, hd)
        ck = self.pool.buffer(f"cross_k{S}", shape, k0.dtype, self.device).zero_()
        cv = self.pool.buffer(f"cross_v{S}", shape, k0.dtype, self.device).zero_()
        bias = self.pool.buffer(f"cross_bias{S}", (rows, 1, 1, S), k0.dtype, self.device)
        bias.fill_(torch.finfo(k0.dtype).min)
        bias[..., :length].copy_(self.cross_bias)
        for i, (k, v) in enumerate(zip(self.cross_k, self.cross_v, strict=True)):
            ck[i, :, :, :length].copy_(k)
            cv[i, :, :, :length].copy_(v)
        self.cross_k, self.cross_v, self.cross_bias = list(ck.unbind(0)), list(cv.unbind(0)), bias

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` ``[R, K, n]`` at the next positions; return last logits ``[R, K, V]``.

        A single position on CUDA replays this bucket's graph (recorded on first use).
        The logits it returns are then the graph's output buffer, overwritten by
        the next step: use them (guidance, sampling) before the next step, or clone
        them to keep them (a copy per step was not worth it: the loop never keeps them).

        Examples
        --------
        >>> import torch, musicgen_nb as mg
        >>> from musicgen_nb.conditioning import conditioning
        >>> from musicgen_nb.engine.graphs import eager
        >>> s = mg.load("tiny")
        >>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
        >>> dec = StaticDecoder(s.model, cond, max_len=8, graphs=True, recorder=eager)
        >>> first = dec.step(torch.full((2, 4, 1), s.special_id))
        >>> second = dec.step(first.argmax(-1)[..., None])
        >>> second is first, dec.index.tolist()  # one output buffer, replayed into
        (True, [2])
        >>> dec.finish()
        """
        if self.pool.holder is None or self.pool.holder() is not self:
            raise RuntimeError(
                "this StaticDecoder's buffers were taken by a later decoder of the same model "
                "(after finish()): make a new decoder for a new window"
            )
        if not (self.fp and self.graphs and tokens.shape[-1] == 1):
            return super().step(tokens)
        self.tokens.copy_(tokens)
        key = self.graph_key()
        if key not in self.pool.graphs:
            self.pool.graphs[key] = capture(self._one, [self.index, self.mask], self.recorder)
        graph, out = self.pool.graphs[key]
        graph.replay()
        self.pos += 1
        return out

    def graph_key(self) -> tuple[int, int, int]:
        """The shape bucket of this window's graph: ``(span, text bucket, rows)``.

        Examples
        --------
        >>> import musicgen_nb as mg, musicgen_nb.conditioning as c
        >>> s = mg.load("tiny")
        >>> dec = StaticDecoder(s.model, c.conditioning(s, ["a"], negative=None, guidance_scale=3.0), 300, whole=True)
        >>> dec.graph_key(), dec.span_total
        ((320, 16, 2), 320)
        """
        return (self.span, self.cross_bias.shape[-1] if self.cross_k else 0, self.rows)

    def finish(self) -> None:
        """The window is over: its thread count back, its pool free for the next decoder."""
        super().finish()
        self.holding = False

    def _one(self) -> torch.Tensor:
        """One position from the ``tokens`` buffer: only device work (what a graph records)."""
        return self._static(self.embed(self.tokens), self.index, self.mask, 1)

    def _forward(self, x: torch.Tensor, *, need_logits: bool):
        if not self.fp:
            return super()._forward(x, need_logits=need_logits)
        rows, n, _ = x.shape
        start, end = self.pos, self.pos + n
        if n == 1:
            logits = self._static(x, self.index, self.mask, end)
        else:  # a prefix (BOS + known frames, or a melody's conditioning): causal inside it
            index = torch.arange(start, end, device=self.device)
            bias = self._chunk_bias(start, n, self.span_total, self.dtype)
            self.mask[:, start:end] = 0
            self.index.fill_(start)
            logits = self._static(x, index, bias, end, advance=n)
        self.pos = end
        return logits if need_logits else None

    def _static(self, x, index, bias, end: int, advance: int = 1) -> torch.Tensor:
        """Run the layers at ``index`` with ``bias``; advance the position tensor; logits."""
        rows, n, dim = x.shape
        if n == 1:
            self.mask.index_fill_(1, index, 0.0)
        span = self.span if self.whole else end
        if not self.whole and n == 1:  # CPU: the positions so far, no mask to read
            bias = None
        x = (x + self.positions.index_select(0, index)).reshape(rows * n, dim)
        w, b, norms, heads = self.fused
        with torch.jit.optimized_execution(False):
            x = self.run_static(
                x, rows, self.heads, index, None if bias is None else bias[:, :span], span, w, b, norms, self.table.eps,
                self.matvec, self.k_layers, self.v_layers, self.cross_k, self.cross_v,
                self.cross_bias,
            )  # fmt: skip
        self.index.add_(advance)
        h = self.final_norm(x.view(rows, n, dim)[:, -1])
        y = torch.mm(heads, h.t()).t() if self.matvec else F.linear(h, heads)
        return y.reshape(rows, len(self.lm.lm_heads), -1)
