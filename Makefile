# Teleconsult: `make run` starts the platform on the embedded default; `make test` runs every check.
# Needs only Python 3.11: the virtual environment, the database (embedded PostgreSQL under var/) and the
# development secrets are created on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint migrate messages seed bench clean-var

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Teleconsult needs Python 3.11 (set PYTHON=/path/to/python3.11).")'
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

install: $(STAMP)

# Compiles the translation catalogues, once there are any (compilemessages refuses to run without one).
messages: install
	@if find . -name '*.po' -not -path './$(VENV)/*' -not -path './var/*' | grep -q .; then \
		$(BIN)/python manage.py compilemessages --ignore=$(VENV) --ignore=var -v 0; fi

migrate: install
	$(BIN)/python manage.py migrate --no-input -v 0

seed: migrate
	$(BIN)/python manage.py seed_demo

run: messages migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve

# mypy's Django plugin imports the settings but never connects to the database. Without DATABASE_URL the
# settings would start the embedded PostgreSQL inside mypy, which exits without running exit handlers and
# so would leave that server running: a URL that is parsed and never used stands in for it.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	DATABASE_URL="$${DATABASE_URL:-postgres://typecheck.invalid/teleconsult}" $(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

# pytest exits with 5 when it collected no test at all: that is reported, never passed off as success.
test: lint messages
	@$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

bench: install
	$(BIN)/python -m bench

clean-var:
	rm -rf var
