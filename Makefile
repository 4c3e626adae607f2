# The two commands: `make run` regenerates the walkthrough, `make test` checks everything.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
BENCHMARKS := $(filter-out benchmarks/common.py,$(sort $(wildcard benchmarks/*.py)))

.PHONY: setup run test lint lab bench clean

setup: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(INSTALLED)
	$(PY) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 $(NOTEBOOKS)

lint: $(INSTALLED)
	$(PY) -m ruff check helpers tests benchmarks notebooks

test: lint
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks/

lab: $(INSTALLED)
	$(PY) -m jupyter lab notebooks/

bench: $(INSTALLED)
	for script in $(BENCHMARKS); do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) artifacts
