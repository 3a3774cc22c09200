"""Keep whole parts of a model in fp32 while transformers loads the rest in half precision.

transformers' loader keeps the modules a class lists in ``_keep_in_fp32_modules_strict``
in fp32 whatever ``dtype=`` asks (that is how T5's ``wo`` stays fp32). :func:`kept_fp32`
extends that list with whole top-level parts for the length of one load, so the weights
of the text encoder and the codec are read in fp32 and the decoder's straight into fp16
or bf16: no fp32 copy of the decoder is made, and nothing is cast afterwards.

Examples
--------
>>> from transformers import MusicgenForConditionalGeneration as Cls
>>> with kept_fp32(Cls, ("text_encoder",)):
...     Cls._keep_in_fp32_modules_strict
['^text_encoder.']
>>> "_keep_in_fp32_modules_strict" in Cls.__dict__
False
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["kept_fp32"]

_LOCK = threading.Lock()
_MISSING = object()


@contextmanager
def kept_fp32(cls: type, parts: tuple[str, ...]) -> Iterator[None]:
    """Have transformers' loader keep the top-level ``parts`` of ``cls`` in fp32 inside the block.

    The class attribute is restored on exit (and loads that overlap wait for each
    other), so other loads of ``cls`` are not affected. No ``parts``: nothing changes.
    (Examples: see the module.)

    Examples
    --------
    >>> from transformers import MusicgenForConditionalGeneration as Cls
    >>> with kept_fp32(Cls, ()):
    ...     "_keep_in_fp32_modules_strict" in Cls.__dict__
    False
    """
    if not parts:
        yield
        return
    with _LOCK:
        before = cls.__dict__.get("_keep_in_fp32_modules_strict", _MISSING)
        inherited = getattr(cls, "_keep_in_fp32_modules_strict", None) or []
        cls._keep_in_fp32_modules_strict = sorted({*inherited, *(f"^{p}." for p in parts)})
        try:
            yield
        finally:
            if before is _MISSING:
                del cls._keep_in_fp32_modules_strict
            else:
                cls._keep_in_fp32_modules_strict = before
