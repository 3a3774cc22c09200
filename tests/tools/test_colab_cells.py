"""tools/colab_cells.py: badges, install cells and README install routes agree,
and all come from ``[project.urls] Source`` in pyproject.toml and the one version string,
``__version__`` in ``musicgen_nb/_version.py``."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cells  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BADGE = re.compile(r"\(https://colab\.research\.google\.com/github/([^)]+)\)")
PIP = re.compile(r'install[^"\n]*"(musicgen-nb @ git\+[^"]+)"')


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_committed_files_are_what_the_tool_writes(capsys):
    assert colab_cells.main(["--check"]) == 0, capsys.readouterr().out


def test_badges_install_cells_and_readme_agree():
    meta = _pyproject()
    source, tag = meta["urls"]["Source"], f"v{colab_cells.package_version()}"
    github = source.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme_badges = BADGE.findall(readme)
    readme_pips = set(PIP.findall(readme))
    assert readme_pips == {f"musicgen-nb @ git+{source}@{tag}"}, readme_pips
    assert f"git clone {source}" in readme
    nb_badges = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        (link,) = BADGE.findall(nb.cells[0].source)
        assert link == f"{github}/blob/{tag}/notebooks/{path.name}"
        nb_badges.append(link)
        assert set(PIP.findall(nb.cells[1].source)) == readme_pips, path.name
        assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    assert readme_badges == nb_badges  # one README badge per notebook, same links


def test_install_cell_is_pinned_to_a_tag_not_a_branch():
    p = colab_cells.project()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", p["tag"])
    assert colab_cells.pip_url(p).endswith("@" + p["tag"])
    assert "/blob/main/" not in colab_cells.badge(p, "x.ipynb")


def _copy_project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "musicgen_nb").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "musicgen_nb" / "_version.py", tmp_path / "musicgen_nb")
    shutil.copy(ROOT / "README.md", tmp_path)
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, tmp_path / "notebooks")
    return tmp_path


def test_rewrites_only_its_own_cells_and_can_run_again(tmp_path, capsys):
    root = _copy_project(tmp_path)
    path = root / "notebooks" / NOTEBOOKS[0].name
    nb = nbformat.read(path, as_version=4)
    body = [c.source for c in nb.cells[2:]]
    # A stale badge on main, an old setup cell, no GPU metadata, and a body edited by someone else.
    nb.cells[0].source = nb.cells[0].source.replace("/blob/v", "/blob/main-was-v")
    nb.cells[1].source = "# old setup\nimport sys"
    nb.cells[-1].source += "\n# edited by another helper"
    body[-1] = nb.cells[-1].source
    del nb.metadata["accelerator"]
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    pyproject = root / "pyproject.toml"
    version = root / "musicgen_nb" / "_version.py"
    version.write_text(
        version.read_text().replace('__version__ = "', '__version__ = "9', 1), encoding="utf-8"
    )

    assert colab_cells.main(["--check", "--root", str(root)]) == 1
    assert "out of date: notebooks/" + path.name in capsys.readouterr().out
    assert colab_cells.main(["--root", str(root)]) == 0
    assert colab_cells.main(["--check", "--root", str(root)]) == 0

    nb = nbformat.read(path, as_version=4)
    p = colab_cells.project(pyproject)
    assert p["tag"].startswith("v9")
    assert colab_cells.badge(p, path.name) in nb.cells[0].source
    assert nb.cells[0].source.startswith("# ") and "main-was" not in nb.cells[0].source
    assert nb.cells[1].source == colab_cells.setup_source(p)
    assert [c.source for c in nb.cells[2:]] == body
    assert nb.metadata["accelerator"] == "GPU"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert colab_cells.pip_url(p) in readme and readme.count("<!-- install:begin -->") == 1


def test_a_title_cell_without_badge_gets_one_under_the_title():
    p = colab_cells.project()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nText."), nbformat.v4.new_code_cell("1")]
    out = nbformat.reads(colab_cells.render_notebook(nbformat.writes(nb), p, "x.ipynb"), 4)
    assert out.cells[0].source == f"# Title\n\n{colab_cells.badge(p, 'x.ipynb')}\n\nText."
    nb.cells[0].source = "no title"
    with pytest.raises(ValueError, match="must open with a '# ' title"):
        colab_cells.render_notebook(nbformat.writes(nb), p, "x.ipynb")


def test_source_must_be_a_github_repository(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text(
        '[project]\nname = "x"\nversion = "1.0.0"\n[project.urls]\nSource = "https://example.org/x"\n'
    )
    with pytest.raises(
        ValueError,
        match=r"Source must be https://github.com/OWNER/REPO, got 'https://example.org/x'",
    ):
        colab_cells.project(bad)


def test_setup_cell_runs_and_prints_one_device_line():
    """The real cell, through IPython's transformer (it holds a %pip line), outside Colab."""
    from IPython.core.inputtransformer2 import TransformerManager
    from IPython.utils.capture import capture_output

    code = TransformerManager().transform_cell(colab_cells.setup_source(colab_cells.project()))
    scope = {}
    with capture_output() as out:
        exec(compile(code, "<setup>", "exec"), scope)
    lines = out.stdout.splitlines()
    assert len(lines) == 1, lines
    import torch

    if torch.cuda.is_available():
        assert lines[0] == f"device: cuda ({torch.cuda.get_device_name(0)})"
    else:
        assert lines[0].startswith("device: cpu (") and "int8" in lines[0]
        assert "decode step time measured on that model" in lines[0]
        assert "Runtime > Change runtime type" not in lines[0]  # only said in Colab
    assert scope["IN_COLAB"] is False and scope["QUICK"] in (True, False)
    assert (
        len(colab_cells.setup_source(colab_cells.project()).splitlines()) <= 12
    )  # short: the student sees one line of plumbing
