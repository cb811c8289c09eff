# pageowner developer entry points. `make test` and `make demo` work on a fresh machine:
# they create .venv from PyPI on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit demo demo-fleet bench fuzz clean browser-deps golden

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,fleet]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pageowner tests bench tools fuzz

typecheck: $(STAMP)
	$(BIN)/mypy --strict pageowner

unit: $(STAMP) browser-deps
	$(BIN)/pytest -q

# The HTML flame graph test drives headless Chromium. Install Debian's package when it is
# missing and we can (root, apt); otherwise that test skips and says why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null 2>&1; \
	      DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends \
	        chromium >/dev/null 2>&1; } ; } || true

# Rewrite the analysis commands' golden outputs; review the diff before committing.
golden: $(STAMP)
	PAGEOWNER_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_analyze_golden.py

# Fuzz the dump readers and the sort engine (fuzz/run.py): a quick pass inside `make test`
# (before the unit tests, so that pytest's summary stays the last line),
# longer on demand: `make fuzz FUZZ_SECONDS=600` (FUZZ_ENGINE=own without atheris).
FUZZ_SECONDS ?= 10
FUZZ_ENGINE ?= auto
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS) --engine $(FUZZ_ENGINE)

test: lint typecheck fuzz unit

demo: $(STAMP)
	$(BIN)/python -m pageowner demo

# The fleet flow on a simulated fleet of FLEET_HOSTS hosts, captured twice, on a local Dask
# cluster: simulate, top by release, diff, export to Parquet (in a temporary folder).
FLEET_HOSTS ?= 20
demo-fleet: $(STAMP)
	@dir=$$(mktemp -d); set -x; \
	$(BIN)/pageowner fleet simulate --hosts $(FLEET_HOSTS) --rounds 2 -o $$dir/fleet >/dev/null && \
	$(BIN)/pageowner fleet top $$dir/fleet/round-2 --top 5 --group-by release --depth 2 && \
	$(BIN)/pageowner fleet diff --before $$dir/fleet/round-1 --after $$dir/fleet/round-2 --top 5 --depth 2 && \
	$(BIN)/pageowner fleet export $$dir/fleet/round-2 -o $$dir/parquet; \
	status=$$?; rm -rf $$dir; exit $$status

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz-artifacts
