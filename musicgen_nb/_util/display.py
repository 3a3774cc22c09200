"""The display registry: how a ``Generation`` or a ``Stream`` renders itself in Jupyter.

The core (everything at or below ``models``) imports no widget or plotting library.
Its result objects ask this registry for a renderer by kind; the top-level package
registers the real ones (players and the live player) as ``"module:function"``
strings, imported on first use, the way pandas finds its plotting backend.

Examples
--------
>>> register("example", "html:escape")
>>> renderer("example")("<b>")
'&lt;b&gt;'
>>> renderer("nothing") is None
True
"""

from __future__ import annotations

from importlib import import_module

_RENDERERS: dict[str, object] = {}


def register(kind: str, target) -> None:
    """Register ``target`` (a callable, or ``"module:function"``) as the renderer of ``kind``."""
    if not isinstance(kind, str) or not (callable(target) or isinstance(target, str)):
        raise TypeError(
            f"register(kind: str, target: callable or 'module:function'), got {kind!r}, {target!r}"
        )
    _RENDERERS[kind] = target


def renderer(kind: str):
    """The renderer registered for ``kind``, imported on first use; None when there is none."""
    target = _RENDERERS.get(kind)
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = _RENDERERS[kind] = getattr(import_module(module), attr)
    return target
