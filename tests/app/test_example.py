"""The example project's demo runs end to end and shows what the cache does; its pages work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


class Project:
    """The example project on its own SQLite file and this suite's Redis, run in subprocesses."""

    def __init__(self, database: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DEBUG": "true",
        }

    def manage(self, *args: str) -> str:
        return self.run(str(ROOT / "manage.py"), *args)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project(tmp_path_factory.mktemp("example") / "demo.sqlite3")
    project.manage("migrate", "--noinput")
    return project


@pytest.fixture(scope="module")
def demo(project: Project) -> str:
    return project.manage("demo", "--reads", "20")


def test_demo_runs_on_sqlite_and_shows_invalidation(demo):
    assert "first read (miss)          1" in demo
    assert "next read (miss)           1" in demo
    assert "karma = 43" in demo


def _row(output: str, call: str, step: str) -> str:
    """The demo's line for one call and step (each line starts with the call, padded)."""
    for line in output.splitlines():
        if line.startswith(f"  {call:<30} {step:<20} "):
            return line
    raise AssertionError(f"no line for {call} / {step} in:\n{output}")


def _counts(line: str) -> tuple[int, int]:
    found = re.search(r"views (\d+), likes (\d+)", line)
    assert found, line
    return int(found[1]), int(found[2])


def test_demo_counts_write_behind_and_flushes_every_increment(demo):
    assert "posts      3 (3 created now)" in demo
    assert "counters   0 increments pending from before, flushed first" in demo
    incr = _row(demo, "cached.incr(pk, 'views')", "20 increments")
    assert re.search(r"20 increments +0 ", incr), incr  # no query per increment
    assert re.search(r"20 database writes +20 ", demo)
    assert re.search(r"cached.incr\(pk, 'likes'\) +5 increments +0 ", demo)

    # Post 1 got 7 of the 20 increments and 7 of the 20 UPDATEs (3 posts in turns), 2 likes.
    call = "cached.get(slug='hello-redis')"
    stored = _row(demo, "objects.get(pk=1)", "in the database")
    pending = _row(demo, call, "read (2 misses)")
    assert _counts(stored) == (7, 0)
    assert _counts(pending) == (14, 2)
    assert "(+7, +2 pending)" in pending
    assert "(+7, +2 pending)" in _row(demo, call, "read again (hit)")

    # Pks 1, 2 and 3 fall in three stripes: one batch each, every increment of the run.
    flush = _row(demo, "drain_all()", "3 batches")
    assert re.search(r"  3 rows, 25 increments, [\d.]+ ms in the database$", flush), flush

    after = [line for line in demo.splitlines() if line.startswith("  objects.get(pk=1) ")]
    assert _counts(after[-1]) == (14, 2)
    assert "views 14, likes 2 (== database)" in demo
    assert "expected" not in demo  # no call ran more or fewer queries than it should
    totals = _row(demo, "all 3 posts", "totals")
    assert "database == read: views 40, likes 5, none lost" in totals


CLIENT_SCRIPT = """
import json, re
from django.test import Client
from django_cachestrat.drain import drain_all
from example_project.blog.models import Post
from example_project.blog.sample import ensure_sample_posts

ensure_sample_posts()
drain_all()
start = Post.objects.get(slug="counting-views")
client = Client(enforce_csrf_checks=True)

def counts(response):
    html = response.content.decode()
    views = re.search(r'<span class="views">(\\d+)</span>', html)
    likes = re.search(r'<span class="likes">(\\d+)</span>', html)
    return [int(views[1]), int(likes[1])]

first = client.get("/p/counting-views/")
token = client.cookies["csrftoken"].value
no_token = client.post("/p/counting-views/like/")
liked = client.post("/p/counting-views/like/", {"csrfmiddlewaretoken": token})
get_like = client.get("/p/counting-views/like/")
second = client.get("/p/counting-views/")
listing = client.get("/blog/")
home = client.get("/")
missing = client.get("/p/no-such-post/")
before_flush = Post.objects.get(pk=start.pk)
flushed = drain_all()
after_flush = Post.objects.get(pk=start.pk)
print(json.dumps({
    "start": [start.views, start.likes],
    "first": [first.status_code, counts(first), "Counting views" in first.content.decode()],
    "no_token": no_token.status_code,
    "liked": [liked.status_code, liked["Location"]],
    "get_like": get_like.status_code,
    "second": [second.status_code, counts(second)],
    "listing": [listing.status_code, "/p/counting-views/" in listing.content.decode()],
    "home": [home.status_code, "/blog/" in home.content.decode()],
    "missing": missing.status_code,
    "before_flush": [before_flush.views, before_flush.likes],
    "increments": sum(r.increments for r in flushed),
    "after_flush": [after_flush.views, after_flush.likes],
}))
"""


def test_post_page_counts_views_and_the_like_form_counts_likes(project):
    project.manage("check", "--fail-level", "WARNING")
    project.manage("makemigrations", "--check", "--dry-run")
    out = project.manage("shell", "--no-imports", "-c", CLIENT_SCRIPT)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    views, likes = result["start"]
    assert result["first"] == [200, [views, likes], True]  # counted after the read
    assert result["no_token"] == 403  # the like endpoint is CSRF-protected
    assert result["liked"] == [302, "/p/counting-views/"]
    assert result["get_like"] == 405  # POST only
    assert result["second"] == [200, [views + 1, likes + 1]]  # pending increments are read
    assert result["listing"] == [200, True]
    assert result["home"] == [200, True]
    assert result["missing"] == 404
    # Nothing reached the database before the flush; the flush applied all three.
    assert result["before_flush"] == [views, likes]
    assert result["increments"] == 3
    assert result["after_flush"] == [views + 2, likes + 1]


def test_celery_app_uses_the_project_redis_and_schedules_the_flush(project):
    script = (
        "import json; from example_project import celery_app as app; "
        "print(json.dumps([app.conf.broker_url, app.conf.beat_schedule, "
        "sorted(t for t in app.tasks if t.startswith('django_cachestrat'))]))"
    )
    out = project.manage("shell", "--no-imports", "-c", script)
    broker, schedule, tasks = json.loads(out.strip().splitlines()[-1])
    assert broker == settings.REDIS_URL
    entry = schedule["django_cachestrat.flush_counters"]
    assert entry == {"task": "django_cachestrat.flush_counters", "schedule": 5.0}
    assert tasks == [
        "django_cachestrat.consume_external_writes",
        "django_cachestrat.flush_counters",
        "django_cachestrat.replay_invalidations",
    ]
    assert "django_cachestrat.consume_external_writes" not in schedule  # not enabled


def test_broker_url_of_an_embedded_redis_is_a_kombu_unix_socket_url(project):
    # In a subprocess: importing example_project creates its Celery app, which would
    # become the current app of this test process.
    script = (
        "import json; from example_project.services import broker_url; print(json.dumps(["
        "broker_url('unix:///tmp/x/redis.socket'), broker_url('unix:///tmp/x/redis.socket?db=2'),"
        "broker_url('redis://127.0.0.1:6379/3')]))"
    )
    out = project.run("-c", script)
    assert json.loads(out) == [
        "redis+socket:///tmp/x/redis.socket",
        "redis+socket:///tmp/x/redis.socket?virtual_host=2",
        "redis://127.0.0.1:6379/3",
    ]


def test_a_processs_first_write_on_sqlite_is_kept(project):
    # The first Redis call of a process replays the missed invalidations kept in the
    # database; here it comes from inside the INSERT itself (its absence is invalidated),
    # while SQLite still holds the statement open.
    script = (
        "import django; django.setup()\n"
        "from example_project.blog.models import Post\n"
        "post = Post.objects.create(title='t', slug='first-write-kept', body='b')\n"
        "print(Post.objects.filter(pk=post.pk).count(), Post.cached.get(pk=post.pk).slug)\n"
    )
    assert project.run("-c", script).split() == ["1", "first-write-kept"]


def test_a_write_on_sqlite_while_redis_is_down_is_kept(project):
    # The invalidation that Redis refused is kept for replay, from inside the INSERT.
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.test import override_settings\n"
        "from example_project.blog.models import Post\n"
        "from tests.servers import free_port\n"
        "down = {**settings.CACHES['default'], 'LOCATION': f'redis://127.0.0.1:{free_port()}/0'}\n"
        "with override_settings(CACHES={'default': down}):\n"
        "    post = Post.objects.create(title='t', slug='kept-while-down', body='b')\n"
        "print(Post.objects.filter(pk=post.pk).count())\n"
    )
    assert project.run("-c", script).split()[-1] == "1"
