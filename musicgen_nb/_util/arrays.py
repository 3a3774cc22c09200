"""Array coercion shared by the audio helpers and the figure builders.

numpy only, so that importing the figures does not import scipy or torch.

Examples
--------
>>> as_array([[1, 2], [3, 4]], "codes").shape
(2, 2)
>>> pick_item(as_array([[1, 2], [3, 4]], "codes"), 1, "codes").tolist()
[3, 4]
"""

from __future__ import annotations

import numpy as np

from .checks import check_int


def as_array(x, name: str, *, dtype=None) -> np.ndarray:
    """Coerce a numpy array, torch tensor or nested list to ``np.ndarray``."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(
            f"{name} must be an array (numpy, torch or nested list), got {type(x).__name__}"
        )
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{name} must be an array (numpy, torch or nested list): {e}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array (ragged lists?)")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def pick_item(arr: np.ndarray, item: int, name: str) -> np.ndarray:
    """Select batch item ``item`` of a batched array, with a clear error when out of range."""
    item = check_int(item, "item", minimum=0)
    if item >= arr.shape[0]:
        raise ValueError(
            f"item={item} is out of range for {name} with batch size {arr.shape[0]} "
            f"(allowed: 0..{arr.shape[0] - 1})"
        )
    return arr[item]
