# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch for the CPU install path (CI, `make`). On PyPI, `torch==2.13.0` for Linux is the CUDA
# build (several GB); the CPU build (`2.13.0+cpu`) is on PyTorch's CPU index, added here as an
# extra index. pip takes a wheel it finds first on disk (PIP_FIND_LINKS), as on our CI machine,
# where that index is not reachable. Override for a GPU machine, e.g. `make TORCH_INDEX=` (PyPI's
# build) or TORCH_INDEX=https://download.pytorch.org/whl/cu126. Colab: keep the torch it has.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIP = $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
# The Colab-like leg: Colab's pins (IPython 7, ipywidgets 7) in a second venv.
COLAB_VENV ?= build/venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_PINS := .ci/colab-constraints.txt
export MUSICGEN_NB_CACHE ?= $(CURDIR)/build/cache

.PHONY: install demo test test-fast test-order test-colab lint notebooks docs sdist clean reference-run

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP)
	$(PY) -m pip install --quiet -e ".[dev,scale,train,docs,datasets]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musicgen-nb)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/musicgen-nb demo

# ruff on code and notebooks (lint and format), then the import contracts of docs/architecture.md.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check musicgen_nb tests tools benchmarks notebooks examples
	$(VENV)/bin/lint-imports --no-cache

test: install
	bash tests/e2e/install_browser.sh
	$(MAKE) lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15
	# nbval re-runs the executed copies that the papermill tests wrote: checked cells must agree.
	MUSICGEN_NB_QUICK=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadscope -p no:cacheprovider \
		--nbval-lax --musicgen-standin build/notebooks/
	# A tutorial author's notebook, unchanged, on stand-ins (README: Test your own tutorial).
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --musicgen-standin \
		examples/tutorial/ examples/audiocraft/
	# Plain transformers code (never imports musicgen_nb); its pytest.ini maps its hub dataset.
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --musicgen-standin examples/transformers/
	# The docs site, strict, from the notebooks executed above (about 2 minutes).
	$(MAKE) docs

test-fast: install
	$(PY) -m pytest -q -n 2 -m "not browser and not notebooks"

# The suite in one process, last test first (about 16 minutes): a test that passes only because
# another ran before it in the same worker fails here, instead of now and then under -n 2.
test-order: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:xdist -p no:cacheprovider --reverse --ignore=tests/e2e

# Colab's pins first (plus classic Notebook 6.5, the ipywidgets-7 front end of the browser
# check), then the package as `%pip install` does in Colab: no constraints, and pins_kept.py
# fails if pip's report of that install changed a pinned package. (So an install with the pins
# as constraints, `pip install --dry-run -c .ci/colab-constraints.txt -e .`, succeeds too.)
# --no-compile: no .pyc for all of torch up front; Python writes the few it imports.
COLAB_PIP := $(COLAB_PY) -m pip install --quiet --no-compile
$(COLAB_VENV)/.installed: pyproject.toml $(COLAB_PINS)
	$(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PIP) $(TORCH_PIP)
	$(COLAB_PIP) -c $(COLAB_PINS) -r $(COLAB_PINS) "notebook==6.5.7"
	$(COLAB_PIP) --report $(COLAB_VENV)/report.json -e . pytest pytest-timeout pytest-xdist nbformat playwright
	$(COLAB_PY) tools/pins_kept.py $(COLAB_PINS) $(COLAB_VENV)/report.json
	$(COLAB_PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (Colab pins)"
	touch $@

# The players, the studio and the synced player on Colab's stack, and the studio in classic
# Notebook 6 with ipywidgets 7 in a real browser.
test-colab: $(COLAB_VENV)/.installed
	bash tests/e2e/install_browser.sh
	$(COLAB_PY) -m pip list 2>/dev/null | grep -iE '^(ipython|ipykernel|ipywidgets|widgetsnbextension|pandas|notebook) '
	OMP_NUM_THREADS=1 $(COLAB_PY) -m pytest -q -n 2 -p no:cacheprovider --durations=5 \
		tests/players/test_static.py tests/audio/test_ogg.py tests/ui/ \
		tests/e2e/test_browser_studio.py

# The documentation site (Sphinx: docs/conf.py), offline, into build/docs/. Strict: any
# warning, unresolved cross-reference (-n) or public name without a docstring fails, and
# tools/check_site.py then checks every internal link and that nothing loads from the web.
# Sphinx builds a copy of docs/ in build/docs-src (the notebook pages and plotly.js are added
# there, never in docs/). The notebook pages render build/notebooks/*.ipynb (written by `make test`); the ones
# missing are executed first, on stand-ins in quick mode. Open build/docs/index.html.
DOCS_OUT ?= build/docs
docs: install
	MUSICGEN_NB_STANDIN=1 MUSICGEN_NB_QUICK=1 OMP_NUM_THREADS=1 $(PY) tools/docs_notebooks.py build/notebooks
	rm -rf $(DOCS_OUT) build/docs-doctrees build/docs-src
	mkdir -p build/docs-src && cp -r docs build/docs-src/docs && cp CHANGELOG.md build/docs-src/
	$(PY) -m sphinx -b html -W --keep-going -n -q -d build/docs-doctrees build/docs-src/docs $(DOCS_OUT)
	$(PY) tools/check_site.py $(DOCS_OUT)

# Every notebook on the real checkpoints, on a GPU (network for the hub): executed copies,
# handouts and every file they wrote kept in REFERENCE_OUT, for a release to ship. With a
# fresh venv, install a CUDA torch: `make reference-run TORCH_INDEX=` (see TORCH_INDEX above).
REFERENCE_OUT ?= build/reference
reference-run: install
	$(PY) tools/reference_run.py --out $(REFERENCE_OUT)

sdist:
	$(PY) -m build --sdist --outdir dist

clean:
	rm -rf build dist *.egg-info
