# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint check-services clean bench bench-quick

# requirements.txt is what the image runs; requirements-dev.txt adds the test tools.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install --quiet -r requirements-dev.txt
	deploy/ensure-chromium.sh
	deploy/ensure-gettext.sh
	touch $(STAMP)

# Flower's login for the demo: a new password on each run unless FLOWER_BASIC_AUTH is set.
ifeq ($(strip $(FLOWER_BASIC_AUTH)),)
FLOWER_BASIC_AUTH := demo:$(shell $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(12))")
endif

# The whole stack with demo data: web + admin on :8000, worker, beat, Flower on :5555.
run: export DJANGO_DEBUG ?= true
run: export FLOWER_BASIC_AUTH := $(FLOWER_BASIC_AUTH)
run: export PATH := $(abspath $(BIN)):$(PATH)
run: $(STAMP)
	$(BIN)/python manage.py check_services --create-database
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_periodic_tasks
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Admin:          http://127.0.0.1:8000/admin/   (login demo / demo)"
	@echo "  Web UI:         http://127.0.0.1:8000/scheduled-messages/"
	@echo "  API docs:       http://127.0.0.1:8000/api/scheduler/docs/"
	@echo "  Sandbox outbox: http://127.0.0.1:8000/sandbox/ (what would have gone to Telegram)"
	@echo "  Flower:         http://127.0.0.1:5555/   (login $(subst :, / ,$(FLOWER_BASIC_AUTH)))"
	@echo "  The first demo messages are due 10-40 seconds from now. Ctrl-C stops everything."
	@echo ""
	$(BIN)/honcho start -f Procfile

# makemigrations runs with development settings: it needs no key (make test checks
# production's settings).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DJANGO_DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

# The chaos tests (tests/chaos: kill -9, Redis and PostgreSQL faults) are part of it.
test: lint
	CHAOS_TESTS=1 $(BIN)/python -m pytest

# Measurements, not tests: docs/benchmarks.md and docs/benchmarks.json.
bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m tests.bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
