import pandas as pd
import pytest

from musicgen_nb import viz
from musicgen_nb.viz.bars import MAX_NAME_CHARS, ROW_PX

#: The settings of notebook 07's repetition chart, longest name included.
SETTINGS = {
    "greedy": 0.93,
    "temperature 1, top-k 250 (defaults)": 0.12,
    "temperature 0.7": 0.4,
    "temperature 1.3": 0.05,
    "top-k 10": 0.5,
    "top-p 0.9": 0.2,
}


def test_bars_are_horizontal_with_unrotated_names_first_on_top():
    fig = viz.bars(SETTINGS, title="Repetition", value_title="share of frames", value_range=(0, 1))
    (bar,) = fig.data
    assert bar.orientation == "h"
    assert list(bar.y) == list(SETTINGS) and list(bar.x) == list(SETTINGS.values())
    assert fig.layout.yaxis.tickangle == 0 and fig.layout.yaxis.automargin is True
    assert fig.layout.yaxis.autorange == "reversed"  # the first setting at the top
    assert list(fig.layout.xaxis.range) == [0, 1]
    assert fig.layout.xaxis.title.text == "share of frames"
    assert max(len(n) for n in bar.y) <= MAX_NAME_CHARS


def test_bars_height_grows_with_the_number_of_names():
    two = viz.bars({"a": 1.0, "b": 2.0}, title="t", value_title="v")
    six = viz.bars(SETTINGS, title="t", value_title="v")
    assert six.layout.height - two.layout.height == 4 * ROW_PX
    assert six.layout.height > two.layout.height >= 150
    assert two.layout.xaxis.range is None  # fits the data


def test_bars_take_a_series_and_escape_names():
    fig = viz.bars(pd.Series({"<s> token": 0.5}), title="a < b", value_title="v")
    assert list(fig.data[0].y) == ["&lt;s&gt; token"]
    assert fig.layout.title.text == "a &lt; b"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(values=[0.1, 0.2]), TypeError, "values must be a mapping"),
        (dict(values={}), ValueError, "values must hold 1 to"),
        (dict(values={"x" * 41: 1.0}), ValueError, "1 to 40 characters"),
        (dict(values={"a": float("nan")}), ValueError, r"values\['a'\] must be a finite"),
        (dict(values={"a": "high"}), ValueError, r"values\['a'\] must be a finite"),
        (dict(values={"a": 1.0}, value_range=(1, 0)), ValueError, "value_range must be"),
        (dict(values={"a": 1.0}, title=None), TypeError, "title must be a str"),
    ],
)
def test_bars_name_a_bad_argument(kwargs, error, match):
    args = dict(title="t", value_title="v") | kwargs
    with pytest.raises(error, match=match):
        viz.bars(args.pop("values"), **args)
