"""The device the suite runs on, tolerances by dtype, and a census of live decode caches.

``MUSICGEN_NB_TEST_DEVICE`` (default ``cpu``) picks the device of the session
fixtures in ``tests/conftest.py``; tests marked ``gpu`` run only when it is a CUDA
device that exists. Tests that compare floats take their tolerance from
:func:`tolerance` of the dtype they ran in, not a fixed fp32 figure.
"""

from __future__ import annotations

import gc
import os

import torch

#: The device the session fixtures load on: ``MUSICGEN_NB_TEST_DEVICE``, default cpu.
TEST_DEVICE = os.environ.get("MUSICGEN_NB_TEST_DEVICE", "cpu") or "cpu"

#: (rtol, atol) per dtype: fp32 on the CPU is near exact; TF32 and half are not.
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}


def on_cuda() -> bool:
    """True when the suite runs on a CUDA device that exists."""
    return TEST_DEVICE.startswith("cuda") and torch.cuda.is_available()


def tolerance(dtype: torch.dtype, device: torch.device | str = "cpu") -> dict:
    """``rtol``/``atol`` for ``torch.testing.assert_close`` of results computed in ``dtype``.

    fp32 on CUDA runs cuBLAS/cuDNN with TF32 allowed (10 mantissa bits): the fp16 figures.
    """
    if dtype == torch.float32 and torch.device(device).type == "cuda":
        dtype = torch.float16
    rtol, atol = TOLERANCES[dtype]
    return dict(rtol=rtol, atol=atol)


def generators(s, seeds) -> list[torch.Generator]:
    """One generator per seed on the session's device."""
    return [torch.Generator(device=s.device).manual_seed(x) for x in seeds]


def release_static_pools() -> None:
    """Free every static-step pool and fused copy in the process (they outlive calls by design,
    and a census of cache tensors would count them).

    That includes the pools of models no session holds any more: a graph recorded with
    :func:`~musicgen_nb.engine.graphs.eager` (docstring examples, tests) keeps its decoder,
    and so its model, alive until the pool is dropped.
    """
    from musicgen_nb.engine import graphs, static

    for lm in list(graphs._POOLS.keys()):
        static.release(lm)  # what a dropped pool still holds in cycles goes at the census's collect


def live_caches(s) -> int:
    """Key/value cache tensors alive now (after a full collection): 2 per live decoder.

    A cache is ``[layers, rows, heads, positions, head_dim]``; nothing else has that shape.
    """
    layers = s.model.config.decoder.num_hidden_layers
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o) is torch.Tensor and o.dim() == 5 and o.shape[0] == layers
    )


def live_decoders() -> int:
    """:class:`musicgen_nb.engine.Decoder` objects alive now (after a full collection)."""
    from musicgen_nb.engine import Decoder

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Decoder)
