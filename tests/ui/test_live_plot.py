"""The live loss plot of a fine-tune: one display, redrawn in place."""

from __future__ import annotations

import json

import pytest

from musicgen_nb.ui import live_plot
from musicgen_nb.ui.live_plot import LivePlot, in_notebook


class _Handle:
    def __init__(self, bundle):
        self.bundles = [bundle]

    def update(self, bundle, raw=False):
        assert raw
        self.bundles.append(bundle)


@pytest.fixture
def shown(monkeypatch):
    """Replace IPython's display: record what goes out, return a handle."""
    import IPython.display

    handles = []

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id
        handles.append(_Handle(bundle))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return handles


def _rows(n):
    return [dict(step=i, loss=5.0 / i, accuracy=i / 100) for i in range(1, n + 1)]


def test_one_display_redrawn_every_few_steps_and_at_the_end(shown):
    plot = LivePlot(every=3)
    (handle,) = shown
    assert handle.bundles[0]["text/plain"] == "loss plot, 0 steps"
    for n in range(1, 8):
        plot.update(_rows(n))
    assert [b["text/plain"] for b in handle.bundles[1:]] == [
        "loss plot, 3 steps",
        "loss plot, 6 steps",
    ]
    plot.update(_rows(7), final=True)
    assert handle.bundles[-1]["text/plain"] == "loss plot, 7 steps" and len(shown) == 1


def test_the_bundle_carries_plotly_json_and_light_html():
    bundle = LivePlot.bundle(_rows(4))
    fig = bundle["application/vnd.plotly.v1+json"]
    assert json.dumps(fig) and [t["name"] for t in fig["data"]][0] == "loss"
    assert list(fig["data"][0]["y"]) == [r["loss"] for r in _rows(4)]
    assert "cdn.plot.ly" in bundle["text/html"] and len(bundle["text/html"]) < 100_000


def test_not_a_notebook_here(monkeypatch):
    assert in_notebook() is False
    import IPython

    class ZMQInteractiveShell:
        pass

    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    assert live_plot.in_notebook() is True


def test_training_draws_the_plot_when_asked(shown, tiny, tmp_path):
    pytest.importorskip("peft")
    from musicgen_nb import finetune as FT

    data = FT.dataset(FT.synth_dataset(tmp_path / "d", seconds=1.0), cache_dir=tmp_path / "c")
    FT.train(tiny, data, steps=3, out=tmp_path / "run", progress=False, plot=True)
    (handle,) = shown
    assert handle.bundles[-1]["text/plain"] == "loss plot, 3 steps"
    FT.train(tiny, data, steps=4, out=tmp_path / "run", progress=True, plot=False)
    assert len(shown) == 1  # plot=False draws nothing
