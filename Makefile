# Teleconsult: `make run` starts the platform on the embedded default; `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint migrate messages seed bench clean-var

$(STAMP): pyproject.toml requirements.lock
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

install: $(STAMP)

messages: install
	$(BIN)/python manage.py compilemessages --ignore=.venv --ignore=var -v 0

migrate: install
	$(BIN)/python manage.py migrate --no-input -v 0

seed: migrate
	$(BIN)/python manage.py seed_demo

run: messages migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python manage.py makemigrations --check --dry-run

test: lint messages
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

clean-var:
	rm -rf var
