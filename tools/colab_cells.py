"""Write the Colab badges, the install/setup cells and the README's install routes
from one place: ``[project.urls] Source`` in ``pyproject.toml`` and ``__version__`` in
``musicgen_nb/_version.py``.

Usage::

    python tools/colab_cells.py            # rewrite notebooks/*.ipynb and README.md in place
    python tools/colab_cells.py --check    # exit 1 if a file would change (tests call this)

What it owns, and rewrites each time (so it can run again after other edits):

- in each notebook, the Colab badge line of the first (title) cell: the rest of
  that cell is kept; the whole second cell (setup: install in Colab, widgets,
  plotly renderer, one line naming the device); the notebook metadata that asks
  Colab for a GPU runtime (``accelerator``, ``colab.gpuType``);
- in ``README.md``, the text between ``<!-- install:begin -->`` and
  ``<!-- install:end -->``.

The install cell and the badges point at the release tag ``v{version}``, never at
the tip of a branch: bump ``version``, run this tool, and tag the release.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BEGIN, END = "<!-- install:begin -->", "<!-- install:end -->"
#: Notebook metadata that makes Colab open the notebook on a GPU runtime.
GPU_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4"}}


def package_version(root: Path = ROOT) -> str:
    """The one version string, ``__version__`` in ``musicgen_nb/_version.py`` (pyproject reads it too)."""
    text = (root / "musicgen_nb" / "_version.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def project(pyproject: Path = ROOT / "pyproject.toml") -> dict:
    """Name, version, source URL, GitHub owner/repo and release tag from ``pyproject``.

    Raises
    ------
    ValueError
        When ``[project.urls] Source`` is missing or is not a ``https://github.com/OWNER/REPO`` URL.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    meta = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    source = meta.get("urls", {}).get("Source", "")
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)/?", source)
    if not m:
        raise ValueError(
            f"[project.urls] Source must be https://github.com/OWNER/REPO, got {source!r}"
        )
    version = package_version(pyproject.parent)
    return dict(
        name=meta["name"], version=version, source=source.rstrip("/"),
        github=f"{m.group(1)}/{m.group(2)}", tag=f"v{version}",
    )  # fmt: skip


def pip_url(p: dict) -> str:
    """The pip requirement that installs the release tag from the source repository."""
    return f"{p['name']} @ git+{p['source']}@{p['tag']}"


def colab_url(p: dict, notebook: str) -> str:
    """The page that opens ``notebooks/<notebook>`` of the release tag in Colab."""
    return f"https://colab.research.google.com/github/{p['github']}/blob/{p['tag']}/notebooks/{notebook}"


def badge(p: dict, notebook: str) -> str:
    """The markdown of the Open-in-Colab badge for ``notebook``."""
    return f"[![Open In Colab]({BADGE_SVG})]({colab_url(p, notebook)})"


def setup_source(p: dict) -> str:
    """The setup cell: the same in every notebook."""
    return f'''# Setup (written by tools/colab_cells.py; edit it there). In Colab: install
# musicgen-nb {p["tag"]} once. mg.teaching.setup() picks the plotly renderer (and Colab's
# widget manager) and prints the device; mg.teaching.load(MODEL) then measures a step.
import importlib.util
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("musicgen_nb") is None:
    %pip install --quiet "{pip_url(p)}"
import musicgen_nb as mg

IN_COLAB, QUICK = mg.teaching.setup()'''


def _badged(source: str, p: dict, notebook: str) -> str:
    """``source`` of the title cell with its badge line replaced (or added under the title)."""
    lines = source.split("\n")
    new = badge(p, notebook)
    for i, line in enumerate(lines):
        if "colab-badge.svg" in line:
            lines[i] = new
            return "\n".join(lines)
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"{notebook}: the first cell must open with a '# ' title")
    return "\n".join([lines[0], "", new, *lines[1:]])


def render_notebook(text: str, p: dict, notebook: str) -> str:
    """The text of a notebook with its badge, setup cell and GPU metadata written."""
    nb = nbformat.reads(text, as_version=4)
    if len(nb.cells) < 2 or nb.cells[0].cell_type != "markdown":
        raise ValueError(f"{notebook}: need a markdown title cell and a setup cell first")
    nb.cells[0].source = _badged(nb.cells[0].source, p, notebook)
    setup = nb.cells[1]
    if setup.cell_type != "code":
        raise ValueError(f"{notebook}: the second cell must be the setup code cell")
    setup.source = setup_source(p)
    nb.metadata["accelerator"] = GPU_METADATA["accelerator"]
    nb.metadata.setdefault("colab", {}).update(GPU_METADATA["colab"])
    return nbformat.writes(nb) + "\n"  # the form tools/nbstrip.py writes


def readme_block(p: dict, notebooks: list[str]) -> str:
    """The README's install routes and Colab badges."""
    rows = "\n".join(f"| `{nb}` | {badge(p, nb)} |" for nb in notebooks)
    return f"""{BEGIN}
<!-- Written by tools/colab_cells.py from pyproject.toml; edit it there. -->
`musicgen-nb` is not on PyPI (`pip install musicgen-nb` finds nothing). Install it from a
checkout, from a wheel built in one, or from the git URL at the release tag {p["tag"]}:

```bash
# 1. a checkout (on a CPU machine, `make install` also pins the CPU torch: see below)
git clone {p["source"]} && cd {p["github"].split("/")[1]} && pip install -e .
# 2. the release tag, straight from git (what the notebooks' setup cell runs in Colab)
pip install "{pip_url(p)}"
# 3. a wheel built in a checkout
pip wheel --no-deps -w dist . && pip install dist/musicgen_nb-{p["version"]}-py3-none-any.whl
```

Each notebook opens in Colab at the same tag and installs it in its first code cell:

| notebook | Colab |
| --- | --- |
{rows}
{END}"""


def render_readme(text: str, p: dict, notebooks: list[str]) -> str:
    """README text with the block between the install markers rewritten."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"README.md must hold {BEGIN} ... {END}")
    return text[:start] + readme_block(p, notebooks) + text[stop + len(END) :]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a file would change"
    )
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    p = project(args.root / "pyproject.toml")
    paths = sorted((args.root / "notebooks").glob("*.ipynb"))
    jobs = [(path, lambda t, n=path.name: render_notebook(t, p, n)) for path in paths]
    names = [path.name for path in paths]
    jobs.append((args.root / "README.md", lambda t: render_readme(t, p, names)))
    dirty = []
    for path, render in jobs:
        before = path.read_text(encoding="utf-8")
        after = render(before)
        if after != before:
            dirty.append(path)
            if not args.check:  # write a sibling, then rename: never a half-written file
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(after, encoding="utf-8")
                tmp.replace(path)
    for path in dirty:
        print(("out of date: " if args.check else "written: ") + str(path.relative_to(args.root)))
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
