"""Headless Chromium: the admin cache pages (log in, look, invalidate a row), and the debug
toolbar panel on the example project's own server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory
from tests.testapp.models import Profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="headless browser tests need Chromium and its driver "
        "(apt-get install chromium chromium-driver)",
    ),
    pytest.mark.django_db(transaction=True),
]

#: Flags for a quiet, reproducible headless Chromium that calls no Google service.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="session")
def admin_static() -> Iterator[None]:
    """Serve the admin's CSS from the live server (the test settings have no static files);
    requested before ``live_server``, whose handler reads these settings when it starts."""
    root = Path(django.contrib.admin.__file__).parent / "static"
    with override_settings(STATIC_URL="/static/", STATIC_ROOT=str(root)):
        yield


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
        driver.implicitly_wait(5)
        try:
            yield driver
        finally:
            driver.quit()


def log_in(browser: Any, live_server: Any) -> None:
    from selenium.webdriver.common.by import By

    User.objects.create_superuser("root", "root@example.com", "pw")
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("root")
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.find_element(By.ID, "user-tools")  # waits for the admin index


def test_overview_inspector_and_invalidate(admin_static, live_server, browser, redis_client):
    from selenium.webdriver.common.by import By

    profile = ProfileFactory(username="jane")
    Profile.cached.get(pk=profile.pk)
    key = plan_for(Profile).keys.row(profile.pk)
    log_in(browser, live_server)

    browser.get(f"{live_server.url}/admin/")
    browser.find_element(By.LINK_TEXT, "Cache").click()  # the cache's entry on the index
    assert browser.find_element(By.TAG_NAME, "h1").text == "Cache overview"
    models = browser.find_element(By.ID, "cached-models").text
    assert "testapp.profile" in models

    browser.find_element(By.LINK_TEXT, "testapp.profile").click()
    browser.find_element(By.NAME, "pk").send_keys(str(profile.pk))
    browser.find_element(By.CSS_SELECTOR, "#inspect-form input[type=submit]").click()
    assert "Cached row" in browser.find_element(By.ID, "row-state").text
    assert browser.find_element(By.ID, "row-sync").text == "yes"

    browser.find_element(By.ID, "action-invalidate").click()
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist .success").text
    assert message.startswith(f"Invalidated testapp.profile #{profile.pk}")
    assert "Not cached" in browser.find_element(By.ID, "row-state").text
    assert redis_client.exists(key) == 0


# The debug toolbar panel, on the example project


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the example project's server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[str]:
    """The example project (SQLite, this suite's Redis, DEBUG on) on a free port."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'panel.sqlite3'}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DEBUG": "true",
    }
    _manage(env, "migrate", "--noinput")
    sample = "from example_project.accounts.sample import ensure_sample_profiles as s; s()"
    _manage(env, "shell", "-c", sample)
    url = f"http://127.0.0.1:{_free_port()}"
    address = url.removeprefix("http://")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", address],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(f"{url}/static/debug_toolbar/js/toolbar.js", server)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _toolbar(browser: Any) -> Any:
    """Where the toolbar's elements are: the shadow root of newer toolbars, or the page."""
    from selenium.common.exceptions import NoSuchShadowRootException
    from selenium.webdriver.common.by import By

    for root in browser.find_elements(By.ID, "djDebugRoot"):
        try:
            return root.shadow_root
        except NoSuchShadowRootException:
            break
    return browser


def _panel_cell(browser: Any, label: str, name: str) -> str:
    from selenium.webdriver.common.by import By

    selector = f'#CachestratPanel tr[data-model="{label}"] .{name}'
    text: str = _toolbar(browser).find_element(By.CSS_SELECTOR, selector).text
    return text


def test_the_panel_shows_the_pages_hits_misses_and_saved_queries(example_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{example_server}/")  # fills the five sample profiles
    browser.get(f"{example_server}/")  # reads them from Redis
    assert "Jane Doe" in browser.find_element(By.TAG_NAME, "ul").text
    button = _toolbar(browser).find_element(By.CSS_SELECTOR, "#djdt-CachestratPanel a")
    assert "5 hits, 0 misses" in button.text
    button.click()
    # The toolbar fetches the panel from its store (render_panel) once it is opened.
    WebDriverWait(browser, 10).until(
        lambda b: _toolbar(b).find_elements(By.CSS_SELECTOR, "#CachestratPanel #cachestrat-reads")
    )
    assert _panel_cell(browser, "accounts.profile", "hits") == "5"
    assert _panel_cell(browser, "accounts.profile", "misses") == "0"
    assert _panel_cell(browser, "accounts.profile", "queries-saved") == "1"
    title = _toolbar(browser).find_element(By.CSS_SELECTOR, "#CachestratPanel h3").text
    assert title == "Cache strategies"
