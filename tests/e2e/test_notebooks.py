"""The curated notebooks: they run headless on the offline checkpoints, and they are committed clean.

Each notebook runs with papermill on ``tiny`` (``tiny-melody`` for the melody
notebook) with short durations. The executed copies and their HTML renderings go
to ``build/notebooks/`` (git-ignored) for people to look at; the HTML is the
offline handout of ``tools/handout.py`` (tests/tools/test_handout.py checks it in Chromium).

Cells marked ``# NBVAL_CHECK_OUTPUT`` print things that do not depend on the
weights (shapes, frame counts, pattern grids, formulas). Their expected text is
kept in ``tests/e2e/notebooks_expected.json`` (not in the notebooks, which are
committed without outputs) and compared after each papermill run. The Makefile
then runs ``pytest --nbval-lax`` on the executed copies: a second, independent
execution must reproduce every checked output.

Set ``MUSICGEN_NB_UPDATE_EXPECTED=1`` to rewrite the expected text after a
deliberate change (and read the diff before committing it).

Each notebook runs twice in one working directory (first with ``SOLUTIONS=True``, then
as a student's Run All): re-running must be safe, a default run prints no solution, and
nothing is written beside the notebook.

The static checks need no kernel: no committed output or execution count, a
``parameters`` cell and at least one ``solution`` cell.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
BUILD_DIR = ROOT / "build" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"
KERNEL = "python3"
CELL_TIMEOUT = 120  # seconds per cell

EXPECTED = Path(__file__).resolve().parent / "notebooks_expected.json"
# The rules `pytest --musicgen-standin` gives nbval (musicgen_nb/nbval_sanitize.cfg).
SANITIZE = Path(__file__).resolve().parents[2] / "musicgen_nb" / "nbval_sanitize.cfg"
# CI runs each notebook as a tutorial author's CI would: unchanged, with stand-ins on
# (`mg.load("facebook/musicgen-small")` loads `tiny`) and MUSICGEN_NB_QUICK=1 (short
# clips), exactly as the nbval step does, so that checked outputs agree.
# Solution cells start collapsed: JupyterLab's source_hidden and a Colab form (tools/nbstrip.py).
SOLUTION_METADATA = {"jupyter": {"source_hidden": True}, "cellView": "form"}


def _ids(paths):
    return [p.stem for p in paths]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return cells[0] if len(cells) == 1 else None


def _parameter_values(cell):
    import ast

    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value.value


def _declared_names(nb) -> set[str]:
    import ast

    cell = _parameters_cell(nb)
    names = set()
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_notebooks_exist():
    prefixes = {p.stem[:3] for p in NOTEBOOKS}
    assert {f"{i:02d}_" for i in range(8)} <= prefixes, _ids(NOTEBOOKS)


# ---------------------------------------------------------------------------- static checks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_clean(path):
    """No outputs, no execution counts, no metadata but tags and hidden solutions (nbstrip)."""
    nb = _read(path)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            problems.append(f"cell {i}: committed output or execution count (run tools/nbstrip.py)")
        meta = dict(cell.metadata)
        tags = meta.pop("tags", [])
        if "solution" in tags:
            hidden = {k: meta.pop(k, None) for k in ("jupyter", "cellView")}
            if hidden != SOLUTION_METADATA:
                problems.append(f"cell {i}: a solution cell must be hidden (run tools/nbstrip.py)")
        if meta:
            problems.append(f"cell {i}: cell metadata {sorted(meta)} (run tools/nbstrip.py)")
    assert not problems, f"{path.name} is not stripped:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_checked_cells_have_expected_text(path):
    """Every checked cell has its expected output on file, and only checked cells do."""
    checked = [c for c in _read(path).cells if c.cell_type == "code" and CHECK in c.source]
    expected = json.loads(EXPECTED.read_text()).get(path.stem, [])
    assert len(expected) == len(checked), (
        f"{path.name}: {len(checked)} checked cells, {len(expected)} expected outputs on file "
        "(MUSICGEN_NB_UPDATE_EXPECTED=1 pytest tests/e2e/test_notebooks.py)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_structure(path):
    """A parameters cell with MODEL, a solution cell, a Colab badge, an intro and ruff-clean code."""
    nb = _read(path)
    cell = _parameters_cell(nb)
    assert cell is not None and cell.cell_type == "code", (
        f"{path.name}: need exactly one code cell tagged 'parameters'"
    )
    assert "MODEL" in _declared_names(nb), f"{path.name}: the parameters cell must set MODEL"
    from musicgen_nb import testing

    model = dict(_parameter_values(cell)).get("MODEL")
    assert testing.standin_for(model) is not None, (
        f"{path.name}: MODEL must name a real checkpoint ({model!r}); CI swaps in its "
        "stand-in (pytest --musicgen-standin), so the notebook needs no CI switch"
    )
    switches = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and ("ModelUnavailableError" in c.source or re.search(r"load\(\s*['\"]tiny", c.source))
    ]
    assert not switches, f"{path.name}: cells {switches} switch models for CI; stand-ins do that"
    tags = [t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])]
    assert "solution" in tags, f"{path.name}: no cell tagged 'solution'"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        f"{path.name}: open with a markdown title"
    )
    # The badge and the setup cell are written by tools/colab_cells.py (tests/tools/test_colab_cells.py).
    sys.path.insert(0, str(ROOT / "tools"))
    import colab_cells

    badge = colab_cells.colab_url(colab_cells.project(), path.name)
    assert badge in first.source, (
        f"{path.name}: the first cell needs the Colab badge linking to {badge}"
    )
    setup = nb.cells[1]
    assert setup.cell_type == "code" and '"google.colab" in sys.modules' in setup.source
    assert nb.metadata.get("accelerator") == "GPU", f"{path.name}: ask Colab for a GPU runtime"


# ---------------------------------------------------------------------------- execution
@pytest.fixture(scope="session")
def kernel():
    """papermill starts the kernel named 'python3': make sure it is this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        argv0 = spec.argv[0]
    except NoSuchKernel:
        argv0 = None
    if argv0 is None or (
        argv0 != "python" and Path(argv0).resolve() != Path(sys.executable).resolve()
    ):
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix, kernel_name=KERNEL)
    return KERNEL


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser(interpolation=None)  # nbval reads the rules literally too
    cfg.read(SANITIZE)
    return [(re.compile(cfg[sec]["regex"]), cfg[sec]["replace"]) for sec in cfg.sections()]


def checked_text(nb) -> list[str]:
    """The printed text of each checked cell, sanitized as nbval does."""
    rules = _sanitizers()
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code" or CHECK not in cell.source:
            continue
        text = ""
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text += out.text
            elif "text/plain" in out.get("data", {}):
                text += out.data["text/plain"] + "\n"
        for pattern, repl in rules:
            text = pattern.sub(repl, text)
        texts.append(text)
    return texts


def _execute(papermill, path: Path, out: Path, cwd: Path, kernel: str, parameters: dict):
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters=parameters,
        kernel_name=kernel,
        cwd=str(cwd),
        execution_timeout=CELL_TIMEOUT,
        progress_bar=False,
        log_output=False,
    )
    executed = _read(out)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    return executed


def _solution_text(nb) -> list[str]:
    """What each solution cell printed (stream text and displayed plain text)."""
    texts = []
    for cell in nb.cells:
        if "solution" not in cell.get("metadata", {}).get("tags", []):
            continue
        text = ""
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text += out.get("text", "") + data.get("text/plain", "")
            text += "".join(f"<{kind}>" for kind in data if not kind.startswith("text/"))
        texts.append(text)
    return texts


@pytest.mark.notebooks
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_twice_in_one_folder(path, kernel, tmp_path, monkeypatch):
    """Two runs in the same working directory: with the solutions, then as a student's Run All.

    The second run must not trip over the first one's files (re-running is safe), print
    the same checked outputs, print no solution (only the line saying how to run it), and
    neither run may write beside the notebook: files go to ``mg.teaching.scratch`` folders
    in the temp directory (TMPDIR here).
    """
    papermill = pytest.importorskip("papermill")

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    out = BUILD_DIR / path.name
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the kernel's tempfile.gettempdir()
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")  # what `pytest --musicgen-standin` sets
    monkeypatch.setenv("MUSICGEN_NB_QUICK", "1")  # the kernel inherits it: short clips
    monkeypatch.delenv("MUSICGEN_NB_SOLUTIONS", raising=False)
    # One torch thread per kernel: with notebooks run side by side (pytest -n 2) on 2 cores,
    # more threads oversubscribe the CPU and decoding slows down about 50x.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    if "MUSICGEN_NB_CACHE" not in os.environ:
        monkeypatch.setenv("MUSICGEN_NB_CACHE", str(ROOT / "build" / "cache"))
    first = _execute(
        papermill, path, tmp_path / "with_solutions.ipynb", cwd, kernel, {"SOLUTIONS": True}
    )
    try:  # the student's run: the executed copy that nbval re-runs and the handout show
        second = _execute(papermill, path, out, cwd, kernel, {})
    finally:
        if out.exists():  # the offline handout (tools/handout.py), for people to look at
            _handout().export(out)
    assert sorted(p.name for p in cwd.iterdir()) == [], f"{path.name} wrote beside the notebook"
    solved = _solution_text(first)
    assert all(t and "Solution not run" not in t for t in solved), (path.name, solved)
    hidden = _solution_text(second)
    assert all(t.startswith("Solution not run") and t.count("\n") == 1 for t in hidden), hidden
    got = checked_text(second)
    assert checked_text(first) == got, f"{path.name}: a second run printed other checked outputs"
    expected = json.loads(EXPECTED.read_text())
    if os.environ.get("MUSICGEN_NB_UPDATE_EXPECTED") == "1":
        expected[path.stem] = got
        EXPECTED.write_text(json.dumps(dict(sorted(expected.items())), indent=1) + "\n")
    want = [_sanitize(t) for t in expected.get(path.stem, [])]
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == b, f"{path.name}: checked cell {i} printed\n{a}\nexpected\n{b}"


def _handout():
    import importlib.util

    spec = importlib.util.spec_from_file_location("handout", ROOT / "tools" / "handout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sanitize(text: str) -> str:
    for pattern, repl in _sanitizers():
        text = pattern.sub(repl, text)
    return text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_solutions_hidden_and_explained(path):
    """Solution cells start collapsed; an exercise that asks 'why' is answered in words too."""
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        if "solution" not in cell.get("metadata", {}).get("tags", []):
            continue
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{path.name} cell {i}: solution not hidden (run tools/nbstrip.py)"
        )
        question = nb.cells[i - 1].source if i else ""
        if "why" in question.lower() and "**Exercise" in question:
            assert "# Why:" in cell.source, (
                f"{path.name} cell {i}: the exercise asks why; answer it in words in the "
                "(hidden) solution cell, in a comment block starting with '# Why:'"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_solutions_run_only_when_asked(path):
    """Run All executes no solution: each solution cell is guarded by the SOLUTIONS parameter."""
    nb = _read(path)
    assert dict(_parameter_values(_parameters_cell(nb))).get("SOLUTIONS") is False, (
        f"{path.name}: the parameters cell must set SOLUTIONS = False"
    )
    for i, cell in enumerate(nb.cells):
        if "solution" in cell.get("metadata", {}).get("tags", []):
            assert cell.source.startswith("if mg.teaching.solutions(SOLUTIONS):\n"), (
                f"{path.name} cell {i}: start a solution with `if mg.teaching.solutions(SOLUTIONS):`"
            )
