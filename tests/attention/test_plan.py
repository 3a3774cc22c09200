"""Tests for musicgen_nb.attention.plan: the capture's selection, size estimate and budget."""

import pytest

from musicgen_nb.attention import estimate_mb, plan_capture


def test_estimate(tiny, tiny_melody):
    est = estimate_mb(tiny, batch=2, frames=100, text_len=10, layers=2)
    assert est["positions"] == est["steps"] == 103
    assert est["self_mb"] == pytest.approx(2 * 2 * 103 * 103 * 2 / 1e6)
    assert est["cross_mb"] == pytest.approx(2 * 2 * 103 * 10 * 2 / 1e6)
    m = estimate_mb(tiny_melody, batch=1, frames=100, text_len=10, layers=2)
    assert m["prefix_len"] == 245 and m["positions"] == 245 + 103 and m["cross_mb"] == 0


def test_budget_refusal_gives_size_and_remedies(tiny):
    est = estimate_mb(tiny, batch=1, frames=200, text_len=None, layers=2)
    with pytest.raises(ValueError) as e:
        plan_capture(tiny, batch=1, frames=200, budget_mb=0.1)
    msg = str(e.value)
    assert f"{est['total_mb']:.1f} MB" in msg
    assert (
        "attention_layers=" in msg and "attention_budget_mb=" in msg and "shorter duration" in msg
    )
    # through generate: refused before any decoding
    with pytest.raises(ValueError, match=r"about \d+\.\d MB"):
        tiny.generate("x", duration=2, attentions=True, attention_budget_mb=0.01, progress=False)
    cap = plan_capture(tiny, batch=1, frames=200, layers=[0], budget_mb=1)
    assert cap["layers"] == [0] and cap["rows"] == 1 and cap["estimate"]["total_mb"] < 1


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(layers=[2]), ValueError, "attention_layers has 2, out of range"),
        (dict(layers=[-3]), ValueError, "attention_layers has -3"),
        (dict(layers=[]), ValueError, "attention_layers must not be empty"),
        (dict(layers="0"), TypeError, "attention_layers must hold ints"),
        (dict(layers=1.5), TypeError, "attention_layers must be None"),
        (dict(layers=[True]), TypeError, "attention_layers must hold ints"),
        (
            dict(heads=[4]),
            ValueError,
            "attention_heads has 4, out of range: the model has 4 attention heads",
        ),
        (dict(heads=[0, "1"]), TypeError, "attention_heads must hold ints"),
        (dict(budget_mb=0), ValueError, "attention_budget_mb must be > 0"),
        (dict(budget_mb="big"), TypeError, "attention_budget_mb must be a number"),
    ],
)
def test_validation(tiny, kw, err, match):
    with pytest.raises(err, match=match):
        plan_capture(tiny, batch=1, frames=10, **kw)


def test_selection_is_normalised(tiny):
    cap = plan_capture(tiny, batch=3, frames=10, layers=[1, -1, 0], heads=3)
    assert cap["layers"] == [0, 1] and cap["heads"] == [3] and cap["rows"] == 3
    assert plan_capture(tiny, batch=1, frames=10)["layers"] == [0, 1]
