"""``display_audio``: audiocraft's notebook helper, with musicgen-nb's players.

Examples
--------
>>> import torch
>>> display_audio(torch.zeros(2, 1, 800), 8000)  # doctest: +ELLIPSIS
Player(None, 0.1 s at 8000 Hz, 1 ch, ogg ... bytes)
Player(None, 0.1 s at 8000 Hz, 1 ch, ogg ... bytes)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..players import player
from .params import as_batch

if TYPE_CHECKING:
    from typing import Any

__all__ = ["display_audio"]


def display_audio(samples: Any, sample_rate: int) -> None:
    """Show one audio player per clip of ``samples`` (``[B, C, T]`` or ``[C, T]``).

    Players embed compressed audio, all of it (no 30 s cap). Outside a notebook
    they print their text form.

    Examples
    --------
    >>> import numpy as np
    >>> display_audio(np.zeros((1, 800), np.float32), 8000)  # doctest: +ELLIPSIS
    Player(None, 0.1 s at 8000 Hz, 1 ch, ogg ... bytes)
    """
    from IPython.display import display

    for clip in as_batch(samples, "samples"):
        display(player(clip, sample_rate, max_seconds=None))
