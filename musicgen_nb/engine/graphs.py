"""Shape buckets for the static step, and its CUDA graphs (one per bucket).

A CUDA graph replays a recorded sequence of kernels on the same memory, with
one launch instead of one per op: it pays where a decode step is bound by
kernel launches (batch 1 on A100/H100). Its shapes and addresses must not
change, so the static step (:mod:`musicgen_nb.engine.static`) keeps every
input and output in buffers that live in a per-session pool, and the graphs are
keyed by the shape bucket: cache positions (:func:`bucket` of the window's
length, multiples of :data:`CACHE_STEP`), text length (multiples of
:data:`TEXT_STEP`) and rows (batch times guidance branches).

:func:`capture` records a step function after warm-up runs on a side stream, as
PyTorch's documentation prescribes, and restores the state the warm-up changed.
It runs on CUDA; :func:`eager` records the same path on any device (tests).
:class:`Pool` keeps the buffers and graphs of one model (:func:`take`).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "bucket", "capture", "eager", "Pool", "take", "pool_of", "drop", "CACHE_STEP", "TEXT_STEP",
    "SPAN_STEP", "WARMUP",
]  # fmt: skip

#: Cache positions are allocated in multiples of this (fewer graphs, more reuse).
CACHE_STEP = 64
#: Text lengths are padded (with masked keys) to multiples of this.
TEXT_STEP = 16
#: A window attends over its length rounded up to this (a short call after a long one
#: does not read the whole cache); the span is part of a graph's key.
SPAN_STEP = 256
#: Eager runs before a capture (PyTorch's advice: let lazy init and autotuning happen).
WARMUP = 2
_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TAKING = threading.Lock()


def bucket(n: int, step: int) -> int:
    """``n`` rounded up to a multiple of ``step`` (at least ``step``).

    Examples
    --------
    >>> bucket(1, 64), bucket(64, 64), bucket(65, 64), bucket(13, 16)
    (64, 64, 128, 16)
    """
    if not isinstance(n, int) or n < 0 or not isinstance(step, int) or step < 1:
        raise ValueError(f"bucket needs n >= 0 and step >= 1 (ints), got n={n!r}, step={step!r}")
    return max(step, -(-n // step) * step)


def capture(
    step: Callable[[], torch.Tensor], state: list[torch.Tensor], recorder: Callable | None = None
):
    """Record ``step()`` in a CUDA graph (or with ``recorder``); return ``(graph, output)``.

    ``step`` reads and writes only tensors that stay alive (the pool's buffers and
    the weights). ``state`` lists the tensors the warm-up runs change that the
    caller still needs (the position and the mask): they are put back as they
    were. ``graph.replay()`` then runs the step and leaves its result in ``output``.
    ``recorder(step, state)`` replaces the CUDA graph: :func:`eager` runs the same
    path on the CPU.

    Examples
    --------
    >>> import torch
    >>> device = "cuda" if torch.cuda.is_available() else "cpu"
    >>> x = torch.zeros(3, device=device)
    >>> g, out = capture(lambda: x.add_(1) * 2, [x], None if device == "cuda" else eager)
    >>> x.tolist()  # the state is as it was
    [0.0, 0.0, 0.0]
    >>> g.replay(); g.replay(); out.tolist()
    [4.0, 4.0, 4.0]
    """
    if recorder is not None:
        return recorder(step, state)
    saved = [t.clone() for t in state]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            step()
    torch.cuda.current_stream().wait_stream(side)
    for t, s in zip(state, saved, strict=True):
        t.copy_(s)
    graph = torch.cuda.CUDAGraph()
    # thread_local: another thread's CUDA work (a stream's EnCodec) does not break the capture
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = step()
    for t, s in zip(state, saved, strict=True):  # recording does not run; this is cheap
        t.copy_(s)
    return graph, out


class _Replay:
    """What :func:`eager` records: each replay runs the step into the same output tensor."""

    def __init__(self, step: Callable[[], torch.Tensor], out: torch.Tensor) -> None:
        self.step, self.out = step, out

    def replay(self) -> None:
        self.out.copy_(self.step())


def eager(step: Callable[[], torch.Tensor], state: list[torch.Tensor]):
    """A recorder for :func:`capture` that runs on any device: ``replay()`` runs ``step`` eagerly.

    Like a CUDA graph, its output is one tensor that every replay overwrites, and
    recording leaves ``state`` as it was. Unlike one, it holds ``step``: a pool's eager
    graphs keep the decoder that recorded them, and its model, alive until
    :func:`drop` (or :func:`musicgen_nb.engine.static.release`). It is meant for tests.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2)
    >>> g, out = eager(lambda: x.add_(1) * 1, [x])
    >>> x.tolist(), out.tolist()
    ([1.0, 1.0], [2.0, 2.0])
    """
    saved = [t.clone() for t in state]
    out = step()
    for t, s in zip(state, saved, strict=True):
        t.copy_(s)
    return _Replay(step, out), out


class Pool:
    """Buffers of the static step kept for one decoder module, and their graphs.

    :meth:`buffer` hands back the same tensor while the shape and dtype fit; when
    one no longer fits, every buffer and graph is dropped before the new one is
    allocated (so an old cache is never alive beside the new one). ``holder`` is a
    weak reference to the :class:`StaticDecoder` that uses it now.

    Examples
    --------
    >>> import torch
    >>> p = Pool()
    >>> a = p.buffer("k", (2, 3), torch.float32, torch.device("cpu"))
    >>> p.buffer("k", (2, 3), torch.float32, torch.device("cpu")) is a
    True
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.graphs: dict[tuple, tuple] = {}
        self.holder: weakref.ref | None = None

    def buffer(self, name, shape, dtype, device, *, at_least: int | None = None) -> torch.Tensor:
        """The buffer ``name``; with ``at_least=d``, any with dimension ``d`` as large or larger.

        Examples
        --------
        >>> import torch
        >>> p, cpu = Pool(), torch.device("cpu")
        >>> k = p.buffer("k", (2, 64), torch.float32, cpu)
        >>> p.buffer("k", (2, 40), torch.float32, cpu, at_least=1) is k  # fits: reused
        True
        >>> v = p.buffer("v", (2, 64), torch.float32, cpu)
        >>> bigger = p.buffer("k", (2, 128), torch.float32, cpu)  # v is dropped first
        >>> list(p.buffers), bigger.shape
        (['k'], torch.Size([2, 128]))
        """
        old = self.buffers.get(name)
        shape = tuple(shape)
        if old is not None and old.dtype == dtype and old.device == device:
            if tuple(old.shape) == shape:
                return old
            if at_least is not None and _fits(old.shape, shape, at_least):
                return old
        if old is not None:  # no old buffer may outlive this call beside the new one
            old = None
            self.buffers.clear()
            self.graphs.clear()
        # zeros, not empty: masked positions weigh 0, and 0 * NaN (stale memory) would be NaN
        self.buffers[name] = torch.zeros(shape, dtype=dtype, device=device)
        return self.buffers[name]


def _fits(have, want, dim: int) -> bool:
    return len(have) == len(want) and all(
        h >= w if d == dim else h == w for d, (h, w) in enumerate(zip(have, want, strict=True))
    )


def take(lm: object, decoder: object) -> Pool:
    """The pool of ``lm``, now held by ``decoder``; a private one while another decoder holds it.

    A decoder holds its pool while its ``holding`` is true (until its window ends).

    Examples
    --------
    >>> import torch
    >>> class Dec:
    ...     holding = True
    >>> lm, a, b = torch.nn.Linear(1, 1), Dec(), Dec()
    >>> take(lm, a) is take(lm, b), take(lm, a) is pool_of(lm)  # b runs beside a: its own
    (False, True)
    >>> a.holding = False; take(lm, b) is pool_of(lm)  # a is done: b reuses the pool
    True
    """
    with _TAKING:
        pool = _POOLS.get(lm)
        if pool is None:
            pool = _POOLS[lm] = Pool()
        holder = pool.holder() if pool.holder is not None else None
        if holder is not None and holder is not decoder and getattr(holder, "holding", False):
            pool = Pool()  # a decoder running beside it (another thread, or interleaved)
        pool.holder = weakref.ref(decoder)
        return pool


def pool_of(lm: object) -> Pool | None:
    """The shared pool of ``lm``, if it has one.

    Examples
    --------
    >>> import torch
    >>> pool_of(torch.nn.Linear(1, 1)) is None
    True
    """
    return _POOLS.get(lm)


def drop(lm: object) -> None:
    """Forget the pool of ``lm`` (its buffers and graphs are freed with it).

    Examples
    --------
    >>> import torch
    >>> lm = torch.nn.Linear(1, 1)
    >>> _ = take(lm, torch.nn.Identity()); drop(lm); pool_of(lm) is None
    True
    """
    with _TAKING:
        _POOLS.pop(lm, None)
