"""musicgen-nb: use, teach and take apart MusicGen in a notebook.

The core (models, streaming, generation and everything below them) imports no
widget or plotting library. Every submodule is imported lazily on first use.
The layers are described in ``docs/architecture.md``.

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> g = s.generate("lo-fi beat", duration=2.0, seed=1, progress=False)
>>> g.audio.shape
(1, 1, 64000)
"""

import os as _os
from importlib import import_module

from ._util import display as _display
from ._version import __version__

# How a Generation or a Stream shows itself in Jupyter: the core asks this registry, so
# it never imports the players (or ipywidgets) itself. Imported on first display.
_display.register("generation", "musicgen_nb.players:render_generation")
_display.register("stream", "musicgen_nb.players:render_stream")

# MUSICGEN_NB_STANDIN=1: transformers' from_pretrained and pipeline load the offline stand-ins
# too (musicgen_nb.testing). Installed on first import of transformers; nothing when off.
if _os.environ.get("MUSICGEN_NB_STANDIN", "").strip().lower() in ("1", "true", "yes", "on"):
    from .checkpoints.hub_standins import install as _install_standins

    _install_standins()

# Submodules and names load on first use, so ``import musicgen_nb`` stays cheap.
_LAZY = {
    "audio": ("musicgen_nb.audio", None),
    "models": ("musicgen_nb.models", None),
    "finetune": ("musicgen_nb.finetune", None),
    "melody": ("musicgen_nb.melody", None),
    "patterns": ("musicgen_nb.patterns", None),
    "tokens": ("musicgen_nb.tokens", None),
    "testing": ("musicgen_nb.testing", None),
    "Generation": ("musicgen_nb.generation", "Generation"),
    "MusicGen": ("musicgen_nb.models", "MusicGen"),
    "list_models": ("musicgen_nb.catalog", "list_models"),
    "load": ("musicgen_nb.models", "load"),
    "sweep": ("musicgen_nb.sweeps", "sweep"),
    "SweepResult": ("musicgen_nb.sweeps", "SweepResult"),
    "grid": ("musicgen_nb.grids", "grid"),
    "run_grid": ("musicgen_nb.grids", "run_grid"),
    "metrics": ("musicgen_nb.metrics", None),
    "studio": ("musicgen_nb.ui", "studio"),
    "viz": ("musicgen_nb.viz", None),
    "players": ("musicgen_nb.players", None),
    "teaching": ("musicgen_nb.teaching", None),
    "ui": ("musicgen_nb.ui", None),
}

__all__ = ["__version__", *_LAZY]


def __dir__():
    return sorted(__all__)


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'musicgen_nb' has no attribute {name!r}")
