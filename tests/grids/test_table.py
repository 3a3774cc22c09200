"""The table of a grid: the full product or explicit rows, checked and hashed before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _grids import small_grid

import musicgen_nb as mg
from musicgen_nb.grids.table import MAX_ROWS, PARAMS, batches, canon, clip_id, missing, specs


def test_grid_is_the_full_product_with_defaults():
    g = small_grid()
    assert len(g) == 8
    assert list(g.columns) == ["clip_id", "prompt", "seed", *PARAMS]
    assert g["prompt"].tolist() == ["jazz"] * 4 + ["rock"] * 4
    assert g["seed"].tolist() == [1, 1, 2, 2] * 2
    assert g["guidance_scale"].tolist() == [1.0, 3.0] * 4
    assert (g["duration"] == 0.5).all() and (g["top_k"] == 250).all()
    assert g["clip_id"].is_unique
    # defaults are explicit, so an explicit default is the same clip
    assert mg.grid("jazz", seed=1, top_k=250)["clip_id"][0] == mg.grid("jazz", seed=1)["clip_id"][0]


def test_grid_from_rows_and_round_trip():
    rows = [dict(prompt="jazz", seed=3, guidance_scale=2), dict(prompt=None, seed=4)]
    g = mg.grid(rows=rows)
    assert g["guidance_scale"].tolist() == [2.0, 3.0] and g["prompt"].tolist() == ["jazz", None]
    again = mg.grid(rows=g)  # a grid is itself valid rows
    assert again["clip_id"].tolist() == g["clip_id"].tolist()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(prompts="a", guidance=[1, 2]), ValueError, "unknown grid parameter 'guidance'"),
        (dict(prompts="a", seed=[1, 1]), ValueError, "rows 0 and 1 are the same clip"),
        (dict(prompts="a", seed=-1), ValueError, "seed must be an int >= 0, got -1"),
        (dict(prompts="a", guidance_scale=[0.5]), ValueError, "guidance_scale must be >= 1"),
        (dict(prompts="a", top_k=[1.5]), TypeError, "top_k must be an int"),
        (dict(prompts=[3]), TypeError, "prompt must be a string or None, got 3"),
        (dict(prompts="a", seed=[]), ValueError, "seed must list at least one value"),
        (dict(rows=[dict(prompt="a")]), ValueError, "every row needs a seed"),
        (dict(rows=[dict(prompt="a", seed=1, colour="red")]), ValueError, "unknown column"),
        (dict(rows=[dict(prompt="a", seed=1)], seed=2), ValueError, "do not combine"),
        (dict(rows="a"), TypeError, "rows must be a list of dicts"),
    ],
)
def test_grid_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mg.grid(**kwargs)


def test_batches_group_rows_with_the_same_parameters():
    rows = small_grid().to_dict("records")
    out = batches(rows, 3)
    assert [len(b) for b in out] == [3, 1, 3, 1]
    for b in out:
        assert len({r["guidance_scale"] for r in b}) == 1


# --------------------------------------------------------------------------- the public helpers
def test_canon_normalises_types_and_fills_defaults():
    row = canon(
        {
            "prompt": "jazz",
            "seed": np.int64(3),
            "top_k": 50.0,
            "duration": 2,
            "cfg_coef_beta": np.nan,
        },
        where="rows[0]",
    )
    assert row["seed"] == 3 and type(row["seed"]) is int
    assert row["top_k"] == 50 and type(row["top_k"]) is int
    assert row["duration"] == 2.0 and type(row["duration"]) is float
    assert row["cfg_coef_beta"] is None  # NaN is a missing cell
    assert row["guidance_scale"] == PARAMS["guidance_scale"]
    assert row["clip_id"] == clip_id(row)


@pytest.mark.parametrize(
    "row, exc, match",
    [
        (
            dict(prompt="a", seed=1, clip_id="0" * 16),
            ValueError,
            r"rows\[7\]: clip_id '0+' does not match",
        ),
        (
            dict(prompt="a", seed=1, negative_prompt=3),
            TypeError,
            r"rows\[7\]: negative_prompt must be",
        ),
        (dict(prompt="a", seed=True), ValueError, r"rows\[7\]: seed must be an int >= 0, got True"),
    ],
)
def test_canon_names_where_the_bad_row_is(row, exc, match):
    with pytest.raises(exc, match=match):
        canon(row, where="rows[7]")


def test_specs_takes_a_dataframe_or_a_list_and_refuses_an_empty_grid():
    g = small_grid()
    assert [r["clip_id"] for r in specs(g)] == g["clip_id"].tolist()
    assert [r["clip_id"] for r in specs(g.to_dict("records"))] == g["clip_id"].tolist()
    with pytest.raises(ValueError, match="the grid is empty"):
        specs([])
    with pytest.raises(TypeError, match="rows must be a list of dicts or a DataFrame, got int"):
        specs(3)


def test_clip_id_hashes_prompt_seed_and_parameters_only():
    a = canon(dict(prompt="jazz", seed=1), where="grid")
    assert clip_id(a) == clip_id(dict(a, path="elsewhere.wav"))  # other keys do not count
    assert clip_id(a) != clip_id(dict(a, seed=2))
    assert clip_id(a) != clip_id(dict(a, guidance_scale=4.0))
    assert len(clip_id(a)) == 16 and int(clip_id(a), 16) >= 0


def test_missing():
    assert missing(None) and missing(math.nan) and missing(np.float64("nan"))
    assert not missing(0) and not missing("") and not missing(0.0)


def test_a_huge_grid_is_refused_before_any_row_is_built():
    import tracemalloc

    prompts, seeds = [f"p{i}" for i in range(1000)], list(range(10_000))
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError,
            match=r"the grid has 10,000,000 rows \(1000 x 10000 values of prompt, seed\); at most 100,000",
        ):
            mg.grid(prompts, seed=seeds)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # no row was built: 10M rows would take gigabytes
    with pytest.raises(ValueError, match="rows has 100,001 rows; at most 100,000"):
        mg.grid(rows=[dict(prompt="a", seed=i) for i in range(MAX_ROWS + 1)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(guidance_scale=[1.0, float("nan")]), "grid: guidance_scale is NaN"),
        (dict(cfg_coef_beta=float("nan")), "grid: cfg_coef_beta is NaN"),
        (
            dict(rows=[dict(prompt="a", seed=1, temperature=float("nan"))]),
            r"rows\[0\]: temperature is NaN",
        ),
        (
            dict(rows=[dict(prompt="a", seed=1, top_k=np.float64("nan"))]),
            r"rows\[0\]: top_k is NaN",
        ),
    ],
)
def test_nan_is_refused_by_name_not_reported_as_none(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mg.grid(["a"] if "rows" not in kwargs else None, **kwargs)


def test_a_huge_dataframe_is_counted_before_its_records_are_built():
    import tracemalloc

    import pandas as pd

    frame = pd.DataFrame({"prompt": ["a"] * (MAX_ROWS + 1), "seed": range(MAX_ROWS + 1)})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="rows has 100,001 rows; at most 100,000"):
            mg.grid(rows=frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # 100,001 dicts would take tens of MB
