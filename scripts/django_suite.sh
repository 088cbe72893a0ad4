#!/usr/bin/env bash
# Run Django's own test suite with django_cachestrat installed and every model in
# transparent mode (CACHESTRAT = {"MODELS": {"*": {"transparent": True}}}), against the
# PostgreSQL and Redis on this machine. docs/limits.md lists the expected differences.
#
#   ./scripts/django_suite.sh [--baseline] [--all] [--check] [runtests.py options] [modules]
#
# --check passes when the only failures are the allowed differences listed, one test id a
# line, in tests/django_suite_allowed.txt (each explained in docs/limits.md); the test
# command runs the default modules this way.
#
# Test modules default to a broad list of ORM modules. --all runs every module of Django's
# suite, 25 modules per runtests.py process (one process for all of them needs more
# PostgreSQL locks than a default server has); modules whose requirements are not installed
# skip their tests. --baseline runs the same modules with the same settings but without
# django_cachestrat, for comparison. Other options go to runtests.py as they are; give their
# values with "=" or attached (--parallel=2, -k=name, -v2). Default: --parallel=1, one
# process on these shared machines; parallel workers get clones of the databases under the
# same aliases, so tests/django_suite_settings.py gives each its own KEY_PREFIX.
#
# The Django version is the one installed in $PYTHON (default .venv/bin/python); its source
# distribution, which holds tests/, is downloaded once into .django-suite/ (git-ignored).
#
# The cached run counts the cache's reads (rows served from Redis or read and filled, from
# the app's own statistics) and prints them; with --check and the default modules it fails
# when they fall below READ_FLOOR, so a change that stops the cache being read inside
# Django's tests cannot pass unnoticed.
#
# Environment: PYTHON, PGHOST/PGPORT/PGUSER, CACHESTRAT_DJANGO_SUITE_DB and
# CACHESTRAT_DJANGO_SUITE_OTHER_DB (default cachestrat_dj_default / cachestrat_dj_other;
# the test runner creates and drops them), CACHESTRAT_DJANGO_SUITE_REDIS (default
# redis://127.0.0.1:6379/14, flushed before each runtests.py process).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-.venv/bin/python}
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")

DEFAULT_MODULES=(
  basic update delete delete_regress bulk_create get_or_create transactions transaction_hooks
  select_for_update custom_managers one_to_one many_to_one many_to_one_null many_to_many
  m2m_through m2m_regress m2m_signals select_related select_related_onetoone
  select_related_regress prefetch_related known_related_objects defer update_only_fields
  save_delete_hooks model_inheritance model_inheritance_regress proxy_models queries
  expressions aggregation annotations lookup multiple_database fixtures fixtures_regress
  model_forms custom_pk get_object_or_404 force_insert_update model_regress generic_relations
  generic_relations_regress foreign_object null_fk reverse_lookup order_with_respect_to
  raw_query signals queryset_pickle async from_db_value field_defaults model_fields
)

# Measured: 383 reads (77 hits) for the default modules on Django 5.2; see docs/limits.md.
READ_FLOOR=300

baseline=0
all=0
check=0
options=()
modules=()
for arg in "$@"; do
  case $arg in
    --baseline) baseline=1 ;;
    --all) all=1 ;;
    --check) check=1 ;;
    -*) options+=("$arg") ;;
    *) modules+=("$arg") ;;
  esac
done
[ ${#modules[@]} -gt 0 ] || [ $all = 1 ] || modules=("${DEFAULT_MODULES[@]}")
[[ " ${options[*]-} " == *" --parallel"* ]] || options+=(--parallel=1)

version=$("$PYTHON" -c 'import django; print(django.__version__)')
suite=.django-suite/django-$version
if [ ! -f "$suite/tests/runtests.py" ]; then
  echo "== downloading the Django $version source distribution into .django-suite/"
  mkdir -p .django-suite
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: "Django==$version" -d .django-suite
  tar -xzf ".django-suite/django-$version.tar.gz" -C .django-suite
  test -f "$suite/tests/runtests.py"
fi
cd "$suite/tests"

if [ $all = 1 ] && [ ${#modules[@]} = 0 ]; then
  # The modules runtests.py would find itself (GIS needs a GIS database).
  for dir in */; do
    dir=${dir%/}
    case $dir in gis_tests | import_error_package | test_runner_apps) continue ;; esac
    [ -f "$dir/__init__.py" ] && modules+=("$dir")
  done
fi
chunk=${#modules[@]}
[ $all = 0 ] || chunk=25

redis_url=${CACHESTRAT_DJANGO_SUITE_REDIS:-redis://127.0.0.1:6379/14}
if [ $baseline = 1 ]; then
  export CACHESTRAT_DJANGO_SUITE_BASELINE=1
  echo "== Django $version test suite, baseline (without django_cachestrat)"
else
  export CACHESTRAT_DJANGO_SUITE_BASELINE=
  echo "== Django $version test suite, django_cachestrat with every model transparent"
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

start=$(date +%s)
status=0
reads_file=$(mktemp)
export CACHESTRAT_DJANGO_SUITE_READS=$reads_file
for ((i = 0; i < ${#modules[@]}; i += chunk)); do
  part=("${modules[@]:i:chunk}")
  [ $all = 0 ] || echo "== modules ${part[0]} .. ${part[-1]}"
  if [ $baseline = 0 ]; then
    # Every process creates its databases afresh: rows cached by an earlier one must go.
    "$PYTHON" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1]).flushdb()' "$redis_url"
  fi
  log=$(mktemp)
  failed=0
  "$PYTHON" runtests.py --settings=tests.django_suite_settings --noinput "${options[@]}" \
    "${part[@]}" 2>&1 | tee "$log" || failed=1
  if [ $check = 1 ]; then
    # Failed test ids ("FAIL: test_x (module.Class.test_x)"), less the allowed ones.
    unexpected=$(sed -nE 's/^(FAIL|ERROR): [^ ]+ \(([^)]+)\).*/\2/p' "$log" | sort -u |
      comm -23 - <(grep -v '^#' "$ROOT/tests/django_suite_allowed.txt" | sort -u))
    if [ -n "$unexpected" ]; then
      echo "== failures beyond the allowed differences:"; echo "$unexpected"; failed=1
    else
      failed=0
    fi
  fi
  [ $failed = 0 ] || status=1
  rm -f "$log"
done
if [ $baseline = 0 ]; then
  read -r hits misses fills saved < <("$PYTHON" -c '
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(*(sum(r[k] for r in rows) for k in ("hits", "misses", "fills", "queries_saved")))
' "$reads_file")
  reads=$((hits + misses))
  echo "== cache reads: $reads ($hits hits, $misses misses, $fills fills, $saved queries saved)"
  if [ $check = 1 ] && [ ${#modules[@]} = ${#DEFAULT_MODULES[@]} ] && [ $reads -lt $READ_FLOOR ]; then
    echo "== fewer cache reads than the floor of $READ_FLOOR: is the cache bypassed in tests?"
    status=1
  fi
fi
rm -f "$reads_file"
echo "== finished in $(($(date +%s) - start)) s (exit status $status)"
exit $status
