# Set-up and everyday commands. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: a bare `torch` requirement pulls a multi-GB CUDA build.
# Elsewhere than our machines, add: TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=

.PHONY: demo run test lint snapshots install-service bench bench-events install install-dev system-test-deps clean

$(VENV)/.base: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "crywatch needs Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e ".[dev,hear]"
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

# The monitor end to end on the built-in synthetic scenario: dashboard in a terminal,
# printed events and a summary otherwise. No microphone or data needed. Ends with the shift
# report of this run (demo-report.html, one self-contained page) and prints its path.
demo: install
	@since=$$(date -u +%Y-%m-%dT%H:%M:%SZ) && \
	  $(VENV)/bin/crywatch run --input scenario:nicu --db sqlite:///demo.db --bus 'tcp://127.0.0.1:*' $(ARGS) && \
	  $(VENV)/bin/crywatch report --db sqlite:///demo.db --since "$$since" --out demo-report.html

# The default microphone; fails with a clear message naming `crywatch devices` when there is none.
run: install
	$(VENV)/bin/crywatch run --input mic $(ARGS)

# Packages the tests need from the system: PortAudio and PulseAudio for the virtual microphone, tmux,
# Chromium for the report's browser test.
system-test-deps:
	@if ! command -v pulseaudio >/dev/null || ! command -v tmux >/dev/null || ! command -v paplay >/dev/null \
	    || ! command -v systemd-analyze >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null || ! ldconfig -p | grep -q libportaudio.so.2; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      libportaudio2 libsndfile1 pulseaudio pulseaudio-utils alsa-utils libasound2-plugins tmux systemd postgresql \
	      chromium >/dev/null; \
	  else \
	    echo "tests that need them will skip; to run them: sudo apt-get install libportaudio2 pulseaudio pulseaudio-utils alsa-utils libasound2-plugins tmux systemd postgresql chromium"; \
	  fi; \
	fi

lint: install-dev
	$(VENV)/bin/ruff check monitor train tests bench
	$(VENV)/bin/mypy

# Two pytest-xdist workers: the tests that wait on real time (microphone, real-time services, servers)
# overlap with the ones that compute. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: install-dev system-test-deps lint
	$(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

# As root, with the project checked out in /opt/crywatch: a system user in the audio group, its
# state directory (0750) and log (0600), the unit installed, enabled and started.
install-service: install
	id -u crywatch >/dev/null 2>&1 || useradd --system --groups audio --home-dir /var/lib/crywatch --shell /usr/sbin/nologin crywatch
	install -d -m 0750 -o crywatch -g crywatch /var/lib/crywatch
	test -e /var/lib/crywatch/crywatch.db || install -m 0600 -o crywatch -g crywatch /dev/null /var/lib/crywatch/crywatch.db
	install -m 0644 systemd/crywatch.service /etc/systemd/system/crywatch.service
	systemctl daemon-reload
	systemctl enable --now crywatch

# After an intended change of the dashboard or review screens: redraw their snapshots, then look at them.
snapshots: install-dev
	$(PY) -m pytest tests/test_tui_snapshots.py --snapshot-update

bench: install-dev
	$(PY) bench/bench_pipeline.py

# The cry detector's development benchmarks (need ../shared): 240 DCASE-style mixtures of the detector's
# test groups, plain and --hard, run through `crywatch analyze`'s pipeline and scored with sed_eval; the
# plain run also plays each test-group cry alone (clean-cry recall, pain alerts). ARGS="--model DIR".
DATA ?= ../shared/data/cries/index.csv
bench-events: install-dev
	$(PY) -m train mixtures --data $(DATA) --out runs/dev-mixtures --count 240 --split test
	$(PY) -m train evaluate-events --mixtures runs/dev-mixtures --data $(DATA) $(ARGS)
	$(PY) -m train mixtures --data $(DATA) --hard --out runs/dev-mixtures-hard --count 240 --split test
	$(PY) -m train evaluate-events --mixtures runs/dev-mixtures-hard $(ARGS)

clean:
	rm -rf $(VENV) demo.db demo.db-wal demo.db-shm demo-report.html
