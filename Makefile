# One entry point for people and CI. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench reliability-long fmt clean lock image

$(STAMP): pyproject.toml requirements.lock requirements-build.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock -r requirements-build.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/listingbot demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check listingbot tests benchmarks
	$(BIN)/ruff format --check listingbot tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

reliability-long: $(STAMP)
	LISTINGBOT_LONG=1 $(BIN)/pytest -q -m slow -s tests/test_reliability.py

fmt: $(STAMP)
	$(BIN)/ruff format listingbot tests benchmarks
	$(BIN)/ruff check --fix listingbot tests benchmarks

# The container image: docker when its daemon answers, else podman. podman (also behind a
# `docker` wrapper) and buildah default to the OCI format, which silently drops
# HEALTHCHECK: --format docker keeps it. Override with ENGINE=podman, IMAGE=name:tag, and
# pass extra build options in BUILD_FLAGS (e.g. BUILD_FLAGS=--pull).
IMAGE  ?= listingbot:latest
ENGINE ?=

image:
	@engine="$(ENGINE)"; \
	if [ -z "$$engine" ]; then \
	  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker; \
	  elif command -v podman >/dev/null 2>&1; then engine=podman; \
	  elif command -v docker >/dev/null 2>&1; then engine=docker; \
	  else echo "make image: neither docker nor podman is installed" >&2; exit 1; fi; \
	fi; \
	format=; if $$engine --version 2>/dev/null | grep -qi podman; then format="--format docker"; fi; \
	set -ex; $$engine build $$format $(BUILD_FLAGS) -t $(IMAGE) .; \
	$$engine image inspect $(IMAGE) --format '$(IMAGE): {{.Size}} bytes'

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Re-pin the runtime dependencies from a clean runtime-only environment.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	{ echo "# Exact runtime dependencies of listingbot, installed by both the Dockerfile and \`make\`"; \
	  echo "# (so the image runs what the tests ran). Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze --exclude listingbot; } > requirements.lock
	rm -rf .lock-venv
