# gsexplore: `make lab` to explore, `make test` to check everything.
# Both set up .venv first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NOTEBOOK ?= notebooks/00_inicio_rapido.ipynb

.PHONY: setup doctor lab test test-py test-notebooks bench gpu system-deps clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "gsexplore needs Python 3.10+"'
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { $(MAKE) system-deps && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --upgrade pip
	# llama-cpp-python compiles llama.cpp once (~4 min); pip's cache keeps the wheel for next time.
	$(PY) -m pip install -e '.[test]'
	$(PY) -m gsexplore.cli models fetch
	@touch $(STAMP)

# Debian packages: a C/C++ toolchain for llama.cpp, venv, Chromium for the browser test and
# Node.js to run the playground's JavaScript snippets in a test.
system-deps:
	@need=""; \
	command -v cc >/dev/null || need="$$need build-essential"; \
	command -v cmake >/dev/null || need="$$need cmake"; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || need="$$need python3-venv"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	command -v node >/dev/null || need="$$need nodejs"; \
	if [ -n "$$need" ]; then echo "installing:$$need"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; fi

# What the machine gives gsexplore (llama.cpp build, threads, buffer types, models) and a short
# generation in a subprocess: a broken build stops here with what to do, not mid-way through.
doctor: setup
	$(PY) -m gsexplore.cli doctor

lab: system-deps setup doctor
	$(VENV)/bin/jupyter lab $(NOTEBOOK)

test: system-deps setup doctor
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax notebooks/

test-py: setup
	$(PY) -m pytest -q tests

test-notebooks: setup
	$(PY) -m pytest -q --nbval-lax notebooks/

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# GPU users: rebuild llama-cpp-python with CUDA (needs the CUDA toolkit).
gpu: setup
	CMAKE_ARGS="-DGGML_CUDA=on" $(PY) -m pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python

clean:
	rm -rf $(VENV) .pytest_cache
