# shipshape: Ansible that takes a bare Debian server to a hardened, HTTPS-served,
# backed-up Docker Compose deployment. `make demo` and `make test` are the two commands.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
BIN        := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0
export NO_COLOR := 1

# Every directory under molecule/ with a molecule.yml is a scenario; SCENARIOS="a b" picks some.
SCENARIOS  ?=

.PHONY: help venv engine images lint pytest molecule test demo demo-down clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed ## Create the virtualenv with the pinned toolchain (once)

engine: ## Make sure a Docker engine answers (installs Debian's docker.io when root on Debian)
	$(PYTHON) scripts/ensure_docker.py

images: engine ## Build the test-bed host images (cached by recipe hash)
	$(PYTHON) scripts/build_images.py

lint: venv ## yamllint and ansible-lint (production profile)
	yamllint --strict .
	ansible-lint --profile production

pytest: venv images ## Tests of the scripts, the example app, the role conventions and the whole site on the demo server
	pytest tests

# Scenarios run one job more than the machine has cores at a time, or MOLECULE_JOBS=N; each
# one's output is kept in .cache/molecule/NAME.log, every log is searched for every secret of
# the run, and a job passes only with its tests run and passed (scripts/run_scenarios.py).
MOLECULE_JOBS ?=
JOBS_FLAG  := $(if $(MOLECULE_JOBS),--jobs $(MOLECULE_JOBS))
molecule: venv images ## Every Molecule scenario (or SCENARIOS="a b")
	python scripts/run_scenarios.py $(JOBS_FLAG) $(SCENARIOS)

# `make test` runs lint and pytest as two more jobs beside the scenarios (same logs, same report).
test: venv images ## Everything CI runs: lint, pytest and every scenario, one job more than the cores at a time
	python scripts/run_scenarios.py $(JOBS_FLAG) --lint --pytest $(SCENARIOS)

demo: venv images ## Deploy the example app onto a local server container
	$(BIN)/python scripts/demo.py up

demo-down: ## Remove everything the demo made
	$(PYTHON) scripts/demo.py down

clean: demo-down ## Remove the demo and the virtualenv (images stay cached)
	rm -rf $(VENV)
