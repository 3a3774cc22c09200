"""One rule for "can this hub checkpoint be had": the cache, the offline switches, the hub's answer.

:func:`cached_or_reachable` is what the model loader, the CLAP metric and the
demo ask before they touch the network, so all three treat ``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE`` and the cache (``HF_HUB_CACHE``/``HF_HOME``) alike.

Examples
--------
>>> isinstance(hub_offline(), bool)
True
"""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """Whether the Hugging Face hub is turned off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    Examples
    --------
    >>> saved = dict(os.environ); os.environ["TRANSFORMERS_OFFLINE"] = "true"
    >>> hub_offline()
    True
    >>> os.environ.clear(); os.environ.update(saved)
    """
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))  # fmt: skip


def in_hub_cache(repo_id: str) -> bool:
    """Whether ``repo_id``'s ``config.json`` is in the Hugging Face cache (``HF_HUB_CACHE`` or ``HF_HOME`` now).

    Examples
    --------
    >>> in_hub_cache("nobody/not-a-model")
    False
    """
    from huggingface_hub import try_to_load_from_cache

    home = os.environ.get("HF_HOME")
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else None)
    return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache), str)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers within ``timeout`` seconds.

    Examples
    --------
    >>> isinstance(hub_reachable(timeout=0.5), bool)
    True
    """
    import urllib.request

    try:
        urllib.request.urlopen(
            "https://huggingface.co/api/models/facebook/musicgen-small", timeout=timeout
        )
    except Exception:
        return False
    return True


def cached_or_reachable(repo_id: str, timeout: float = 3.0) -> bool:
    """Whether hub checkpoint ``repo_id`` is cached, or the hub is on and answers within ``timeout`` s.

    Examples
    --------
    >>> saved = dict(os.environ); os.environ["HF_HUB_OFFLINE"] = "1"
    >>> cached_or_reachable("nobody/not-a-model")
    False
    >>> os.environ.clear(); os.environ.update(saved)
    """
    return in_hub_cache(repo_id) or (not hub_offline() and hub_reachable(timeout))
