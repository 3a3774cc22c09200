"""A grid's YAML spec file (``musicgen-nb grid SPEC.yaml``): its grid and its run settings.

The file is a mapping: the run settings of :func:`musicgen_nb.run_grid` (``model``
is required) and either grid axes (``prompts``, ``seed`` and parameters, as
:func:`musicgen_nb.grid` takes them) or ``rows``. Every error names the file and,
where it can, the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    import pandas as pd

#: The keys of a spec that are run settings (the others are grid axes, or ``rows``).
RUN_KEYS = (
    "model", "backend", "batch_size", "precision", "device", "random_weights", "fmt", "metrics",
    "workers", "address", "adapter", "gpus_per_worker",
)  # fmt: skip


def read_spec(path: str | os.PathLike, overrides: dict | None = None) -> tuple[pd.DataFrame, dict]:
    r"""The grid and the run settings of a spec file; errors name the file and the line.

    Parameters
    ----------
    path : path
        A YAML file: ``model:`` and the other run settings of
        :func:`musicgen_nb.run_grid` (:data:`RUN_KEYS`), and grid axes or ``rows:``.
    overrides : dict, optional
        Run settings given elsewhere (the command line's ``--backend``...): they
        replace the file's (None values are ignored) and are checked with them.

    Returns
    -------
    (pandas.DataFrame, dict)
        The grid (from :func:`musicgen_nb.grid`) and the run settings.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "spec.yaml"
    >>> _ = p.write_text("model: tiny\nprompts: [jazz, rock]\nseed: [1, 2]\nduration: 0.5\n")
    >>> g, run = read_spec(p)
    >>> len(g), run
    (4, {'model': 'tiny'})
    >>> _ = p.write_text("model: tiny\nprompts: [jazz]\nduration: -1\n")
    >>> read_spec(p)
    Traceback (most recent call last):
    ...
    ValueError: .../spec.yaml:3: grid: duration must be ...
    >>> _ = p.write_text("model: tiny\nprompts: [jazz]\nbatch_size: 0\n")
    >>> read_spec(p)
    Traceback (most recent call last):
    ...
    ValueError: .../spec.yaml:3: batch_size must be an int >= 1, got 0
    """
    from .table import grid as make_grid

    path = Path(path)
    spec, lines, row_lines = _load(path)
    run = {k: spec.pop(k) for k in RUN_KEYS if k in spec}
    run.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        _check_run(run)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}:{_line(str(exc), lines, [])}: {exc}") from None
    rows = spec.pop("rows", None)
    if rows is not None and spec:
        raise ValueError(
            f"{path}:{lines[next(iter(spec))]}: give either rows or grid axes, not both "
            f"(extra: {sorted(spec)})"
        )
    try:
        grid = make_grid(rows=rows) if rows is not None else make_grid(**spec)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}:{_line(str(exc), lines, row_lines)}: {exc}") from None
    return grid, run


def _check_run(run: dict) -> None:
    """The run settings as :func:`musicgen_nb.run_grid` checks them (a spec holds names only)."""
    from ..metrics.rows import NAMES
    from .run import check_settings

    model = run["model"]
    if not isinstance(model, str) or not model.strip():
        raise TypeError(f"model must be a checkpoint name or a directory, got {model!r}")
    metrics = run.get("metrics")
    if metrics is not None and not (
        isinstance(metrics, list) and all(isinstance(m, str) and m in NAMES for m in metrics)
    ):
        raise TypeError(
            f"metrics must be a list of metric names ({', '.join(NAMES)}), got {metrics!r}"
        )
    keys = ("backend", "batch_size", "fmt", "address", "workers", "gpus_per_worker")
    check_settings(**{k: run[k] for k in keys if k in run})


def _load(path: Path) -> tuple[dict, dict, list]:
    """(the mapping, line of each key, line of each item of ``rows``), or an error naming the file."""
    import yaml

    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the spec ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the spec is not UTF-8 text (byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ValueError(
            f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
        ) from None
    if not isinstance(spec, dict) or "model" not in spec:
        raise ValueError(
            f"{path}:1: the spec must be a mapping with 'model' and grid axes or rows "
            "(see the Ray guide: https://musicgen-nb.github.io/musicgen-nb/guides/ray.html)"
        )
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    bad = [k for k in spec if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{path}: keys must be names, got {bad[0]!r}")
    rows = [v for k, v in node.value if k.value == "rows"]
    row_lines = (
        [n.start_mark.line + 1 for n in rows[0].value] if rows and rows[0].id == "sequence" else []
    )
    return spec, lines, row_lines


def _line(message: str, lines: dict, row_lines: list) -> int:
    """The line a grid error is about: its ``rows[i]``, else the first key it names, else 1.

    A grid error says ``prompt`` about the ``prompts`` key.
    """
    if "prompts" in lines and "prompt" not in lines:
        lines = {**lines, "prompt": lines["prompts"]}
    m = re.match(r"rows\[(\d+)\]", message)
    if m and int(m.group(1)) < len(row_lines):
        return row_lines[int(m.group(1))]
    if message.startswith("rows") and "rows" in lines:
        return lines["rows"]
    for key in sorted(lines, key=lambda k: message.find(k) if k in message else len(message)):
        if re.search(rf"\b{re.escape(key)}\b", message):
            return lines[key]
    return 1
