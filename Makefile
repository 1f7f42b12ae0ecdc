.PHONY: setup demo test lint

VENV := .venv/bin

.venv/.installed: pyproject.toml constraints.txt scripts/setup.sh
	scripts/setup.sh

setup: .venv/.installed

## The worker against the embedded broker on the CPU engine, with sample events.
demo: .venv/.installed
	$(VENV)/moderation-worker demo

## Every test: unit, and integration on the real broker and the real CPU engine.
test: .venv/.installed
	$(VENV)/python -m pytest -q

lint: .venv/.installed
	$(VENV)/ruff check worker tests scripts
	$(VENV)/ruff format --check worker tests scripts
	$(VENV)/python -m worker.tools.chart_schema --check
