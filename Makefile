# fenced: the front door. `make up` brings the stack up; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: up down status test unit lint venv demo verify clean load chaos bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./sdk -e '.[dev]'
	touch $@

up: venv
	$(PY) -m devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; else echo "fenced: nothing was running"; fi

status: venv
	$(PY) -m devstack status

test: venv
	$(PY) -m devstack prepare
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit sdk/tests examples -m 'not packaging'

lint: venv
	$(VENV)/bin/ruff check service locks devstack chaos sdk tests examples bench loadtests conformance
	$(VENV)/bin/mypy

verify: venv
	$(PY) -m service.cli verify

clean: down
	rm -rf .run

# locust, headless, for a fixed time against the stack of `make up` (SCENARIO=uniform|hot|race|mixed|all)
SCENARIO ?= uniform
SECONDS_ ?= 30
load: venv
	$(PY) -m loadtests.run --scenario $(SCENARIO) --seconds $(SECONDS_) --users 32 --host http://127.0.0.1:8000

# a fault-injection run on a private stack (see docs/chaos.md); DURATION=120 SEED=1 MODE=verified
DURATION ?= 120
SEED ?= 1
MODE ?= verified
chaos: venv
	$(PY) -m service.cli chaos --duration $(DURATION) --seed $(SEED) --mode $(MODE) --report out/chaos

# issue 6's ratios on a private stack (see bench/README.md); QUICK=1: 2 rounds of 4 s, a few minutes
bench: venv
	$(PY) -m bench.run $(if $(QUICK),--quick,)
