import numpy as np
import pandas as pd
import pytest
from _traces import synthetic_attentions

from musicgen_nb.viz._util import (
    MAX_POINTS,
    cap_curve,
    check_attentions,
    esc,
    integer_dtick,
    pick_codebooks,
    trace_codebooks,
)


def test_cap_curve_averages_consecutive_bins_and_keeps_short_curves():
    x, y = np.arange(10.0), np.arange(10.0) ** 2
    same_x, same_y = cap_curve(x, y, max_points=10)
    np.testing.assert_array_equal(same_y, y)
    cx, cy = cap_curve(x, y, max_points=5)
    np.testing.assert_allclose(cy, y.reshape(5, 2).mean(1))
    np.testing.assert_allclose(cx, x.reshape(5, 2).mean(1))
    # an uneven tail is averaged over what it holds (NaN-aware)
    _, tail = cap_curve(np.arange(5.0), np.arange(5.0), max_points=2)
    np.testing.assert_allclose(tail, [1.0, 3.5])
    assert len(cap_curve(np.arange(10_000), np.zeros(10_000))[0]) <= MAX_POINTS


def test_cap_curve_names_max_points():
    with pytest.raises(ValueError, match="max_points must be an int >= 2, got 1"):
        cap_curve([0, 1], [0, 1], max_points=1)


def test_pick_codebooks():
    assert pick_codebooks([3, 1, 0, 2], None) == [0, 1, 2, 3]
    assert pick_codebooks([0, 1, 2, 3], np.int64(2)) == [2]
    assert pick_codebooks([0, 1, 2, 3], (3, 0)) == [3, 0]
    with pytest.raises(
        ValueError, match=r"codebook 4 is not in the trace at frame 9; codebooks: \[0, 1\]"
    ):
        pick_codebooks([0, 1], 4, where=" at frame 9")
    with pytest.raises(ValueError, match="codebook True is not in the trace"):
        pick_codebooks([0, 1], [True])


def test_trace_codebooks_reads_the_frame():
    df = pd.DataFrame({"codebook": [2, 0, 2, 0]})
    assert trace_codebooks(df, None) == [0, 2]
    with pytest.raises(ValueError, match=r"codebooks: \[0, 2\]"):
        trace_codebooks(df, 1)


def test_check_attentions():
    check_attentions(synthetic_attentions(4))
    with pytest.raises(TypeError, match="generate with attentions=True"):
        check_attentions(None)
    with pytest.raises(TypeError, match="got ndarray"):
        check_attentions(np.zeros(3))


def test_esc_escapes_html_but_not_quotes():
    assert esc('</s> & "x"') == '&lt;/s&gt; &amp; "x"'


def test_integer_dtick_is_a_whole_round_step_with_at_most_max_ticks():
    assert [integer_dtick(v) for v in (1, 3, 8, 9, 16, 40, 41, 100, 2999)] == [
        1, 1, 1, 2, 2, 5, 10, 20, 500,
    ]  # fmt: skip
    for v in range(1, 500):
        step = integer_dtick(v, max_ticks=6)
        assert isinstance(step, int) and step >= 1 and v / step <= 6
