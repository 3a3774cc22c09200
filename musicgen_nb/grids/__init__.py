"""Grids of generations: a table of clips, run resumably on this machine or on Ray.

:func:`grid` builds the table (one row per clip, :mod:`.table`). :func:`run_grid`
(:mod:`.run`) generates every row with :func:`generate_batch` (:mod:`.batch`, shared
by the local backend and the Ray actors of :mod:`.ray_backend`), writes one audio file
per row and ``DIR/manifest.csv`` (and ``manifest.parquet`` with pyarrow), and picks up
where it stopped when it is run again: :mod:`.journal` keeps the run folder consistent
after a crash or ``kill -9``, and an interrupted clip is never saved
(:class:`GridInterrupted`). :mod:`.spec` reads the YAML spec of ``musicgen-nb grid``.
"""

from .batch import GridInterrupted, generate_batch
from .journal import JOURNAL, MANIFEST, MANIFEST_CSV
from .run import BACKENDS, run_grid
from .table import PARAMS, clip_id, grid

__all__ = [
    "grid", "run_grid", "clip_id", "PARAMS", "BACKENDS", "JOURNAL", "MANIFEST", "MANIFEST_CSV",
    "generate_batch", "GridInterrupted",
]  # fmt: skip
