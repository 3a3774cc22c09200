"""Strip notebook outputs before commit, keeping tags.

Usage::

    python tools/nbstrip.py notebooks/*.ipynb          # rewrite in place
    python tools/nbstrip.py --check notebooks/*.ipynb  # exit 1 if any file would change

What is removed: every output and execution count, cell metadata other than
``tags`` (so ``parameters``, ``solution`` and nbval markers stay), and notebook
metadata other than ``kernelspec``, ``language_info`` (name only), ``colab`` and
``accelerator`` (Colab's GPU runtime).
Code cells tagged ``solution`` get (or keep) ``jupyter.source_hidden`` and Colab's
``cellView: form``, so their code starts collapsed in JupyterLab and Colab.
The expected outputs of ``# NBVAL_CHECK_OUTPUT`` cells live in
``tests/e2e/notebooks_expected.json``, not in the notebooks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KEEP_NB_METADATA = ("kernelspec", "language_info", "colab", "accelerator")
SOLUTION = "solution"


def solution_metadata() -> dict:
    """What hides a ``solution`` cell's code: collapsed in JupyterLab, a form in Colab."""
    return {"jupyter": {"source_hidden": True}, "cellView": "form"}


def strip(nb) -> nbformat.NotebookNode:
    """Strip ``nb`` in place and return it."""
    nb.metadata = nbformat.NotebookNode(
        {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    )
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": list(tags)} if tags else {})
        if cell.cell_type == "code" and SOLUTION in (tags or []):
            cell.metadata.update(solution_metadata())
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            continue
        cell.execution_count = None
        cell.outputs = []
    return nb


def dumps(nb) -> str:
    """The text written for ``nb`` (one canonical form, so ``--check`` is stable)."""
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a file is not stripped"
    )
    args = ap.parse_args(argv)
    dirty = []
    for path in args.paths:
        before = path.read_text(encoding="utf-8")
        nb = strip(nbformat.reads(before, as_version=4))
        after = dumps(nb)
        if after != before:
            dirty.append(path)
            if not args.check:
                path.write_text(after, encoding="utf-8")
    for path in dirty:
        print(("not stripped: " if args.check else "stripped: ") + str(path))
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
