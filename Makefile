# The two commands of the README: `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
MEDIAPIPE := mediapipe==1.2.2
SOURCE  ?= demo

.PHONY: run test lint clean arm64-check

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.edge: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[edge]'
	$(BIN)/pip install -q --no-deps $(MEDIAPIPE)
	touch $@

$(VENV)/.dev: $(VENV)/.edge
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

/usr/sbin/mosquitto:
	command -v mosquitto >/dev/null || (apt-get update -q && apt-get install -y -q mosquitto)

run: $(VENV)/.edge
	$(BIN)/fer-edge run --source $(SOURCE)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: $(VENV)/.dev /usr/sbin/mosquitto lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV)

# The edge install and tests on arm64 Raspberry Pi OS Bookworm, emulated (20-40 min; not part of `make test`).
arm64-check:
	MEDIAPIPE=$(MEDIAPIPE) scripts/arm64_check.sh
