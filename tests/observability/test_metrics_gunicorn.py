"""Prometheus multi-process mode: a real gunicorn with two workers, scraped for totals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import TeamFactory
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)  # the workers read committed rows
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>``: gunicorn serving tests.urls from two workers."""
    port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        CACHESTRAT_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        CACHESTRAT_TEST_REDIS_URL=str(settings.CACHES["default"]["LOCATION"]),
        CACHESTRAT_TEST_METRICS="1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    command = [
        *(sys.executable, "-m", "gunicorn", "--workers", str(WORKERS)),
        *("--bind", f"127.0.0.1:{port}", "--config", str(ROOT / "tests" / "gunicorn_conf.py")),
        "django.core.wsgi:get_wsgi_application()",
    ]
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, tmp_path / "gunicorn.log")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()}")
        try:
            urllib.request.urlopen(f"{url}/metrics", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer: {log.read_text()}")


def _get(url: str) -> bytes:
    # A new connection per request, so the workers take turns accepting them.
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = _get(f"{url}/metrics").decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"{key} exported twice"
            samples[key] = s.value
    return samples


def test_the_totals_of_every_worker_add_up(gunicorn: str):
    teams = [TeamFactory() for _ in range(3)]
    served: dict[int, int] = {}
    reads = 0
    booted = time.monotonic() + 60  # the second worker may still be importing Django
    while time.monotonic() < booted and (len(served) < WORKERS or reads < 40):
        body = json.loads(_get(f"{gunicorn}/team/{teams[reads % 3].pk}"))
        served[body["pid"]] = served.get(body["pid"], 0) + 1
        reads += 1
    assert len(served) == WORKERS, served  # both workers read rows
    model = (("model", "testapp.team"),)
    # Each worker syncs every 10 s on its statistics thread, the scraped one at once.
    deadline = time.monotonic() + 40
    while True:
        samples = _scrape(gunicorn)
        hits = samples.get(("cachestrat_hits_total", model), 0)
        misses = samples.get(("cachestrat_misses_total", model), 0)
        if hits + misses == reads or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (hits + misses, reads) == (reads, reads)
    assert 3 <= misses <= 3 * WORKERS  # each row missed once, at most once per worker
    assert samples[("cachestrat_fills_total", model)] <= misses
    # Gauges of every worker reduced to one sample; the shared figures read once.
    assert samples[("cachestrat_breaker_open", (("node", "all"),))] == 0
    assert samples[("cachestrat_redis_up", ())] == 1
