"""The studio's run history: every take kept, replayed, re-run, drawn and saved.

A mixin of :class:`~musicgen_nb.ui.studio.Studio`: it reads the studio's
``records`` and ``generations`` and the widgets of
:mod:`~musicgen_nb.ui.studio_layout` (player, figures, history table, run
picker and its buttons), and calls ``generate`` and ``_error``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import studio_layout as layout
from ._util import display_bundle, escape, one_line
from .studio_run import RECORD_PARAMS, figures, record

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from ..generation import Generation


class RunHistory:
    """Runs of a studio, by run id (1, 2, ...): see :class:`~musicgen_nb.ui.studio.Studio`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.studio("tiny", display=False)
    >>> g = st.generate_now(duration=0.5)
    >>> st.history["run"].tolist(), len(st.figures_for(1))
    ([1], 2)
    """

    records: list
    generations: list

    @property
    def history(self) -> pd.DataFrame:
        """Every run so far as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.records)

    def _figures_toggled(self, shown: bool) -> None:
        self.figures.layout.display = None if shown else "none"
        if shown and self.records:
            self.show_figures(self.run_picker.value)

    def _add(self, g, p: dict, elapsed: float) -> None:
        self.generations.append(g)
        self.seed.value = g.seed
        run_id = len(self.records) + 1
        self.records.append(record(run_id, p, g, elapsed))
        self.history_html.value = layout.history_table(self.records)
        self.run_picker.options = [(f"#{r['run']}", r["run"]) for r in self.records]
        self.run_picker.value = run_id
        for b in (self.replay_button, self.rerun_button, self.save_button):
            b.disabled = False
        self.show(run_id)
        if self.figures_button.value:
            self.show_figures(run_id)
        if g.interrupted:
            self.message.value = f"<span style='color:#8a5a00'>stopped: kept {g.duration:.2f} s of {p['duration']:g} s</span>"

    def _pick(self, run_id) -> int:
        ids = [r["run"] for r in self.records]
        if run_id not in ids:
            raise ValueError(f"run_id must be one of {ids}, got {run_id!r}")
        return ids.index(run_id)

    def show(self, run_id: int) -> None:
        """Load run ``run_id`` into the synced player."""
        g = self.generations[self._pick(run_id)]
        label = f"#{run_id}  {g.prompts[0] or '(unconditional)'}  ·  seed {g.seed}"
        self.player.frame_rate = float(g.frame_rate)
        self.player.show(g.audio, g.sample_rate, codes=g.codes, label=label)

    def replay(self, run_id: int) -> None:
        """Play an earlier run again (loads it into the player)."""
        self.show(run_id)
        if self.figures_button.value:
            self.show_figures(run_id)

    def figures_for(self, run_id: int | None = None) -> list:
        """The plotly token grid and spectrogram of a run (default: the latest)."""
        g = self.generations[self._pick(run_id if run_id is not None else self.records[-1]["run"])]
        return figures(g)

    def show_figures(self, run_id: int | None = None) -> list:
        """Draw the plotly figures of a run into the figures area (shown by its toggle button).

        Works from the run's background thread too: outputs are set, not captured.
        """
        self.figures.outputs = ()
        try:
            figs = self.figures_for(run_id)
        except Exception as exc:
            self._error(one_line(exc))
            return []
        for fig in figs:
            fig.update_layout(height=260, margin=dict(l=60, r=20, t=40, b=40))
        self.figures.outputs = tuple(display_bundle(fig) for fig in figs)
        return figs

    def rerun(self, run_id: int, *, wait: bool = False) -> Generation | bool | None:
        """Run an earlier take again with its exact parameters and seed."""
        r = self.records[self._pick(run_id)]
        p = {param: r[key] for key, param in RECORD_PARAMS.items()}
        return self.generate(params=p, wait=wait)

    def save(self, run_id: int, directory: str | os.PathLike | None = None) -> list[Path]:
        """Save a run with :meth:`Generation.save`; returns the paths."""
        try:
            paths = self.generations[self._pick(run_id)].save(directory or self.save_dir)
        except Exception as exc:
            self._error(one_line(exc))
            return []
        names = ", ".join(escape(p) for p in paths)
        self.message.value = f"<span style='color:#1b6e20'>saved {names}</span>"
        return paths
