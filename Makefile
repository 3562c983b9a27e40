# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: setup browser run demo dashboard lint test test-fast bench clean

# The pinned requirements, then the project itself in editable mode (pyproject.toml; --no-deps:
# requirements.txt already pinned them), so .venv imports curvewatch (curvewatch.tracking,
# .diagnosis, .trainer, .dashboard) from any folder and has the `curvewatch` command.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# System tools the tests use: Debian's Chromium (driven by Playwright, no browser download)
# and strace (kills the trainer at exact system calls in the crash tests).
SYSTEM_TOOLS := chromium strace
browser:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing; fi

run: setup
	$(PY) -m trainer demo --if-empty
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

dashboard: setup
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

# Lint (ruff) and types (mypy over tracking/ and diagnosis/); settings in pyproject.toml.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

# The suite, and beside its start the type check (cold in a fresh clone, about 15 s of one
# core: run first, it lengthened CI by as much); either failing fails `make test`.
test: setup browser
	$(PY) -m ruff check .
	@log=$$(mktemp); $(PY) -m mypy > $$log 2>&1 & types=$$!; \
	$(PY) -m pytest; tests=$$?; \
	wait $$types; typed=$$?; echo "mypy:"; cat $$log; rm -f $$log; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

test-fast: setup
	$(PY) -m pytest -m "not slow and not browser"

bench: setup browser
	$(PY) bench/trainer_overhead.py --case mlp-digits --interleaved 400
	$(PY) bench/trainer_overhead.py --case cnn-digits-images --interleaved 80
	$(PY) bench/log_epoch.py
	$(PY) bench/diagnose_speed.py
	$(PY) bench/history_load.py
	$(PY) bench/dashboard_load.py --only runs,live,chart
	$(PY) bench/dashboard_load.py --only million,compare  # writes a 266 MB run; minutes
	$(PY) bench/run_page_memory.py  # each step of that Run page's memory; writes the run again
	$(PY) bench/dashboard_browser.py  # the million-epoch Run page in Chromium; minutes
	$(PY) bench/wandb_log.py
	$(PY) bench/remote_reader_requests.py
	$(PY) bench/sweep_parallel.py
	$(PY) bench/tensorboard_import.py
	$(PY) bench/demo_margins.py
	$(PY) bench/test_margins.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
