"""Shared array coercion (``musicgen_nb._util.arrays``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_nb._util.arrays import as_array, pick_item


def test_as_array_takes_arrays_tensors_and_lists():
    assert as_array(torch.arange(3), "x").tolist() == [0, 1, 2]
    assert as_array([[1, 2], [3, 4]], "x").shape == (2, 2)
    assert as_array(np.ones(2, dtype=np.int32), "x", dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "x must be an array \\(numpy, torch or nested list\\), got NoneType"),
        ("abc", "x must be an array .* got str"),
        ([[1, 2], [3]], "x must be an array \\(numpy, torch or nested list\\): "),
        (np.array([object(), 1], dtype=object), "x must be a numeric array, got an object array"),
    ],
)
def test_as_array_names_bad_input(value, message):
    with pytest.raises(TypeError, match=message):
        as_array(value, "x")


def test_pick_item():
    batch = np.arange(6).reshape(3, 2)
    assert pick_item(batch, 2, "codes").tolist() == [4, 5]
    with pytest.raises(
        ValueError, match=r"item=3 is out of range for codes with batch size 3 \(allowed: 0\.\.2\)"
    ):
        pick_item(batch, 3, "codes")
    with pytest.raises(ValueError, match="item must be an int >= 0, got -1"):
        pick_item(batch, -1, "codes")
    with pytest.raises(TypeError, match="item must be an int >= 0, got 1.0"):
        pick_item(batch, 1.0, "codes")
