# openfl_like: `make demo` runs a real federation on this machine, `make test` runs the tests.
# Both install what they need into .venv first when it is missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Test files run on this many pytest-xdist workers (0: in this process, one after another). Two
# fit a 2-core machine: the end-to-end tests spend much of their time waiting on subprocesses.
TEST_WORKERS ?= 2

.PHONY: install ops-tools test test-fast demo demo-director demo-vertical demo-pki examples-data lint bench proto docs clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[ml,dev]'
	@touch $(STAMP)

install: $(STAMP) ops-tools  ## make .venv and install the project with everything it needs

# Prometheus and promtool for the operations tests (docs/operations.md). Best effort and quiet:
# only when missing, only as root with apt-get; without them those tests are skipped.
ops-tools:  ## Debian's prometheus (server + promtool) when missing and apt-get can install it
	-@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prometheus (apt-get) for the operations tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus >/dev/null 2>&1 || echo "prometheus not installed: its tests are skipped"; \
	  else echo "prometheus missing (apt-get install prometheus): its tests are skipped"; fi; }

test: $(STAMP) ops-tools  ## the whole suite: unit, integration (real servers) and end-to-end (fx CLI)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)  ## everything but the end-to-end tests
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not e2e" $(PYTEST_ARGS)

demo: $(STAMP)  ## the main job: Keras CNN on digits, 3 collaborators, mutual TLS, 10 rounds
	$(BIN)/fx plan run plans/keras_digits

demo-director: $(STAMP)  ## a director, 3 envoys on digits shards, an experiment from the CLI (metrics stream)
	$(BIN)/python plans/director_digits/demo.py

demo-vertical: $(STAMP)  ## two-party vertical learning on digits: leader + follower, split model, mutual TLS
	$(BIN)/fx vertical run --plan plans/vertical_digits

demo-pki: $(STAMP)  ## only the PKI part: issue and verify a workspace's certificates
	bash bench/demo_pki.sh

examples-data: $(STAMP)  ## data and model.keras of plans/keras_tabular and plans/keras_images (git-ignored)
	$(BIN)/python plans/keras_tabular/make_data.py
	$(BIN)/python plans/keras_images/make_data.py

lint: $(STAMP)  ## ruff, and the layer rules of ARCHITECTURE.md (import-linter)
	$(BIN)/ruff check openfl_like tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q tests/unit/protocol/test_generated_in_sync.py

bench: $(STAMP)  ## benchmarks: print figures and ratios against this machine's own limits
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

proto: $(STAMP)  ## regenerate the committed *_pb2 modules from openfl_like/protocol/proto
	$(BIN)/python -m openfl_like.protocol.generate

docs: $(STAMP)  ## regenerate docs/plan_reference.md from the plan schema (a test compares them)
	$(BIN)/python -m openfl_like.plan.reference > docs/plan_reference.md

clean:  ## remove the virtualenv, caches and generated workspace files (keeps pki/README.md)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info workspace
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find pki -mindepth 1 ! -name README.md -exec rm -rf {} +
