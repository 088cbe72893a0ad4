"""The admin cache pages in headless Chromium: log in, look, invalidate a row."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory
from tests.testapp.models import Profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

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

    browser.get(f"{live_server.url}/admin/django_cachestrat/")
    browser.find_element(By.LINK_TEXT, "Cache overview").click()
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
