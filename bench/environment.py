"""What every benchmark report names: the CPU, library versions and the commit measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(packages: Sequence[str]) -> str:
    return ", ".join(f"{name} {version(name)}" for name in packages)


def cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "unknown"


def code_version() -> str:
    """The commit measured, and whether the package had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--", "django_cachestrat")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' with uncommitted changes in django_cachestrat/' if dirty else ''}"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def describe(libraries: Sequence[str]) -> list[tuple[str, str]]:
    """The report's first lines: CPU, Python, libraries, servers and the code measured."""
    from django.db import connection
    from django_redis import get_redis_connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_server = get_redis_connection("default").info("server")["redis_version"]
    return [
        ("CPU", f"{cpu()}, {os.cpu_count()} cores"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Libraries", versions(libraries)),
        ("Servers", f"PostgreSQL {postgres}, Redis {redis_server}, both on this host over TCP"),
        ("Code", code_version()),
    ]


def wait_for_quiet(limit: float, pause: int = 60, longest: int = 600) -> str:
    """Wait (``pause`` s at a time, ``longest`` s at most) while the load average is above
    ``limit``, so other work on the host does not skew the figures; describes what it saw."""
    waited = 0
    load = os.getloadavg()[0]
    while load > limit and waited < longest:
        progress(f"load average {load:.2f} > {limit:g}: waiting {pause} s")
        time.sleep(pause)
        waited += pause
        load = os.getloadavg()[0]
    state = "at or below" if load <= limit else "STILL ABOVE"
    return f"{load:.2f} (1-minute average) at the start, {state} {limit:g} after waiting {waited} s"
