"""Screenshots of the admin cache pages for docs/img/, taken in headless Chromium.

    .venv/bin/python scripts/screenshots.py --redis-url redis://127.0.0.1:6379/5

Runs the example project on a throwaway SQLite database and the Redis database given (its
``cs:*`` keys are deleted first), creates some cache activity, then photographs the cache
overview, the inspector and a profile's change page. Needs ``chromium`` and
``chromium-driver`` (Debian packages) and Selenium (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH = 1280


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", required=True, help="a Redis database to use")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cachestrat-shots-") as tmp:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="example_project.settings",
            DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3",
            REDIS_URL=args.redis_url,
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        jane = prepare(Path(tmp) / "db.sqlite3")
        shoot(args.out, Path(tmp) / "chromium", jane)


def prepare(database: Path) -> int:
    """Sample rows, cache traffic, a flush, a dead letter, and a row changed behind Django."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from django_cachestrat.client import connection
    from django_cachestrat.drain import drain_all
    from example_project.accounts.models import Profile
    from example_project.accounts.sample import ensure_sample_profiles
    from example_project.blog.models import Post
    from example_project.blog.sample import ensure_sample_posts

    call_command("migrate", verbosity=0)
    client = connection()
    for key in client.scan_iter(match="cs:*", count=1000):
        client.delete(key)
    ensure_sample_profiles()
    ensure_sample_posts()
    User.objects.create_superuser("admin", "admin@example.com", "admin")
    pks = list(Profile.objects.values_list("pk", flat=True))
    for _ in range(40):
        Profile.cached.get_many(pks)
        Profile.cached.get(username="jane")
    posts = list(Post.objects.values_list("pk", flat=True))
    for _ in range(10):
        Post.cached.get_many(posts)
    draft = Post.objects.create(title="Draft", slug="draft", body="Deleted before a flush.")
    for pk in [*posts, draft.pk]:
        Post.cached.incr(pk, "views", by=3)
    draft.delete()
    drain_all()
    Post.cached.incr(posts[0], "likes", by=2)
    jane = Profile.objects.get(username="jane").pk
    with sqlite3.connect(database) as other:  # a write Django never sees: the cache is stale
        other.execute("UPDATE accounts_profile SET karma = karma + 1 WHERE id = ?", [jane])
    return jane


def shoot(out: Path, profile_dir: Path, jane: int) -> None:
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread
    from selenium import webdriver

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(shutil.which("chromedriver"))
    )
    base = f"http://127.0.0.1:{server.port}/admin"
    try:
        log_in(driver, base)
        out.mkdir(parents=True, exist_ok=True)
        cache = f"{base}/django_cachestrat/cache"
        page(driver, f"{cache}/", out / "admin-overview.png")
        page(
            driver,
            f"{cache}/inspect/?model=accounts.profile&pk={jane}",
            out / "admin-inspector.png",
        )
        page(driver, f"{base}/accounts/profile/{jane}/change/", out / "admin-change-box.png")
    finally:
        driver.quit()
        server.terminate()


def log_in(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(WIDTH, 900)
    driver.get(f"{base}/login/")
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The admin remembers a collapsed navigation sidebar: the pages get the whole width.
    driver.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")


def page(driver: Any, url: str, path: Path) -> None:
    """The whole page, however tall, through the DevTools protocol."""
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
