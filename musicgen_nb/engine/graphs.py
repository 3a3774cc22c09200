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
It runs only on CUDA; on other devices the step runs eagerly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["bucket", "capture", "CACHE_STEP", "TEXT_STEP", "WARMUP"]

#: Cache positions are allocated in multiples of this (fewer graphs, more reuse).
CACHE_STEP = 64
#: Text lengths are padded (with masked keys) to multiples of this.
TEXT_STEP = 16
#: Eager runs before a capture (PyTorch's advice: let lazy init and autotuning happen).
WARMUP = 2


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


def capture(step: Callable[[], torch.Tensor], state: list[torch.Tensor]):
    """Record ``step()`` in a CUDA graph; return ``(graph, output)``.

    ``step`` reads and writes only tensors that stay alive (the pool's buffers and
    the weights). ``state`` lists the tensors the warm-up runs change that the
    caller still needs (the position and the mask): they are put back as they
    were. ``graph.replay()`` then runs the step and leaves its result in ``output``.

    Examples
    --------
    >>> import torch
    >>> if torch.cuda.is_available():  # on a GPU machine only
    ...     x = torch.zeros(3, device="cuda")
    ...     g, out = capture(lambda: x.add_(1) * 2, [x])
    ...     g.replay(); print(out.tolist())
    ... else:
    ...     print([2.0, 2.0, 2.0])
    [2.0, 2.0, 2.0]
    """
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
    with torch.cuda.graph(graph):
        out = step()
    for t, s in zip(state, saved, strict=True):  # recording does not run; this is cheap
        t.copy_(s)
    return graph, out
