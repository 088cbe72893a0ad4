"""The example project's demo runs end to end and shows what the cache does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_on_sqlite_and_shows_invalidation(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [*manage, "demo", "--reads", "20"], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "first read (miss)          1" in out
    assert "next read (miss)           1" in out
    assert "karma = 43" in out
