"""Execute every curated notebook on the real checkpoints, on a GPU, and keep what they made.

Usage::

    make reference-run                                  # the same, from the Makefile
    python tools/reference_run.py --out build/reference [--only 03 07] [--dry-run]

What it does, for each ``notebooks/NN_*.ipynb`` in order:

- runs it with papermill on the checkpoints its ``MODEL`` names, as a user would: no
  stand-ins (``MUSICGEN_NB_STANDIN`` is removed), full durations (no ``MUSICGEN_NB_QUICK``),
  and the exercise solutions on (``SOLUTIONS=True``);
- keeps the executed copy (``OUT/NN_name.ipynb``, its players hold the audio) and its
  offline handout (``OUT/NN_name.html``, with one shared ``OUT/plotly.min.js``);
- keeps every file the notebook wrote: the kernel's temporary directory is ``OUT/files``,
  so the clips of ``g.save``, the grid of notebook 08 and the adapter of notebook 09
  (all in ``mg.teaching.scratch`` folders) stay there.

It refuses to start without CUDA (the full durations take hours on a CPU) unless
``--allow-cpu`` is given, and refuses an ``OUT`` that already holds executed notebooks, so
an earlier reference run is never overwritten. Hub downloads need network access and,
for some checkpoints, an accepted licence on the Hugging Face hub.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 3600  # seconds per cell: the 45 s long-form clip and the fine-tune are slow


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The curated notebooks in course order, or those whose name starts with one of ``only``."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        unknown = [o for o in only if not any(p.name.startswith(o) for p in paths)]
        if unknown:
            raise ValueError(
                f"--only {unknown} match no notebook; allowed: {[p.name[:2] for p in paths]}"
            )
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    return paths


def environment(out: Path) -> dict[str, str]:
    """The kernel's environment: real checkpoints, full durations, solutions on, files kept in ``out``."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MUSICGEN_NB_STANDIN", "MUSICGEN_NB_QUICK")
    }
    env["MUSICGEN_NB_SOLUTIONS"] = "1"
    env["TMPDIR"] = str(out / "files")
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "reference")
    ap.add_argument("--only", nargs="*", help="notebook numbers, e.g. 03 07")
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (very slow)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = ap.parse_args(argv)
    try:
        paths = notebooks(args.only)
    except ValueError as err:
        ap.error(str(err))
    out = args.out.resolve()
    taken = sorted(p.name for p in out.glob("*.ipynb")) if out.is_dir() else []
    if taken:
        ap.error(f"--out {str(out)!r} already holds executed notebooks {taken}; pick a new folder")
    if not args.dry_run and not args.allow_cpu:
        import torch

        if not torch.cuda.is_available():
            ap.error("CUDA is not available: run on a GPU machine, or pass --allow-cpu")
    for path in paths:
        print(f"{path.name} -> {out / path.name}")
    if args.dry_run:
        return 0
    return _run(paths, out)


def _run(paths: list[Path], out: Path) -> int:
    import importlib.util

    import papermill

    spec = importlib.util.spec_from_file_location("handout", ROOT / "tools" / "handout.py")
    handout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handout)
    (out / "files").mkdir(parents=True, exist_ok=True)
    os.environ.clear()
    os.environ.update(environment(out))  # the kernel inherits this process's environment
    failed = []
    for path in paths:
        target = out / path.name
        try:
            papermill.execute_notebook(
                str(path), str(target), parameters={"SOLUTIONS": True}, cwd=str(out / "files"),
                kernel_name="python3", execution_timeout=CELL_TIMEOUT, progress_bar=False,
            )  # fmt: skip
        except Exception as err:  # keep going: one failing notebook should not hide the rest
            failed.append(f"{path.name}: {type(err).__name__}: {err}")
        if target.exists():
            handout.export(target)
    print("\n".join(failed) or f"all {len(paths)} notebooks ran; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
