"""The offline HTML handouts (tools/handout.py): figures, math, solutions and widgets.

The browser test executes a small notebook in a real kernel (the same renderer
setup as the curated notebooks), exports it, opens the page in headless
Chromium with every network request blocked, and checks that the figures drew,
the math rendered and the solutions are folded. A screenshot goes to
build/handout.png.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
LABEL = "a<b> & </s>"


def _handout():
    spec = importlib.util.spec_from_file_location("handout", ROOT / "tools" / "handout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


handout = _handout()


def _notebook():
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# Handout test\n\nGuidance: $$\\ell = u + s\\,(c - u)$$"),
        v4.new_code_cell(
            "import plotly.io as pio\n"
            'pio.renderers.default = "plotly_mimetype+notebook_connected"\n'
            "import numpy as np\nimport plotly.graph_objects as go\n"
            "from musicgen_nb import viz"
        ),
        v4.new_markdown_cell("Inline math $x^2$ and a price in code: `$5`."),
        v4.new_code_cell(
            "from musicgen_nb.viz._util import esc\n"
            f"go.Figure(go.Bar(x=[esc({LABEL!r}), 'plain'], y=[1, 2]))"
        ),
        v4.new_code_cell("viz.waveform(np.sin(np.arange(3200) / 7), 32000)"),
        v4.new_code_cell("import ipywidgets\nipywidgets.IntSlider(3)"),
        v4.new_code_cell(
            "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='generating'):\n    pass"
        ),
        v4.new_markdown_cell("**Exercise 1.** Print 42."),
        v4.new_code_cell("print(6 * 7)", metadata={"tags": ["solution"]}),
    ]
    return v4.new_notebook(cells=cells)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbclient = pytest.importorskip("nbclient")
    nb = _notebook()
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    path = tmp_path_factory.mktemp("handout") / "handout_test.ipynb"
    nbformat.write(nb, path)
    return path


def test_latex_to_mathml_leaves_code_and_prices():
    out = handout.latex_to_mathml("a $$x^2$$ b $y$ and `$HOME` cost $5")
    assert out.count("<math") == 2 and "`$HOME`" in out and "cost $5" in out
    assert 'display="block"' in out and "$$" not in out


def test_prepare_replaces_figures_and_widgets(executed):
    nb = nbformat.read(executed, as_version=4)
    prepared, figures = handout.prepare(nb)
    assert figures == 2
    outs = [o for c in prepared.cells for o in c.get("outputs", [])]
    html = [o.get("data", {}).get("text/html", "") for o in outs]
    assert sum("Plotly.newPlot(" in h for h in html) == 2
    assert sum("Interactive widget" in h for h in html) == 1  # the slider; the bar is dropped
    assert not any("generating" in o.get("data", {}).get("text/plain", "") for o in outs)
    assert "</s>" not in "".join(html)  # escaped label, and "</" escaped inside scripts
    assert "$$" not in prepared.cells[0].source  # the input notebook is not changed:
    assert "$$" in nb.cells[0].source


def test_page_has_no_remote_scripts(executed):
    page = handout.to_html(nbformat.read(executed, as_version=4), inline=True)
    assert page.count("<script") >= 3
    assert '<script src="http' not in page and "require.js" not in page
    import plotly.offline

    assert page.count(plotly.offline.get_plotlyjs()[-300:]) == 1  # plotly.js pasted once
    assert page.count('<details class="mg-solution">') == 1


def test_folder_of_handouts_shares_one_plotly_js(executed, tmp_path):
    import plotly.offline

    code = plotly.offline.get_plotlyjs()
    pages = [handout.export(executed, tmp_path / f"h{i}.html") for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "h0.html",
        "h1.html",
        "h2.html",
        "plotly.min.js",
    ]
    assert (tmp_path / "plotly.min.js").read_text(encoding="utf-8") == code
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert '<script type="text/javascript" src="plotly.min.js"></script>' in text
        assert code[-300:] not in text and len(text) < len(code) / 4


def test_student_build_leaves_out_every_solution(executed, tmp_path, capsys):
    out = tmp_path / "student"
    assert handout.main(["--student", "--out", str(out), str(executed)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "handout_test.html",
        "handout_test.ipynb",
        "plotly.min.js",
    ]
    page = (out / "handout_test.html").read_text(encoding="utf-8")
    assert '<details class="mg-solution">' not in page and "6 * 7" not in page
    assert "Exercise 1" in page
    book = nbformat.read(out / "handout_test.ipynb", as_version=4)
    tags = [t for c in book.cells for t in c.get("metadata", {}).get("tags", [])]
    assert "solution" not in tags and len(book.cells) == len(_notebook().cells) - 1
    assert nbformat.read(executed, as_version=4).cells[-1].source == "print(6 * 7)"  # input kept


def test_student_build_refuses_to_overwrite_its_input(executed, tmp_path):
    import shutil

    book = tmp_path / "handout_test.ipynb"
    shutil.copy(executed, book)
    with pytest.raises(SystemExit):
        handout.main(["--student", "--out", str(tmp_path), str(book)])
    assert nbformat.read(book, as_version=4).cells[-1].source == "print(6 * 7)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handout_test.ipynb"]  # nothing written


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_handout_draws_offline_in_chromium(executed):
    from playwright.sync_api import sync_playwright

    page_path = handout.export(executed)
    shot = ROOT / "build" / "handout.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    blocked = []

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.route("**/*", route)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_function(
                "document.querySelectorAll('.mg-plotly .main-svg').length >= 2", timeout=30_000
            )
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('.mg-plotly')).map(d => "
                "[d.querySelectorAll('.main-svg').length, d.getBoundingClientRect().height, "
                "d.querySelectorAll('g.point path, path.js-line, g.hm image').length])"
            )
            ticks = page.evaluate(
                "Array.from(document.querySelectorAll('.mg-plotly .xtick text')).map(t => t.textContent)"
            )
            maths = page.evaluate(
                "Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().width)"
            )
            text = page.evaluate("document.body.innerText")
            details_open = page.evaluate(
                "Array.from(document.querySelectorAll('details.mg-solution')).map(d => d.open)"
            )
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not blocked, blocked  # nothing asked from the network
    assert len(drawn) == 2 and all(n >= 1 and h > 100 and marks > 0 for n, h, marks in drawn), drawn
    assert LABEL in ticks, ticks  # the escaped label shows as typed
    assert len(maths) == 2 and all(w > 5 for w in maths), maths
    assert "$$" not in text and "Interactive widget" in text
    assert details_open == [False]
