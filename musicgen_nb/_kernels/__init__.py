"""Small C++ kernels for the int8 decode step: attention over an int8 cache, int8 linears.

Three ops (``torch.ops.musicgen_nb.*``), each with a plain-PyTorch reference
that the tests compare it with:

* ``attend_int8``: one step's self-attention over the int8 key/value cache
  (:func:`attend_reference`), described below;
* ``linear_int8``: an int8 linear (:func:`linear_int8_reference`): each input
  row quantized to int8 with its own scale, weights in :func:`pack_int8`'s
  layout, optionally with the layer norm before it and the GELU and residual
  add after it. A batch-1 step reads every weight once, so this is bound by
  memory bandwidth; the layout makes it one sequential read per thread;
* ``attend_cross``: one step's cross-attention to the text
  (:func:`attend_cross_reference`), whose fixed cost in PyTorch's SDPA was
  larger than its work.

A decode step attends with one query per head over every cached position.
PyTorch's CPU attention reads an fp32 cache at ~15-18 GB/s there: the work per
head is small, so it is bound by latency, not by memory bandwidth. In int8
mode the engine keeps the keys and values as int8, one scale per position and
head, and runs this kernel, which for every (row, head):

1. quantizes the new key and value and writes them into the cache;
2. computes the scores ``scale_t * (q . k_t) * scaling`` (the int8 dot
   product first, the scale after it);
3. takes the softmax and the weighted sum of the int8 values.

It reads a quarter of the fp32 cache bytes, once, and replaces ~12 small ops
of a layer (slices, reshapes, cache writes, attention, transposes) by one call.

The C++ sources are real files, ``csrc/*.cpp`` (one per op) and ``csrc/common.h``,
shipped inside the package. They are compiled once with
:mod:`torch.utils.cpp_extension` into ``<cache>/kernels/<hash>/``
(``MUSICGEN_NB_CACHE``, else ``~/.cache/musicgen_nb``; the hash covers the source
texts); later processes only load the built library (:mod:`.build`). Where no
compiler (or ninja) exists, :func:`load` returns False and the engine runs
:func:`attend_reference`'s arithmetic in plain PyTorch instead, and the int8
layers use fbgemm (:mod:`musicgen_nb.engine.quantize`).

Modules: :mod:`.build` (build and load), :mod:`.packing` (weight layouts),
:mod:`.reference` (the PyTorch arithmetic), :mod:`.ops` (C++ or reference).
"""

from .build import load, status
from .ops import attend, linear_int8
from .packing import GROUP, pack_int4, pack_int8, quantize_int4, unpack_int4, unpack_int8
from .reference import (
    attend_cross_reference,
    attend_reference,
    linear_int4_reference,
    linear_int8_reference,
    quantize_kv,
)

__all__ = [
    "load", "status", "attend", "attend_reference", "quantize_kv", "pack_int8", "unpack_int8",
    "linear_int8", "linear_int8_reference", "attend_cross_reference", "GROUP", "quantize_int4",
    "pack_int4", "unpack_int4", "linear_int4_reference",
]  # fmt: skip
