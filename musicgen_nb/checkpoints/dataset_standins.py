"""Dataset stand-ins: ``datasets.load_dataset(hub_id)`` returns a local or synthetic audio set.

Audio tutorials load hub datasets for their audio prompts. With stand-ins on, an
author maps those ids to a local folder or to a synthetic set, in the pytest ini
(``musicgen_standin_datasets``; the plugin passes the table to notebook kernels in
``MUSICGEN_NB_STANDIN_DATASETS``)::

    [pytest]
    musicgen_standin_datasets =
        sanchit-gandhi/gtzan = synthetic n=4 seconds=5 sampling_rate=22050 genre=blues,rock
        someone/my-clips = data/clips

- ``synthetic [n=8] [seconds=5] [sampling_rate=32000] [LABEL=a,b,...]``: ``n``
  seeded clips of tones; each declared label column cycles through its values.
- a folder (relative to the ini file): its ``.wav``/``.flac``/``.ogg`` files, sorted,
  with the label columns of its ``metadata.csv`` (``file_name`` plus any other
  columns), as audiofolder reads them. Nothing outside the folder is read.

``datasets.load_dataset(id, split=..., streaming=...)`` then returns a ``Dataset``
(an ``IterableDataset`` with ``streaming=True``; a ``DatasetDict`` with its one
``train`` split when no split is given) in the default format, with an ``audio``
column of ``{"array": float32 numpy array, "sampling_rate": int}`` and the declared
labels (``str``). ``audio`` is a plain struct column, not a ``datasets.Audio``
feature: there is no ``path``, no decoding on access and no ``cast_column(
"audio", Audio(sampling_rate=...))`` resampling; resample with
``musicgen_nb.audio.resample`` if the tutorial needs another rate. Ids not in the table go
to ``datasets`` unchanged. ``datasets`` is an optional extra
(``pip install "musicgen-nb[datasets]"``).

Examples
--------
>>> table = parse_table(["org/set = synthetic n=2 seconds=0.5 genre=rock,jazz"], root=".")
>>> rows = build_rows(table["org/set"])
>>> len(rows["audio"]), rows["genre"], rows["audio"][0]["sampling_rate"]
(2, ['rock', 'jazz'], 32000)
"""

from __future__ import annotations

import csv
import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import standins

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ENV",
    "build_rows",
    "load_standin",
    "parse_table",
    "patch_datasets",
    "require_datasets",
    "table",
]

#: The environment variable holding the table (JSON: hub id -> spec) for notebook kernels.
ENV = "MUSICGEN_NB_STANDIN_DATASETS"
_AUDIO = (".wav", ".flac", ".ogg")
_SYNTH = {"n": 8, "seconds": 5.0, "sampling_rate": 32000}
_MARK = "_musicgen_nb_standin"


def require_datasets() -> Any:
    """Import ``datasets``, or say clearly that the optional extra is missing.

    Examples
    --------
    >>> require_datasets().__name__
    'datasets'
    """
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "dataset stand-ins (musicgen_standin_datasets) need the optional 'datasets' "
            'package, which is not installed: pip install "musicgen-nb[datasets]"'
        ) from None
    return datasets


def _parse_spec(hub_id: str, spec: str, root: Path, where: str) -> dict:
    words = spec.split()
    if not words:
        raise ValueError(f"{where}: {hub_id!r} maps to nothing; give a folder or 'synthetic'")
    if words[0] != "synthetic":
        folder = Path(spec.strip()).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise ValueError(f"{where}: {hub_id!r} maps to {str(folder)!r}, which is no folder")
        return {"kind": "folder", "path": str(folder.resolve())}
    out = {"kind": "synthetic", **_SYNTH, "labels": {}}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{where}: {word!r} in {hub_id!r}'s spec is not KEY=VALUE")
        if key in _SYNTH:
            try:
                number = float(value) if key == "seconds" else int(value)
            except ValueError:
                raise ValueError(f"{where}: {key}={value!r} must be a number") from None
            if not 0 < number <= (600 if key == "seconds" else 10_000 if key == "n" else 384_000):
                raise ValueError(f"{where}: {key}={value!r} is out of range")
            out[key] = number
        else:
            out["labels"][key] = value.split(",")
    return out


def parse_table(lines: list[str], *, root: str | os.PathLike, where: str = "ini") -> dict:
    """Parse ``ID = SPEC`` lines (the ini option) into ``{id: spec dict}``.

    Parameters
    ----------
    lines : list of str
        One mapping a line; blank lines and ``#`` comments are skipped.
    root : path
        Folder that relative folder paths are relative to (the ini file's folder).
    where : str
        Named in errors (the option and the file).

    Raises
    ------
    ValueError
        Naming ``where``, the line and what is allowed.

    Examples
    --------
    >>> parse_table(["a/b = synthetic n=2"], root=".")["a/b"]["n"]
    2
    """
    out = {}
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hub_id, sep, spec = line.partition("=")
        if not sep or not hub_id.strip():
            raise ValueError(
                f"{where}, line {i}: {line!r} must read 'HUB_ID = FOLDER' or "
                "'HUB_ID = synthetic [n=8] [seconds=5] [sampling_rate=32000] [LABEL=a,b]'"
            )
        out[hub_id.strip()] = _parse_spec(hub_id.strip(), spec, Path(root), f"{where}, line {i}")
    return out


def table() -> dict:
    """The table of this process: ``MUSICGEN_NB_STANDIN_DATASETS`` (JSON), or ``{}``.

    Examples
    --------
    >>> isinstance(table(), dict)
    True
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{ENV} must hold a JSON object (id -> spec): {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{ENV} must hold a JSON object (id -> spec), got {type(data).__name__}")
    return data


def _synthetic(spec: dict) -> dict:
    rng = np.random.default_rng(0)
    sr, n = int(spec["sampling_rate"]), int(spec["n"])
    t = np.arange(int(round(spec["seconds"] * sr))) / sr
    rows: dict = {"audio": []}
    for _ in range(n):
        freq = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2 * freq * t)
        rows["audio"].append({"array": wave.astype(np.float32), "sampling_rate": sr})
    for label, values in spec["labels"].items():
        rows[label] = [values[i % len(values)] for i in range(n)]
    return rows


def _metadata(folder: Path) -> dict:
    file = folder / "metadata.csv"
    if not file.is_file():
        return {}
    with open(file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "file_name" not in rows[0]:
        raise ValueError(f"{file}: the header has no 'file_name' column")
    return {row["file_name"]: row for row in rows}


def _folder(spec: dict) -> dict:
    import soundfile

    folder = Path(spec["path"]).resolve()
    meta = _metadata(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in _AUDIO and p.resolve().is_relative_to(folder)
    )  # fmt: skip
    if not files:
        raise ValueError(f"{folder} holds no {'/'.join(_AUDIO)} file")
    labels = sorted({k for row in meta.values() for k in row} - {"file_name"})
    rows: dict = {"audio": [], **{k: [] for k in labels}}
    for path in files:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        rows["audio"].append({"array": data.mean(axis=1), "sampling_rate": int(sr)})
        row = meta.get(path.relative_to(folder).as_posix(), {})
        for k in labels:
            rows[k].append(row.get(k, ""))
    return rows


def build_rows(spec: dict) -> dict:
    """The columns of a stand-in set: ``audio`` (``{"array", "sampling_rate"}``) and labels.

    Examples
    --------
    >>> rows = build_rows({"kind": "synthetic", "n": 1, "seconds": 0.1,
    ...                    "sampling_rate": 8000, "labels": {}})
    >>> rows["audio"][0]["array"].shape
    (800,)
    """
    return _synthetic(spec) if spec["kind"] == "synthetic" else _folder(spec)


def _numpy_audio(row: dict, batched: bool = False) -> dict:
    """``audio`` arrays as float32 numpy, sampling rates as int; labels stay str."""
    for audio in row["audio"] if batched else [row["audio"]]:
        audio["array"] = np.asarray(audio["array"], dtype=np.float32)
        audio["sampling_rate"] = int(audio["sampling_rate"])
    return row


def load_standin(hub_id: str, spec: dict, *, split: str | None = None, streaming: bool = False):
    """The ``datasets`` object that ``load_dataset(hub_id, split=, streaming=)`` returns.

    Examples
    --------
    >>> spec = {"kind": "synthetic", "n": 2, "seconds": 0.1, "sampling_rate": 8000,
    ...         "labels": {"genre": ["pop"]}}
    >>> ds = load_standin("org/set", spec, split="train", streaming=True)
    >>> row = next(iter(ds))
    >>> row["audio"]["array"].shape, row["audio"]["sampling_rate"], row["genre"]
    ((800,), 8000, 'pop')
    """
    datasets = require_datasets()
    if split not in (None, "train"):
        raise ValueError(f"split={split!r}: the stand-in of {hub_id!r} has one split, 'train'")
    rows = build_rows(spec)
    audio = {"array": datasets.Sequence(datasets.Value("float32")),
             "sampling_rate": datasets.Value("int64")}  # fmt: skip
    features = datasets.Features(
        {"audio": audio, **{k: datasets.Value("string") for k in rows if k != "audio"}}
    )
    ds = datasets.Dataset.from_dict(rows, features=features)
    if streaming:  # the default (python) format, as a hub set has; audio arrays as numpy
        ds = ds.to_iterable_dataset().map(_numpy_audio)
    else:
        ds = ds.with_transform(functools.partial(_numpy_audio, batched=True))
    if split is not None:
        return ds
    return (datasets.IterableDatasetDict if streaming else datasets.DatasetDict)({"train": ds})


def patch_datasets() -> None:
    """Make ``datasets.load_dataset`` return the stand-ins of the mapped ids (stand-ins on).

    Idempotent; ids not in :func:`table` (or stand-ins off) go to ``datasets`` unchanged.

    Examples
    --------
    >>> patch_datasets()
    >>> import datasets
    >>> getattr(datasets.load_dataset, "_musicgen_nb_standin")
    True
    """
    datasets = require_datasets()
    import datasets.load as load_module

    original = datasets.load_dataset
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def load_dataset(path, *args, **kwargs):
        mapped = table().get(path) if isinstance(path, str) and standins.enabled() else None
        if mapped is None:
            return original(path, *args, **kwargs)
        standins.notify_once(
            f"musicgen-nb: stand-in: {standins.ENV}=1, so the dataset {path!r} is replaced by "
            f"its stand-in ({mapped.get('path', 'synthetic')})."
        )
        split = kwargs.get(
            "split", args[3] if len(args) > 3 else None
        )  # path, name, data_dir, data_files, split
        return load_standin(path, mapped, split=split, streaming=bool(kwargs.get("streaming")))

    setattr(load_dataset, _MARK, True)
    datasets.load_dataset = load_dataset
    load_module.load_dataset = load_dataset
