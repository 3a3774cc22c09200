"""Sphinx helpers of the musicgen-nb site (docs/conf.py loads them).

- ``.. public-api:: musicgen_nb.models`` documents every name in the module's ``__all__``:
  each object once, on the page of its canonical module (the public module that defines it),
  and a link from the other pages that re-export it.
- ``missing-reference``: a reference to ``musicgen_nb.X`` that names an object documented
  under another path (``musicgen_nb.load`` is ``musicgen_nb.models.load``; a private module's
  function re-exported by its package) resolves to where it is documented. Anything else
  stays unresolved, and ``-W -n`` makes it an error.
- ``.. pytest-plugin::`` prints the plugin's options and markers from ``pytest --help`` and
  ``pytest --markers`` (so the page cannot drift from the code).
- ``prepare_notebooks``: copies the executed notebooks (``build/notebooks/*.ipynb``) into the
  site with a banner, figures made offline by ``tools/handout.py`` and one local plotly.js.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# The checkout (`make docs` builds a copy of docs/ in build/, so not a fixed number of levels up).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
PACKAGE = "musicgen_nb"
#: The API pages, in the order of the reference (tools/public_api.py's list, plus the
#: catalog behind list_models).
sys.path.insert(0, str(ROOT / "tools"))
import public_api  # noqa: E402

MODULES = [PACKAGE] + [f"{PACKAGE}.{m}" for m in [*public_api.MODULES, "catalog"]]
BANNER = (
    "```{{admonition}} Audio from random weights\n:class: warning\n"
    "This page is the notebook as CI ran it: on stand-ins (`MUSICGEN_NB_STANDIN=1`), offline "
    "checkpoints with the real architecture and **random weights**, in quick mode. Every "
    "cell ran, but the audio is noise and the figures show an untrained model. Open the "
    "notebook in Colab ([{name}]({colab})) to hear MusicGen's real weights.\n```\n"
)

NOTEBOOKS_INDEX = """# Notebooks

The ten curated walkthroughs, rendered from their CI execution: papermill ran each one on
stand-ins (random weights) in quick mode, so every cell ran, and the audio is noise. Each page
links to Colab, where the notebook runs on MusicGen's real weights. The notebooks live in
`notebooks/` of the repository (committed without outputs).

```{toctree}
:maxdepth: 1

"""


def _is_ours(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj)


def canonical(name: str, obj: object) -> str:
    """The public module whose page documents ``obj``: the longest one that defines it."""
    home = getattr(obj, "__module__", "") or ""
    best = None
    for module in MODULES:
        if (home == module or home.startswith(module + ".")) and name in _all(module):
            if best is None or len(module) > len(best):
                best = module
    return best or next(m for m in MODULES if name in _all(m))


def _all(module: str) -> list[str]:
    """``__all__``, or for a module without one, the functions and classes it defines."""
    mod = importlib.import_module(module)
    if hasattr(mod, "__all__"):
        return list(mod.__all__)
    return [
        name
        for name, obj in vars(mod).items()
        if not name.startswith("_") and _is_ours(obj) and obj.__module__ == module
    ]


class PublicAPI(SphinxDirective):
    """Document every name of a module's ``__all__`` (see the module docstring)."""

    required_arguments = 1
    option_spec = {"synopsis": directives.unchanged}

    def run(self):
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        lines = [f".. automodule:: {module_name}", "   :no-members:", ""]
        lines += [f".. py:currentmodule:: {module_name}", ""]
        seen_data = self.env.temp_data.setdefault("mg_data", {})
        for name in _all(module_name):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                lines += [f"- :mod:`{obj.__name__}`", ""]
                continue
            if _is_ours(obj):
                home = canonical(name, obj)
                if home != module_name:
                    lines += [f"- ``{name}``: see :py:obj:`{home}.{name}`", ""]
                    continue
                kind = "autoclass" if inspect.isclass(obj) else "autofunction"
                lines.append(f".. {kind}:: {module_name}.{name}")
                if kind == "autoclass":
                    lines += ["   :members:", "   :special-members: __call__, __iter__"]
                lines.append("")
                continue
            if callable(obj) and not _is_ours(obj):  # an instance or a re-export of another library
                lines += [f".. autodata:: {module_name}.{name}", "   :annotation:", ""]
                continue
            key = (name, repr(obj))
            if key in seen_data.values() and seen_data.get(f"{module_name}.{name}") != key:
                lines += [f".. autodata:: {module_name}.{name}", "   :no-index:", ""]
            else:
                seen_data[f"{module_name}.{name}"] = key
                lines += [f".. autodata:: {module_name}.{name}", ""]
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=module_name), node)
        return node.children


def _resolve_object(target: str):
    """Import ``a.b.c`` as a module or an attribute path; None when it does not exist."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _index(env) -> dict[int, str]:
    """id(object) -> the full name it is documented under (classes, functions, methods)."""
    index = getattr(env, "_mg_index", None)
    if index is None:
        index = {}
        for fullname, entry in list(env.get_domain("py").objects.items()):
            if entry.objtype not in ("data", "attribute", "module"):
                obj = _resolve_object(fullname)
                if obj is not None:
                    index.setdefault(id(obj), fullname)
        env._mg_index = index
    return index


def _candidates(env, node) -> list[str]:
    """Full names a reference may mean: as written, in its class, in its module, by suffix."""
    target = node.get("reftarget", "").lstrip("~.")
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    out = [target] if target.startswith(PACKAGE) else []
    if module.startswith(PACKAGE):
        if cls:
            out.append(f"{module}.{cls}.{target}")
        out.append(f"{module}.{target}")
    if not target.startswith(PACKAGE):
        ends = [n for n in env.get_domain("py").objects if n.endswith("." + target)]
        if len({id(_resolve_object(n)) for n in ends}) == 1:
            out.append(ends[0])
        if not ends and "." not in target:  # a helper named in its own module's docstring
            found = {
                id(getattr(m, target)): f"{name}.{target}"
                for name, m in list(sys.modules.items())
                if name.startswith(PACKAGE) and hasattr(m, target)
            }
            if len(found) == 1:
                out.extend(found.values())
    return out


def missing_reference(app, env, node, contnode):
    """Resolve ``musicgen_nb.X`` to where X is documented (see the module docstring).

    A name that exists but is not public (a private module, a helper class) links to the
    page of its nearest documented module. A name that does not exist stays unresolved,
    and the strict build fails on it.
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    for target in _candidates(env, node):
        obj = _resolve_object(target)
        if obj is None:
            continue
        fullname = _index(env).get(id(obj)) if not isinstance(obj, (int, str, tuple)) else None
        if fullname is None:
            if target in domain.objects:
                fullname = target
            else:
                parent = target
                while parent and parent not in domain.modules:
                    parent = parent.rpartition(".")[0]
                fullname = parent or None
        if fullname is None:
            continue
        node["reftarget"] = fullname
        return domain.resolve_xref(
            env, node.get("refdoc"), app.builder, "obj", fullname, node, contnode
        )
    return None


class PytestPlugin(SphinxDirective):
    """The plugin's command-line options and markers, read from pytest itself."""

    def run(self):
        env = {**os.environ, "PYTEST_ADDOPTS": "", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        base = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "musicgen_nb.pytest_plugin",
            "-p",
            "no:cacheprovider",
        ]

        def run_pytest(flag):
            out = subprocess.run(
                [*base, flag], capture_output=True, text=True, cwd="/", env=env, check=True
            )
            return out.stdout

        help_text = run_pytest("--help")
        start = help_text.index("MusicGen offline stand-ins")
        block = help_text[start:].split("\n\n")[0]
        lines = help_text.splitlines()
        ini = []
        for i, line in enumerate(lines):
            if line.strip().startswith("musicgen_"):
                ini += [line.strip(), lines[i + 1].strip()]
        markers = [
            line
            for line in run_pytest("--markers").splitlines()
            if line.startswith("@pytest.mark.needs_weights")
        ]
        out = []
        for title, command, text in (
            ("Command-line options, from ", "pytest --help", block),
            ("Ini option (pyproject.toml or pytest.ini), from ", "pytest --help", "\n".join(ini)),
            ("Marker, from ", "pytest --markers", "\n".join(markers)),
        ):
            title_node = nodes.paragraph("", "", nodes.Text(title), nodes.literal(command, command))
            out += [title_node, nodes.literal_block(text, text)]
        return out


def prepare_notebooks(app):
    """Copy build/notebooks/*.ipynb into docs/notebooks/ with a banner and offline figures."""
    if not app.config.mg_render_notebooks:
        return
    import nbformat

    sys.path.insert(0, str(ROOT / "tools"))
    import colab_cells
    import handout

    project = colab_cells.project()

    src = Path(app.config.mg_executed_notebooks)
    dest = Path(app.srcdir) / "notebooks"
    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [n for n in names if not (src / n).exists()]
    if missing:
        raise RuntimeError(
            f"executed notebooks missing in {src}: {missing}; `make docs` runs them first "
            "(tools/docs_notebooks.py)"
        )
    dest.mkdir(exist_ok=True)
    for name in names:
        nb = nbformat.read(src / name, as_version=4)
        nb, _ = handout.prepare(nb)
        nb.metadata.pop("widgets", None)  # no widget manager from a CDN: widgets are static notes
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            if cell.cell_type == "markdown":
                cell.source = cell.source.replace(
                    "](../", "](https://github.com/musicgen-nb/musicgen-nb/blob/main/"
                )
        url = colab_cells.colab_url(project, name)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(BANNER.format(name=name, colab=url)))
        text = nbformat.writes(nb)
        out = dest / name
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")
    index = NOTEBOOKS_INDEX + "".join(f"{Path(n).stem}\n" for n in names) + "```\n"
    if not (dest / "index.md").exists() or (dest / "index.md").read_text() != index:
        (dest / "index.md").write_text(index, encoding="utf-8")
    static = Path(app.srcdir) / "_static" / "plotly.min.js"
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not static.exists() or static.stat().st_size != js.stat().st_size:
        shutil.copyfile(js, static)


def _mathml(latex: str, display: bool) -> str:
    from latex2mathml.converter import convert

    return convert(latex, display="block" if display else "inline")


def _visit_inline_math(self, node):
    self.body.append(_mathml(node.astext(), False))
    raise nodes.SkipNode


def _visit_block_math(self, node):
    self.body.append(f'<div class="math">{_mathml(node.astext(), True)}</div>')
    raise nodes.SkipNode


def setup(app):
    # Math as MathML, which browsers draw natively: no MathJax from a CDN.
    app.add_html_math_renderer("mathml", (_visit_inline_math, None), (_visit_block_math, None))
    app.add_config_value("mg_executed_notebooks", str(ROOT / "build" / "notebooks"), "env")
    app.add_config_value("mg_render_notebooks", True, "env", bool)
    app.add_directive("public-api", PublicAPI)
    app.add_directive("pytest-plugin", PytestPlugin)
    app.connect("builder-inited", prepare_notebooks)
    app.connect("missing-reference", missing_reference)
    return {"parallel_read_safe": False, "version": "1"}
