"""Interactive panels (ipywidgets/anywidget): the studio and the synced player.

Every widget wraps plain methods that tests and scripts call directly.
"""

from .studio import Studio, run, studio
from .synced_player import SyncedPlayer

__all__ = ["Studio", "SyncedPlayer", "run", "studio"]
