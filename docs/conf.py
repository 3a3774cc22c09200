"""Sphinx configuration of the musicgen-nb site: ``make docs`` builds it into build/docs/.

Sphinx with numpydoc and myst-nb: the docstrings are numpydoc already (ruff's D rules check
them), the guides are Markdown (MyST), and the notebooks render from their CI executions.
The build is offline (no intersphinx, no CDN) and strict: ``-W --keep-going -n``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The checkout: `make docs` builds a copy of docs/ in build/ (nothing is written into docs/).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from musicgen_nb import __version__  # noqa: E402

project = "musicgen-nb"
author = "the musicgen-nb authors"
copyright = "musicgen-nb authors, MIT license"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_nb",
    "sphinxarg.ext",
    "mgdocs",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# Every reference must resolve (-n); references into other libraries cannot be checked
# offline (no intersphinx inventories), so those are ignored by name.
nitpicky = True
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(torch|np|numpy|pd|pandas|go|plotly|ipywidgets|widgets|anywidget|traitlets"
        r"|transformers|peft|ray|pyarrow|IPython|nbformat|pytest|threading|os|pathlib"
        r"|collections|typing|t|concurrent|datetime|argparse|types|librosa|soundfile|soxr"
        r"|huggingface_hub|tqdm|safetensors|tokenizers|scipy|yaml)(\..+)?",
    ),
    (
        "py:.*",
        r"(Path|PathLike|ArrayLike|NDArray|Any|Callable|Iterator|Iterable|Sequence"
        r"|Mapping|Literal|Self|DataFrame|Figure|Tensor|Module|Event|Thread|Widget"
        r"|DOMWidget|AnyWidget|HTML|Audio|PreTrainedModel|PretrainedConfig"
        r"|MusicgenForConditionalGeneration|MusicgenMelodyForConditionalGeneration"
        r"|MusicgenProcessor|AutoProcessor|T5TokenizerFast|optional|default|array-like|callable"
        r"|array|ndarray|float32|int64|path-like|str or None)",
    ),
]

# autodoc / numpydoc
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# A documented public name without a docstring (GL08) fails the build.
numpydoc_validation_checks = {"GL08"}
# (__init__ is documented by its class; ``standin`` is an attribute with a ``#:`` comment,
# which numpydoc's validator does not read.)
numpydoc_validation_exclude = {r"\.__init__$", r"\.__call__$", r"\.__iter__$", r"\.standin$"}

# MyST and myst-nb: notebooks are rendered as CI executed them, never run here.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_render_markdown_format = "myst"
nb_output_stderr = "remove"
suppress_warnings = ["mystnb.unknown_mime_type"]

# HTML: pydata-sphinx-theme, offline (no CDN, no analytics, no external fonts).
html_theme = "pydata_sphinx_theme"
html_title = f"musicgen-nb {version}"
html_static_path = ["_static"]
html_css_files = ["mgdocs.css"]
html_js_files = ["plotly.min.js"]
html_theme_options = {
    "github_url": "https://github.com/musicgen-nb/musicgen-nb",
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"changelog": [], "architecture": []}
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
# Math is MathML (docs/_ext/mgdocs.py; the notebooks' through tools/handout.py): no MathJax.
html_math_renderer = "mathml"
