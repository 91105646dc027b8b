# The README's commands. Each bootstraps uv when it is missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
CONFIG ?= config.yml

.PHONY: uv install run dev test lint typecheck openapi bench

uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/uv" ] || \
		python3 -m pip install --user --quiet uv || \
		(python3 -m venv .uv-bootstrap && .uv-bootstrap/bin/pip install --quiet uv && \
		 mkdir -p $(HOME)/.local/bin && ln -sf $(CURDIR)/.uv-bootstrap/bin/uv $(HOME)/.local/bin/uv)

install: uv
	$(UV) sync --frozen --compile-bytecode

$(CONFIG):
	cp config.example.yml $(CONFIG)

run: install $(CONFIG)
	$(UV) run otari serve --config $(CONFIG)

dev: install $(CONFIG)
	$(UV) run $(if $(wildcard .env),--env-file .env,) otari serve --config $(CONFIG) --reload --log-level debug

test: install
	$(UV) run pytest

lint: install
	$(UV) run ruff check src tests scripts bench
	$(UV) run ruff format --check src tests scripts bench

typecheck: install
	$(UV) run mypy src

openapi: install
	$(UV) run python scripts/generate_openapi.py

bench: install
	bash bench/run.sh
