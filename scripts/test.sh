#!/usr/bin/env bash
# Set up and run the whole test suite: ruff, mypy, import-linter, then pytest on Django 5.2 (Python 3.11)
# and Django 6.x (Python 3.12), against the PostgreSQL and Redis on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

ensure_browser
ensure_venv .venv 3.11 "Django>=5.2,<6.0" "test,demo"
ensure_venv .venv-django6 3.12 "Django>=6.0,<6.2"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== import layers (import-linter)"
.venv/bin/lint-imports --no-cache
echo "== pytest: $(.venv/bin/python -c 'import django, sys; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")')"
.venv/bin/coverage run -m pytest "$@"
.venv/bin/coverage report --fail-under=85 --skip-covered
echo "== pytest: $(.venv-django6/bin/python -c 'import django, sys; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")')"
.venv-django6/bin/python -m pytest "$@"
echo "== Django's own test suite with every model transparent (allowed differences: docs/limits.md)"
./scripts/django_suite.sh --check
