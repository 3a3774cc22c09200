"""The table of a grid: one complete, checked row per clip, each with its ``clip_id``.

:func:`grid` builds it (the full product of the values, or the rows given);
:func:`canon` completes and checks one row, so bad values raise here, not hours
into a run; :func:`clip_id` hashes a row, so the same row always gets the same
file, whatever the batch it runs in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing import Any

    import pandas as pd

#: Generation parameters a grid may vary, with the defaults of ``generate``.
PARAMS = dict(
    guidance_scale=3.0, temperature=1.0, top_k=250, top_p=0.0, do_sample=True, duration=8.0,
    negative_prompt=None, cfg_coef_beta=None, extend_stride=None,
)  # fmt: skip
#: The most rows a grid may have: a larger one is refused before any row is built.
MAX_ROWS = 100_000
_INT = ("seed", "top_k")
_FLOAT = ("guidance_scale", "temperature", "top_p", "duration", "cfg_coef_beta", "extend_stride")


def grid(
    prompts: str | list[str | None] | None = None,
    *,
    seed: int | list[int] = 0,
    rows: list[dict] | pd.DataFrame | None = None,
    **params: Any,
) -> pd.DataFrame:
    """A table of clips to generate: the full product of the values, or the rows given.

    Parameters
    ----------
    prompts : str, None or list of (str or None)
        Text prompts (None is unconditional).
    seed : int or list of int
        Seeds; every prompt is generated with every seed.
    rows : list of dict or pandas.DataFrame, optional
        Explicit rows instead of a product: each has ``prompt`` and ``seed`` and
        any of the parameters below. Do not combine with the other arguments.
    **params
        Lists (or single values) of any of ``guidance_scale``, ``temperature``,
        ``top_k``, ``top_p``, ``do_sample``, ``duration``, ``negative_prompt``,
        ``cfg_coef_beta``, ``extend_stride``. Missing ones take ``generate``'s
        defaults (:data:`PARAMS`), so every row is complete. NaN is refused (leave a
        parameter out, or give None where None is allowed).

    Returns
    -------
    pandas.DataFrame
        One row per clip: ``clip_id`` (a hash of the row), ``prompt``, ``seed``
        and every parameter. At most :data:`MAX_ROWS` rows: a larger product is
        refused before any row is built.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.grid(["jazz", "rock"], seed=[1, 2], guidance_scale=[1.0, 3.0], duration=1.0)
    >>> len(g), list(g.columns[:4])
    (8, ['clip_id', 'prompt', 'seed', 'guidance_scale'])
    """
    import pandas as pd

    if rows is not None:
        if prompts is not None or params or seed != 0:
            raise ValueError(
                "rows= lists complete rows; do not combine it with prompts, seed or parameters"
            )
        rows_ = specs(rows)
    else:
        rows_ = _product(prompts, seed, params)
    df = pd.DataFrame(rows_, columns=["clip_id", "prompt", "seed", *PARAMS])
    for col in ("prompt", "negative_prompt"):  # keep None (unconditional), not NaN
        df[col] = pd.Series([s[col] for s in rows_], dtype=object)
    return df


def _product(prompts, seed, params: dict) -> list[dict]:
    """The checked rows of the full product of prompts, seeds and parameter values."""
    if prompts is None or isinstance(prompts, str):
        prompts = [prompts]
    axes = {"prompt": _values("prompts", prompts), "seed": _values("seed", seed)}
    for key, value in params.items():
        if key not in PARAMS:
            raise ValueError(f"unknown grid parameter {key!r}; allowed: {', '.join(PARAMS)}")
        axes[key] = _values(key, value)
    sizes = [len(v) for v in axes.values()]
    if math.prod(sizes) > MAX_ROWS:
        raise ValueError(
            f"the grid has {math.prod(sizes):,} rows ({' x '.join(map(str, sizes))} values of "
            f"{', '.join(axes)}); at most {MAX_ROWS:,} rows per grid: split it into several runs"
        )
    return _unique(
        [
            canon(dict(zip(axes, combo, strict=True)), where="grid", nan_missing=False)
            for combo in itertools.product(*axes.values())
        ]
    )


def specs(rows) -> list[dict]:
    """Complete, checked rows (dicts) from a list of dicts or a DataFrame.

    Parameters
    ----------
    rows : list of dict or pandas.DataFrame
        Rows as :func:`grid` takes them with ``rows=`` (a grid is itself valid rows).

    Returns
    -------
    list of dict
        One :func:`canon` row per input row; a repeated clip raises.

    Examples
    --------
    >>> rows = specs([dict(prompt="jazz", seed=1), dict(prompt=None, seed=2, top_k=50.0)])
    >>> [(r["prompt"], r["seed"], r["top_k"]) for r in rows]
    [('jazz', 1, 250), (None, 2, 50)]
    """
    import pandas as pd

    if isinstance(rows, (pd.DataFrame, list, tuple)) and len(rows) > MAX_ROWS:
        raise ValueError(f"rows has {len(rows):,} rows; at most {MAX_ROWS:,} per grid: split it")
    if isinstance(rows, pd.DataFrame):  # counted first: the records of a huge frame are not built
        rows = rows.to_dict("records")
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows must be a list of dicts or a DataFrame, got {type(rows).__name__}")
    return _unique([canon(r, where=f"rows[{i}]") for i, r in enumerate(rows)])


def _unique(rows: list[dict]) -> list[dict]:
    if not rows:
        raise ValueError("the grid is empty: give at least one row")
    seen = {}
    for i, spec in enumerate(rows):
        if spec["clip_id"] in seen:
            raise ValueError(
                f"rows {seen[spec['clip_id']]} and {i} are the same clip (prompt, seed and parameters): "
                f"{ {k: v for k, v in spec.items() if k != 'clip_id'} }"
            )
        seen[spec["clip_id"]] = i
    return rows


def _values(name, value) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name} must list at least one value")
    return values


def missing(value) -> bool:
    """True for a cell that holds no value: None or NaN (as pandas fills a missing cell).

    Examples
    --------
    >>> missing(None), missing(float("nan")), missing(0.0), missing("jazz")
    (True, True, False, False)
    """
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalise(key: str, value, nan_missing: bool, where: str):
    """A cell as a plain Python value: None for missing, ints and floats where the column wants them.

    In rows, NaN is a missing cell (pandas fills one so) of a column whose default is
    None; anywhere else (a grid axis, a number column) it is refused by name.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        if not nan_missing or PARAMS.get(key, 0) is not None:
            raise ValueError(
                f"{where}: {key} is NaN; give a number (or leave {key} out for its default)"
            )
        value = None
    if value is not None and key in _INT and isinstance(value, float) and value.is_integer():
        value = int(value)
    if (
        value is not None
        and key in _FLOAT
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        value = float(value)
    return value


def canon(row: dict, *, where: str, nan_missing: bool = True) -> dict:
    """A complete, type-normalised row with its ``clip_id``; bad values raise here, not hours later.

    Parameters
    ----------
    row : dict
        ``prompt``, ``seed`` and any of :data:`PARAMS` (and optionally its ``clip_id``).
    where : str
        Where the row comes from, to start error messages (e.g. ``"rows[3]"``).
    nan_missing : bool
        Read NaN as a missing cell (as pandas fills one) in the prompt and the
        columns whose default is None. False (grid axes): NaN is refused everywhere.

    Returns
    -------
    dict
        ``prompt``, ``seed``, every parameter (defaults filled in) and ``clip_id``.

    Examples
    --------
    >>> row = canon({"prompt": "jazz", "seed": 1, "duration": 2}, where="rows[0]")
    >>> row["duration"], row["guidance_scale"], row["clip_id"] == clip_id(row)
    (2.0, 3.0, True)
    """
    allowed = ("clip_id", "prompt", "seed", *PARAMS)
    unknown = [k for k in row if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown column(s) {unknown}; allowed: {', '.join(allowed)}")
    if "seed" not in row or missing(row["seed"]):
        raise ValueError(f"{where}: every row needs a seed (an int >= 0), got {row.get('seed')!r}")
    prompt = row.get("prompt")
    spec = {"prompt": None if prompt is None or (nan_missing and missing(prompt)) else prompt}
    if spec["prompt"] is not None and not isinstance(spec["prompt"], str):
        raise TypeError(f"{where}: prompt must be a string or None, got {spec['prompt']!r}")
    for key, default in [("seed", None), *PARAMS.items()]:
        spec[key] = _normalise(key, row.get(key, default), nan_missing, where)
    _check(spec, where)
    spec["clip_id"] = clip_id(spec)
    if row.get("clip_id") not in (None, spec["clip_id"]) and not missing(row.get("clip_id")):
        raise ValueError(
            f"{where}: clip_id {row['clip_id']!r} does not match the row ({spec['clip_id']})"
        )
    return spec


def _check(spec: dict, where: str) -> None:
    """The checks of ``generate`` that need no model (model-specific ones wait for the model)."""
    from types import SimpleNamespace

    from ..generation import validate

    if not isinstance(spec["seed"], int) or isinstance(spec["seed"], bool) or spec["seed"] < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {spec['seed']!r}")
    if spec["negative_prompt"] is not None and not isinstance(spec["negative_prompt"], str):
        raise TypeError(
            f"{where}: negative_prompt must be a string or None, got {spec['negative_prompt']!r}"
        )
    model = SimpleNamespace(is_melody=True, name="grid", max_duration=math.inf, frame_rate=50)
    try:
        validate(model, seed=spec["seed"], **{k: spec[k] for k in PARAMS if k != "negative_prompt"})
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def clip_id(spec: dict) -> str:
    """A stable hash (16 hex digits) of a row's prompt, seed and parameters.

    Examples
    --------
    >>> a = clip_id({"prompt": "jazz", "seed": 1})
    >>> len(a), a == clip_id({"prompt": "jazz", "seed": 1}), a == clip_id({"prompt": "jazz", "seed": 2})
    (16, True, False)
    """
    keys = ("prompt", "seed", *PARAMS)
    text = json.dumps({k: spec.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def batches(rows: list[dict], batch_size: int) -> list[list[dict]]:
    """Rows that can share a ``generate`` call (same parameters), in chunks of ``batch_size``.

    Examples
    --------
    >>> rows = specs([dict(prompt=p, seed=1, top_k=k) for p in "abc" for k in (50, 250)])
    >>> [len(b) for b in batches(rows, 2)]
    [2, 1, 2, 1]
    """
    groups: dict = {}
    for spec in rows:
        groups.setdefault(tuple(spec[k] for k in PARAMS), []).append(spec)
    out = []
    for group in groups.values():
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return out
