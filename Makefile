# The two commands: `make run` regenerates the walkthrough, `make test` checks everything.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
STUDIES := recipes sharing design batching backbones
BENCHMARKS := $(filter-out benchmarks/common.py benchmarks/new_data.py benchmarks/notebook_memory.py \
	$(STUDIES:%=benchmarks/%.py),$(sort $(wildcard benchmarks/*.py)))

.PHONY: setup run test lint lab bench studies clean mutants constraints memory binder-check

# The developer's set: requirements-dev.txt is requirements.txt (the reader's set) plus the development tools.
setup: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Every notebook executed in place; then the outputs of the cells tagged `answer` (an exercise's answer: hidden
# until a reader runs it, also on GitHub and nbviewer) and `widget` (a text box, which a saved page can only show
# as its repr) are cleared, their execution counts kept (scripts/clear_tagged_outputs.py).
run: $(INSTALLED)
	$(PY) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 --Exporter.preprocessors=nbconvert.preprocessors.CoalesceStreamsPreprocessor $(NOTEBOOKS)
	$(PY) scripts/clear_tagged_outputs.py $(NOTEBOOKS)

lint: $(INSTALLED)
	$(PY) -m ruff check helpers tests benchmarks notebooks scripts

# The notebooks run in float32 on any CPU, as they were executed for the commit: their numbers and the memory
# limit are float32's (see "Memory, and Binder" in the README).
test: lint
	$(PY) -m pytest tests
	HELPERS_PRECISION=fp32 $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks/

# Each notebook's peak memory and time, with the cells that raise the peak most, in float32 (about 10 minutes on
# two cores). `make test` fails a notebook above the limit (notebooks/conftest.py); this finds the cells to fix.
# MEMORY_OPTIONS='--one-core' runs each kernel on one CPU, as on Binder; '--csv FILE' keeps every cell's figures.
MEMORY_OPTIONS ?=
memory: $(INSTALLED)
	HELPERS_PRECISION=fp32 $(PY) benchmarks/notebook_memory.py $(MEMORY_OPTIONS)

# Binder's install, as far as a machine without Docker can follow it: a fresh Python 3.11 venv (.binder/runtime.txt)
# and the one pip command of the Dockerfile repo2docker renders (tests/test_binder.py checks that command), then
# nbval of every notebook in float32, with the memory check. Binder's image also holds repo2docker's own Jupyter
# server stack, which the kernel does not load. Where the PyTorch index cannot be reached (pip then finds the CPU
# torch in a local wheel folder of its configuration, or fails), PIP_RETRIES=0 saves pip half a minute of retries
# per package.
BINDER_VENV := build/binder-venv
binder-check:
	rm -rf $(BINDER_VENV)
	python3.11 -m venv $(BINDER_VENV)
	$(BINDER_VENV)/bin/python -m pip install --no-cache-dir -r .binder/requirements.txt
	HELPERS_PRECISION=fp32 $(BINDER_VENV)/bin/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg notebooks/

# The studies the notebooks, the README and the data card quote, each writing benchmarks/results/<study>.csv:
# which layers to train (recipes), what sharing the encoder costs sentiment (sharing), the exercise's Task 2 design
# (design: CLS or mean pooling, dropout), how batches are cut (batching), bert-base's cost (backbones); then what
# the third batch of reviews buys (new_data, printed). Float32; about 30 minutes on a 2-core CPU.
studies: $(INSTALLED)
	for study in $(STUDIES); do HELPERS_PRECISION=fp32 $(PY) benchmarks/$$study.py --csv benchmarks/results/$$study.csv \
		|| exit 1; done
	HELPERS_PRECISION=fp32 $(PY) benchmarks/new_data.py

lab: $(INSTALLED)
	$(PY) -m jupyter lab notebooks/

bench: $(INSTALLED)
	for script in $(BENCHMARKS); do $(PY) $$script || exit 1; done

# Mutation testing (not part of `make test`): plant small bugs in the core modules and list those the fast
# tests miss. Settings in pyproject.toml [tool.mutmut]; `make mutants MUTANTS='helpers.training*'` runs a subset.
# One torch thread per worker: mutmut forks a process per mutant, and a forked thread pool can hang.
MUTANT_JOBS ?= 2
MUTANTS ?=
mutants: $(INSTALLED)
	rm -rf mutants
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
		$(VENV)/bin/mutmut run --max-children $(MUTANT_JOBS) $(MUTANTS)
	$(VENV)/bin/mutmut results | grep -v ': not checked$$' || true
	$(PY) -c "import glob, json; \
		codes = {p[8:-8]: json.load(open(p))['exit_code_by_key'].values() for p in sorted(glob.glob('mutants/helpers/*.meta'))}; \
		[print(f'{m:18} {sum(c in (1, 3, -24, 24, 36, 152, 255, -11, -9) for c in v)}/{sum(c is not None for c in v)} killed') \
		 for m, v in codes.items()]"

# Binder's pins: .binder/constraints.txt holds the versions of this venv (the ones the tests passed with), limited
# to the reader's set. A freeze of this venv would also pin the development tools and their dependencies, and
# sorting out which dependencies only they need means walking the dependency graph by hand. So a throwaway venv
# (same Python) gets Binder's CPU torch and requirements.txt, held to this venv's versions by `-c`, and its freeze
# is the file. pip stops if this venv's torch is not .binder/requirements.txt's: align the two first. Run it on
# Linux, as Binder is (a freeze follows the platform), after a passing `make test`, and commit the file.
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
constraints: $(INSTALLED)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pip freeze --exclude-editable > "$$tmp/tested.txt" && \
	$(PY) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet --extra-index-url $(CPU_TORCH_INDEX) -c "$$tmp/tested.txt" \
		"$$(grep -x 'torch==.*' .binder/requirements.txt)" -r requirements.txt && \
	{ echo "# Written by \`make constraints\`: the reader's set (requirements.txt) at the versions the tests passed with."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable; } > "$$tmp/constraints.txt" && \
	mv "$$tmp/constraints.txt" .binder/constraints.txt

clean:
	rm -rf $(VENV) artifacts
