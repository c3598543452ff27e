# Two commands on a fresh machine: `make demo` (build-graph + train on the bundled sample) and `make test`.
# Both create and reuse .venv. torch is installed first and pinned to the CPU build (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean sample

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) cli.py build-graph
	$(PY) cli.py train

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check graphprof tests cli.py benchmarks

# Re-create the bundled sample (deterministic: same seed, same files).
sample: $(STAMP)
	$(PY) cli.py generate --out datasets/sample --bad-rows 8 --seed 0

clean:
	rm -rf work .pytest_cache
