# srs — the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SRS    := $(VENV)/bin/srs
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP  := $(VENV)/.installed
# Extra `srs serve` flags for `make run`, e.g. make run SRS_FLAGS="--sip 127.0.0.1:5062"
SRS_FLAGS ?=

.PHONY: install system-deps run test test-fast lint bench bench-quick soak overload fuzz fuzz-ci clean

install: $(STAMP)

# SIPp (Debian: sip-tester) drives the end-to-end and load tests; libbcg729 encodes the G.729
# test captures (the decoder srs uses comes with PyAV); chromium runs the web console's browser
# tests; the PostgreSQL server binaries run the throw-away server the index tests and the index
# bench start for themselves.
system-deps:
	@if ! command -v sipp >/dev/null 2>&1 || ! ldconfig -p | grep -q libbcg729 \
		|| ! command -v chromium >/dev/null 2>&1 || ! dpkg -s postgresql >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq sip-tester libbcg729-0 chromium postgresql; \
	fi

$(STAMP): pyproject.toml setup.py $(wildcard srs/*/_*.c) $(wildcard srs/*.h) codecs/pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e './codecs[full]' -e '.[dev]'
	touch $(STAMP)

run: install
	$(SRS) serve $(SRS_FLAGS)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not e2e"

lint: install
	$(VENV)/bin/ruff check srs codecs tests bench
	$(VENV)/bin/mypy

# One JSON document with the performance figures (long); bench-quick is the small variant CI runs.
bench: install
	$(PY) -m bench

bench-quick: install
	$(PY) -m bench --quick

# Half capacity for 30 minutes: RSS slope, descriptors and RTP sockets at every quiet point (JSON).
soak: install
	$(PY) -m bench.soak --minutes 30 --calls 500

# Calls offered beyond max_sessions and beyond what the SIP loop sustains: accepted vs 503 (JSON).
overload: install
	$(PY) -m bench.overload --compare

# >= 1M inputs per target (hours on 2 cores); fuzz-ci is the bounded pass CI runs.
fuzz: install
	$(PY) -m tests.fuzz.run --runs 1000000

fuzz-ci: install
	$(PY) -m tests.fuzz.run --seconds 20

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
