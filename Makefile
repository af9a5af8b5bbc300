# ra3lab: `make demo` runs the main study on CPU at quick scale, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lock demo paper test test-slow test-all lint bench clean slurm-up slurm-down

setup: $(STAMP)

# torch is installed first and pinned: the CPU wheel, not a multi-GB CUDA build. Every other version comes from
# constraints.txt, so a fresh clone gets the versions the pinned numbers were measured with.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,tracking]'
	touch $(STAMP)

# After changing pyproject.toml's dependencies: upgrade within its bounds and write the versions to constraints.txt.
lock:
	$(BIN)/pip install --quiet --upgrade -e '.[dev,tracking]'
	{ sed -n 1,2p constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new
	mv constraints.new constraints.txt

# The whole chain at quick scale (theory check, CodeWorld mid-training, RLVR, figures); rerun to resume.
demo: setup
	$(BIN)/ra3lab demo

# The appendix, paper/build/appendix.pdf, from the runs pinned in paper/runs.yaml (`make demo` makes them); installs
# Debian's LaTeX once (as root, like slurm-up). Nothing is rebuilt while the pins, the runs and the code are unchanged.
paper: setup
	bash paper/install.sh
	$(BIN)/ra3lab paper build

# Two workers; the SLURM tests (xdist_group "slurm", and a lock in tests/conftest.py) run one after another.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m slow

# ruff (line length enforced) and a type check of the package with mypy (settings in pyproject.toml).
lint: setup
	$(BIN)/ruff check ra3lab tests
	$(BIN)/mypy

test-all: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(BIN)/ra3lab bench mdp

clean:
	rm -rf runs .pytest_cache

# A real single-node SLURM cluster on localhost (root; Debian packages); state in .slurm/.
slurm-up:
	bash slurm/install.sh
	bash slurm/cluster-up.sh

slurm-down:
	bash slurm/cluster-down.sh
