"""Export executed notebooks as HTML handouts that work offline.

Usage::

    python tools/handout.py build/notebooks/*.ipynb     # writes NAME.html beside each
    python tools/handout.py --student --out handouts build/notebooks/*.ipynb
        # writes handouts/NAME.html and handouts/NAME.ipynb without the solution cells
    python tools/handout.py --inline one.ipynb          # one self-contained page

A folder of handouts shares one copy of plotly.js, ``plotly.min.js``, written beside
them (about 4.6 MB; pasting it into each page made every handout over 5 MB). With
``--inline`` each page carries its own copy instead and works alone.

What differs from a plain ``jupyter nbconvert --to html``:

- **Figures draw offline.** plotly.js is loaded from ``plotly.min.js`` beside the page
  (or pasted into its ``<head>`` with ``--inline``), and every
  figure output (the ``application/vnd.plotly.v1+json`` mimetype) becomes a ``<div>`` and a
  ``Plotly.newPlot`` call with a stable id. No script is loaded from a CDN.
- **Math renders offline.** ``$$...$$`` and ``$...$`` in markdown cells become MathML,
  which browsers draw natively (no MathJax).
- **Solutions are folded.** Code cells tagged ``solution`` sit inside ``<details>``.
- **Nothing remote.** The renderer's script that loads plotly.js from its CDN is dropped,
  and the Colab badge (a remote image) becomes a text link.
- **Widgets get a static note.** A static page has no kernel, so a widget view (the
  studio) is replaced by a note saying what the panel holds and where to use it;
  progress bars, which have nothing left to show, are dropped.

The template is ``tools/templates/handout`` (the lab template without CDN scripts).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
__all__ = ["PLOTLY_JS", "export", "latex_to_mathml", "prepare", "student", "to_html"]
#: The shared copy of plotly.js that the handouts of a folder load (``<script src=...>``).
PLOTLY_JS = "plotly.min.js"

_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar's text: "generating:   0%|   | 0/103"
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\](\([^)]*\))")

STUDIO_NOTE = (
    '<div class="mg-static-note"><b>Interactive studio (not shown in this handout).</b> '
    "In JupyterLab or Colab this cell shows the studio panel: a prompt box, sliders for "
    "duration, guidance scale and temperature, a seed, a Generate button with progress and "
    "stop, and a history of takes you can replay and save. A static page has no Python "
    "kernel behind it, so open the notebook to use the panel.</div>"
)
WIDGET_NOTE = (
    '<div class="mg-static-note"><b>Interactive widget (not shown in this handout).</b> '
    "Widgets need a running Python kernel: open the notebook in JupyterLab or Colab.</div>"
)


def latex_to_mathml(markdown: str) -> str:
    """Replace ``$$..$$`` (block) and ``$..$`` (inline) math with MathML; code spans are left alone.

    Examples
    --------
    >>> latex_to_mathml("$$x^2$$").startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">')
    True
    >>> latex_to_mathml("costs `$5` and $5")
    'costs `$5` and $5'
    """
    from latex2mathml.converter import convert

    spans: list[str] = []

    def hide(m):
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(hide, markdown)
    text = _DISPLAY_MATH.sub(
        lambda m: "\n\n" + convert(m.group(1).strip(), display="block") + "\n\n", text
    )
    text = _INLINE_MATH.sub(lambda m: convert(m.group(1)), text)
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _figure_html(fig: dict, div_id: str) -> str:
    layout = dict(fig.get("layout") or {})
    height = int(layout.get("height") or 450)
    payload = json.dumps(
        {"data": fig.get("data", []), "layout": layout}, separators=(",", ":"), allow_nan=False
    ).replace("</", "<\\/")  # never close the <script> early
    return (
        f'<div id="{div_id}" class="mg-plotly" style="width:100%;height:{height}px"></div>\n'
        f'<script type="text/javascript">(function() {{ var f = {payload}; '
        f'Plotly.newPlot("{div_id}", f.data, f.layout, {{"responsive": true}}); }})();</script>'
    )


def prepare(nb) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` ready for the handout template, and its number of figures."""
    nb = copy.deepcopy(nb)
    figures = 0
    for ci, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and "$" in cell.source:
            cell.source = latex_to_mathml(cell.source)
        if cell.cell_type == "markdown":  # the Colab badge is a remote image: a text link
            cell.source = _BADGE.sub(r"[Open in Colab]\1", cell.source)
        if cell.cell_type != "code":
            continue
        for oi, out in enumerate(cell.get("outputs", [])):
            data = out.get("data")
            if not data:
                continue
            plain = data.get("text/plain", "")
            if PLOTLY not in data and "cdn.plot.ly" in data.get("text/html", ""):
                out["data"] = None  # the renderer's loader of plotly.js from its CDN: dropped
            elif PLOTLY in data:
                figures += 1
                out["data"] = {"text/html": _figure_html(data[PLOTLY], f"mg-fig-{ci}-{oi}")}
            elif WIDGET in data and _PROGRESS.search(plain):
                out["data"] = None  # a progress bar: nothing to show once the run is over
            elif WIDGET in data and "text/html" not in data:
                note = STUDIO_NOTE if "Studio" in plain or "studio" in cell.source else WIDGET_NOTE
                out["data"] = {"text/html": note, "text/plain": plain}
        cell.outputs = [o for o in cell.get("outputs", []) if o.get("data", {}) is not None]
    return nb, figures


def student(nb) -> nbformat.NotebookNode:
    """A copy of ``nb`` without its solution cells (code cells tagged ``solution``) and their outputs."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    return nb


def to_html(nb, *, inline: bool = False) -> str:
    """The offline HTML handout of an executed notebook ``nb``.

    ``inline=False`` loads plotly.js from :data:`PLOTLY_JS` beside the page (see :func:`export`).
    """
    import plotly.offline
    from nbconvert import HTMLExporter

    nb, figures = prepare(nb)
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="handout")
    body, _ = exporter.from_notebook_node(nb)
    if figures:
        if inline:
            script = f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n'
        else:
            script = f'<script type="text/javascript" src="{PLOTLY_JS}"></script>\n'
        head_end = body.index("</head>")
        body = body[:head_end] + script + body[head_end:]
    return body


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # never a half-written file


def export(path, out=None, *, inline: bool = False, solutions: bool = True) -> Path:
    """Write the handout of the notebook at ``path`` to ``out`` (default: same name, .html).

    Unless ``inline``, the page loads :data:`PLOTLY_JS` from its own folder, and that
    file is written there too when missing or different (one copy for every handout of
    the folder). ``solutions=False`` leaves the solution cells out (:func:`student`).
    """
    import plotly.offline

    path = Path(path)
    out = Path(out) if out is not None else path.with_suffix(".html")
    nb = nbformat.read(path, as_version=4)
    text = to_html(nb if solutions else student(nb), inline=inline)
    if not inline and f'src="{PLOTLY_JS}"' in text:
        js = out.parent / PLOTLY_JS
        code = plotly.offline.get_plotlyjs()
        if not js.is_file() or js.read_text(encoding="utf-8") != code:
            _write(js, code)
    _write(out, text)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--student", action="store_true", help="leave out the solution cells")
    ap.add_argument("--inline", action="store_true", help="paste plotly.js into each page")
    ap.add_argument("--out", type=Path, help="folder for the pages (default: beside each notebook)")
    args = ap.parse_args(argv)
    jobs = []
    for path in args.paths:  # every check before the first write
        if path.suffix != ".ipynb" or not path.is_file():
            ap.error(f"paths must be .ipynb files, got {str(path)!r}")
        folder = args.out if args.out is not None else path.parent
        suffix = ".student" if args.student and args.out is None else ""
        book = folder / f"{path.stem}{suffix}.ipynb" if args.student else None
        if book is not None and book.resolve() == path.resolve():
            ap.error(f"--student would overwrite {str(path)!r}; pass --out with another folder")
        jobs.append((path, folder / f"{path.stem}{suffix}.html", book))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for path, page, book in jobs:
        print("wrote", export(path, page, inline=args.inline, solutions=not args.student))
        if book is not None:
            _write(book, nbformat.writes(student(nbformat.read(path, as_version=4))) + "\n")
            print("wrote", book)
    return 0


if __name__ == "__main__":
    sys.exit(main())
