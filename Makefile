# The two commands of the README. Each sets itself up on a fresh machine (Python >= 3.11 needed).
#   make run   - start the service on http://127.0.0.1:8080 with the embedded defaults
#   make test  - lint, type-check, validate the content and run every test (integration included)
# CI (.ci/run) also runs `make bench-smoke` after `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench bench-smoke install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Development profile on loopback: authentication off (it says so at startup and in discovery).
run: install
	EPIDURAL_CDS_PROFILE=development EPIDURAL_CDS_AUTH_DISABLED=true \
	  $(BIN)/epidural-cds serve --host 127.0.0.1 --port 8080

test: install
	scripts/ensure-test-deps
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy
	$(BIN)/epidural-cds check-content
	$(BIN)/pytest

# Benchmarks (docs/performance.md); needs wrk (apt-get install wrk) for the HTTP part.
bench: install
	$(BIN)/python -m bench

# The benchmark's smoke run (~30 s, bench/README.md): every phase once, no thresholds; fails if a
# phase crashes, a response is not 200 or the chart gets no card. Results go to a temp directory.
# Run it after `make test`, which installs wrk (as root) and the sekmet FHIR server's venv.
bench-smoke: install
	$(BIN)/mypy bench
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache *.egg-info
