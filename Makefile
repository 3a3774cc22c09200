# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU install path: this exact torch is the CPU wheel (other specs pull a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
export MUSICGEN_NB_CACHE ?= $(CURDIR)/build/cache

.PHONY: install demo test test-fast lint notebooks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musicgen-nb)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/musicgen-nb demo

lint: install
	$(PY) -m ruff check .

test: install
	bash tests/browser/install.sh
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15
	# nbval re-runs the executed copies that the papermill tests wrote: checked cells must agree.
	MUSICGEN_NB_QUICK=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadscope -p no:cacheprovider \
		--nbval-lax --musicgen-standin build/notebooks/

test-fast: install
	$(PY) -m pytest -q -n 2 -m "not browser and not notebooks"

clean:
	rm -rf build dist *.egg-info
