"""Checkpoints: the architectures we know, offline builds, loading, adapters, stand-ins.

- :mod:`~musicgen_nb.checkpoints.specs`: the stored real configurations and the tiny layouts.
- :mod:`~musicgen_nb.checkpoints.offline`: seeded random builds, saved once like a hub checkpoint.
- :mod:`~musicgen_nb.checkpoints.tokenizer`: the offline T5 tokenizer and its corpus.
- :mod:`~musicgen_nb.checkpoints.loading`: names to sources, devices, local checks, ``from_pretrained``.
- :mod:`~musicgen_nb.checkpoints.adapter`: the fine-tune folder format that ``load(adapter=)`` reads.
- :mod:`~musicgen_nb.checkpoints.standins`: offline stand-ins for real checkpoints.
- :mod:`~musicgen_nb.checkpoints.hub_standins`: the same stand-ins for code that uses transformers.
- :mod:`~musicgen_nb.checkpoints.dataset_standins`: ``datasets.load_dataset`` stand-ins.
- :mod:`~musicgen_nb.checkpoints.audiocraft_format`: audiocraft's checkpoint layout, read and written.

Importing this package imports no torch (``loading``, ``adapter`` and ``audiocraft_format``
are imported by path).

Examples
--------
>>> from musicgen_nb import checkpoints
>>> checkpoints.OFFLINE[:2], list(checkpoints.known())[0]
(('tiny', 'tiny-melody'), 'small')
"""

from .offline import build_random, cache_root, offline_checkpoint, offline_processor
from .specs import (
    OFFLINE,
    ORDER,
    RECIPE_VERSION,
    SEED,
    TINY_INIT_SCALE,
    build_config,
    known,
    model_class,
    offline_spec,
    short_name,
    tiny_spec,
)
from .tokenizer import build_tokenizer, corpus

__all__ = [
    "OFFLINE",
    "ORDER",
    "RECIPE_VERSION",
    "SEED",
    "TINY_INIT_SCALE",
    "build_config",
    "build_random",
    "build_tokenizer",
    "cache_root",
    "corpus",
    "known",
    "model_class",
    "offline_checkpoint",
    "offline_processor",
    "offline_spec",
    "short_name",
    "tiny_spec",
]
