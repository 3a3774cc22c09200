"""Audio players for Jupyter: static players and galleries, and the live player of a stream.

Static players (:func:`player`, :func:`gallery`) embed compressed audio as
plain HTML (IPython display only). The live player (:func:`live`) is an
anywidget that plays a :class:`~musicgen_nb.streaming.Stream` while it is
generated. :func:`render_generation` and :func:`render_stream` are the
renderers the top-level package registers for ``Generation`` and ``Stream``.

Examples
--------
>>> import numpy as np
>>> from musicgen_nb.players import player
>>> p = player(np.zeros(32000, dtype=np.float32), 32000, label="silence")
>>> p.fmt in ("ogg", "wav") and "<audio" in p._repr_html_()
True
"""

from importlib import import_module

from ..audio.ogg import OGG_SERIAL
from .static import FORMATS, MIME, Gallery, Player, gallery, player, render_generation

# The live player is an anywidget: it loads on first use, so static players and every
# Generation's display stay free of the widget stack (as before the move).
_LIVE = ("LivePlayer", "live", "render_stream")

__all__ = [
    "FORMATS",
    "MIME",
    "OGG_SERIAL",
    "Gallery",
    "LivePlayer",
    "Player",
    "gallery",
    "live",
    "player",
    "render_generation",
    "render_stream",
]


def __getattr__(name: str) -> object:
    if name in _LIVE:
        return getattr(import_module(".live_player", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
