# gsexplore: `make lab` to explore, `make test` to check everything.
# Both set up .venv first (once; again when pyproject.toml changes).
# `make lab PORT=8890` picks the port; as root and on a headless machine too (gsexplore/lab.py):
# without a display it prints the URL with its token and the `ssh -L` line to reach it.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# JupyterLab's news and update checks off for everyone using .venv (no toast, no request out)
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NOTEBOOK ?= notebooks/00_inicio_rapido.ipynb
PORT     ?= 8888
LAB_ARGS ?=

.PHONY: setup doctor lab test test-py test-notebooks bench llama-server gpu system-deps clean

setup: $(STAMP) $(LAB_SETTINGS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "gsexplore needs Python 3.10+"'
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { $(MAKE) system-deps && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --upgrade pip
	# llama-cpp-python compiles llama.cpp once (~4 min); pip's cache keeps the wheel for next time.
	$(PY) -m pip install -e '.[test]'
	$(PY) -m gsexplore.cli models fetch
	@touch $(STAMP)

# its own target, so a .venv set up before it existed gets it too
$(LAB_SETTINGS): $(STAMP) gsexplore/lab.py
	$(PY) -m gsexplore.cli lab --write-settings

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

# the command tests/test_lab.py runs (it reads it with `make -n`)
lab: system-deps setup doctor
	$(PY) -m gsexplore.cli lab --port $(PORT) $(LAB_ARGS) $(NOTEBOOK)

test: system-deps setup doctor
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax notebooks/

test-py: setup
	$(PY) -m pytest -q tests

test-notebooks: setup
	$(PY) -m pytest -q --nbval-lax notebooks/

# every bench on the demo, then the engine benches at Qwen3-1.7B's shape when it is built
# (gsexplore models build qwen3-1.7b-shape); bench/run_all.py says what it skips
bench: setup
	$(PY) bench/run_all.py

# llama.cpp's llama-server and llama-batched-bench for the benches' reference columns, from the
# llama.cpp that llama-cpp-python vendors (~20 min on 2 cores; once, never beside a measurement)
llama-server: setup
	PY=$(PY) bench/build_llama_server.sh

# GPU users: rebuild llama-cpp-python with CUDA (needs the CUDA toolkit).
gpu: setup
	CMAKE_ARGS="-DGGML_CUDA=on" $(PY) -m pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python

clean:
	rm -rf $(VENV) .pytest_cache
