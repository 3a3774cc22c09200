"""The fine-tuning loss figure."""

from __future__ import annotations

import pandas as pd

from musicgen_nb.viz.loss import loss_figure

ROWS = [dict(step=i, loss=8.0 - i, accuracy=i / 10) for i in range(1, 6)]


def test_loss_and_accuracy_share_the_step_axis():
    fig = loss_figure(ROWS)
    loss, acc = fig.data
    assert loss.name == "loss" and acc.name == "token accuracy (batch)"
    assert list(loss.x) == list(acc.x) == [1, 2, 3, 4, 5]
    assert list(loss.y) == [7.0, 6.0, 5.0, 4.0, 3.0] and list(acc.y) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert acc.yaxis == "y2" and tuple(fig.layout.yaxis2.range) == (0, 1)
    assert fig.layout.xaxis.title.text == "step" and fig.layout.title.text == "Fine-tuning"


def test_a_frame_gives_the_same_figure_and_empty_history_draws():
    assert loss_figure(pd.DataFrame(ROWS)).to_json() == loss_figure(ROWS).to_json()
    empty = loss_figure([])
    assert [len(t.x) for t in empty.data] == [0, 0]


def test_loss_figure_accuracy_axis_has_round_percent_ticks():
    fig = loss_figure([dict(step=1, loss=7.6, accuracy=0.0), dict(step=2, loss=6.9, accuracy=0.1)])
    y2 = fig.layout.yaxis2
    assert (y2.dtick, y2.tickformat, y2.showgrid, tuple(y2.range)) == (0.25, ".0%", False, (0, 1))
