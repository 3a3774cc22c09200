"""Helpers shared by the tests of musicgen_nb.grids: a small grid and the checks of a run folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

import musicgen_nb as mg

#: The repository root (the checkout that subprocesses and Ray workers import).
ROOT = Path(__file__).resolve().parent.parent


def small_grid(**kw):
    kw.setdefault("duration", 0.5)
    return mg.grid(["jazz", "rock"], seed=[1, 2], guidance_scale=[1.0, 3.0], **kw)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run(out: Path, m: pd.DataFrame):
    """The manifest on disk equals the one returned; every file is there and matches its sha256."""
    on_disk = pd.read_parquet(out / "manifest.parquet")
    pd.testing.assert_frame_equal(on_disk.reset_index(drop=True), m.reset_index(drop=True))
    assert m["clip_id"].is_unique
    for rec in m.itertuples():
        assert sha(out / rec.path) == rec.sha256
    assert not list(out.rglob("*.tmp")), "no half-written file may stay"
    files = sorted(p.name for p in (out / "audio").iterdir())
    assert files == sorted(Path(p).name for p in m["path"])
