# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself (tools/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test demo lint format setup-dev setup-demo bench clean

setup-dev:
	@bash tools/bootstrap.sh dev

setup-demo:
	@bash tools/bootstrap.sh demo,train

lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup-dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

demo: setup-demo
	$(PY) tools/demo.py

bench: setup-dev
	$(PY) -m bench.speed

clean:
	rm -rf out .pytest_cache .ruff_cache
