"""Per-clip metrics for run_grid."""

from __future__ import annotations

import numpy as np
import pytest
from _clips import clips

import musicgen_nb as mg
from musicgen_nb import metrics as M


def test_row_metrics():
    fns = M.row_metrics(["loudness", M.metric("clap_score", model="tiny-clap")])
    assert list(fns) == ["loudness", "clap_score"]
    x = clips(1)[0]
    assert fns["loudness"](x, 32000, "jazz") == pytest.approx(mg.audio.loudness(x, 32000))
    assert np.isnan(fns["clap_score"](x, 32000, None))
    with pytest.raises(ValueError, match="named callables"):
        M.row_metrics([lambda a, sr, p: 0.0])
    assert list(M.row_metrics({"zero": lambda a, sr, p: 0.0})) == ["zero"]


def test_metric_bad_input():
    with pytest.raises(ValueError, match="unknown metric 'fad'; use 'clap_score', 'loudness'"):
        M.metric("fad")
    with pytest.raises(TypeError, match=r"metric 'loudness' takes no \['model'\]"):
        M.metric("loudness", model="x")
    with pytest.raises(
        TypeError, match="metrics must be a list of names/callables or a dict, got str"
    ):
        M.row_metrics("loudness")


def test_named_metrics_run_on_the_device_given():
    from musicgen_nb.metrics.clap import load_clap

    x = clips(1)[0]
    meta = M.metric("clap_score", model="tiny-clap", device="meta")
    with pytest.raises(NotImplementedError, match="copy out of meta"):
        meta(x, 32000, "jazz")  # it ran on "meta": a device that holds no data cannot give a score
    assert next(load_clap("tiny-clap", "meta")[0].parameters()).device.type == "meta"
    on_cpu = M.metric("clap_score", model="tiny-clap", device="cpu")(x, 32000, "jazz")
    assert on_cpu == M.metric("clap_score", model="tiny-clap")(x, 32000, "jazz")
