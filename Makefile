# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: setup browser run demo dashboard lint test test-fast bench clean

# pip compiles every module of every package it installs, thousands in torch alone that
# nothing here imports (about 40 s of a CI run); with --no-compile Python writes the bytecode
# of what it imports, once. Unless PYTHONDONTWRITEBYTECODE is set, as on CI's machine: then
# every process would compile its imports again (a full import 5.7 -> 12.3 s), so it is
# not passed to the commands below.
unexport PYTHONDONTWRITEBYTECODE

# The pinned requirements, then the project itself in editable mode (pyproject.toml; --no-deps:
# requirements.txt already pinned them), so .venv imports curvewatch (curvewatch.tracking,
# .diagnosis, .trainer, .dashboard) from any folder and has the `curvewatch` command. The
# last step compiles what the trainer and the dashboard import (before the test workers
# would each compile it at once).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c "import curvewatch.trainer.runner, curvewatch.dashboard.figures, streamlit.web.bootstrap, pyarrow.json, sklearn.model_selection"
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
