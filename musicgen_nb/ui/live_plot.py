"""A live training-loss plot, redrawn in place in a notebook while a fine-tune runs.

:func:`musicgen_nb.finetune.train` draws one when ``plot=True``, or with
``plot="auto"`` when it runs in a notebook kernel (:func:`in_notebook`).

Examples
--------
>>> in_notebook()
False
>>> LivePlot.bundle([dict(step=1, loss=7.6, accuracy=0.0)])["text/plain"]
'loss plot, 1 steps'
"""

from __future__ import annotations

import json

from ..viz.loss import loss_figure


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython ``ZMQInteractiveShell``).

    Examples
    --------
    >>> in_notebook()
    False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LivePlot:
    """A loss curve redrawn in place in a notebook (plotly, through IPython's display).

    The figure goes out as a raw mime bundle under one display id, so each redraw
    replaces the last one (a plotly figure displayed as an object would append).

    Parameters
    ----------
    every : int
        Redraw every ``every`` steps (and at the end, ``final=True``).

    Examples
    --------
    >>> sorted(LivePlot.bundle([dict(step=1, loss=7.6, accuracy=0.0)]))
    ['application/vnd.plotly.v1+json', 'text/html', 'text/plain']
    """

    def __init__(self, every: int):
        from IPython.display import display

        self.every = every
        self.handle = display(self.bundle([]), raw=True, display_id=True)

    @staticmethod
    def bundle(history) -> dict:
        """The mime bundle of the loss figure of ``history``: plotly JSON, HTML and text."""
        fig = loss_figure(history)
        return {
            "application/vnd.plotly.v1+json": json.loads(fig.to_json()),  # JupyterLab
            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn"),  # Colab, exports
            "text/plain": f"loss plot, {len(history)} steps",
        }

    def update(self, history, final=False) -> None:
        """Redraw with ``history`` on every ``every``-th step, or now when ``final``."""
        step = history[-1]["step"] if history else 0
        if history and (final or step % self.every == 0):
            self.handle.update(self.bundle(history), raw=True)
