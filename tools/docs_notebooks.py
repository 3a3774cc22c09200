"""Make sure the executed notebooks that the docs site renders exist.

The site shows each curated notebook as CI ran it: on stand-ins (random weights), in quick
mode. ``make test`` writes those copies (``build/notebooks/*.ipynb``, tests/e2e/test_notebooks.py);
on a fresh clone ``make docs`` runs this first, which executes only the ones missing or
older than their source, the same way (papermill, ``MUSICGEN_NB_STANDIN=1``,
``MUSICGEN_NB_QUICK=1``, in a temporary folder), and writes each copy atomically.

    python tools/docs_notebooks.py [build/notebooks]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def stale(out_dir: Path) -> list[Path]:
    """The notebooks whose executed copy is missing or older than the notebook."""
    out = []
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        done = out_dir / nb.name
        if not done.exists() or done.stat().st_mtime < nb.stat().st_mtime:
            out.append(nb)
    return out


def execute(nb: Path, out_dir: Path) -> Path:
    """Run ``nb`` with papermill on stand-ins in quick mode; write ``out_dir/nb.name``."""
    import papermill

    os.environ["MUSICGEN_NB_STANDIN"] = "1"
    os.environ["MUSICGEN_NB_QUICK"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MUSICGEN_NB_CACHE", str(ROOT / "build" / "cache"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / nb.name
    with tempfile.TemporaryDirectory() as cwd:
        part = Path(cwd) / nb.name
        papermill.execute_notebook(
            str(nb), str(part), kernel_name="python3", cwd=cwd, execution_timeout=300,
            progress_bar=False, log_output=False,
        )  # fmt: skip
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(part.read_bytes())
        tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else ROOT / "build" / "notebooks"
    todo = stale(out_dir)
    for nb in todo:
        print(f"docs: executing {nb.name} on stand-ins (quick mode)", flush=True)
        execute(nb, out_dir)
    if not todo:
        print(f"docs: the executed notebooks in {out_dir} are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
