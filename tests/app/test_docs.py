"""Docs that cannot drift: every check id and every setting has its section in ``docs/``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from django_cachestrat.conf import DEFAULTS

ROOT = Path(__file__).parents[2]
CHECKS_SOURCES = sorted((ROOT / "django_cachestrat").glob("checks*.py"))
CHECKS_DOC = ROOT / "docs" / "checks.md"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"

CHECKS_TEXT = "".join(path.read_text() for path in CHECKS_SOURCES)
CHECK_IDS = sorted(set(re.findall(r'"(?:django_cachestrat\.)?([EW]\d\d\d)"', CHECKS_TEXT)))


def headings(path: Path) -> list[str]:
    return re.findall(r"^#{1,6} +(.+)$", path.read_text(), flags=re.MULTILINE)


def test_check_ids_are_found_in_the_source() -> None:
    assert len(CHECK_IDS) >= 20, CHECK_IDS


@pytest.mark.parametrize("check_id", CHECK_IDS)
def test_every_check_id_is_documented(check_id: str) -> None:
    full_id = f"django_cachestrat.{check_id}"
    titled = [h for h in headings(CHECKS_DOC) if re.match(rf"{re.escape(full_id)} — \S", h)]
    assert titled, f"docs/checks.md has no '### {full_id} — <title>' section"


def test_each_check_id_has_one_section_and_no_section_names_an_unknown_id() -> None:
    pattern = r"django_cachestrat\.([EW]\d\d\d) "
    documented = [m.group(1) for h in headings(CHECKS_DOC) if (m := re.match(pattern, h))]
    assert sorted(documented) == CHECK_IDS


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_setting_is_documented(name: str) -> None:
    documented = [h for h in headings(CONFIGURATION_DOC) if re.search(rf"\b{name}\b", h)]
    assert documented, f"docs/configuration.md has no section for the {name} setting"


@pytest.mark.parametrize("name", sorted(DEFAULTS["WRITE_BEHIND"]))
def test_every_write_behind_key_is_documented(name: str) -> None:
    assert re.search(rf"`{name}`", CONFIGURATION_DOC.read_text())


def test_the_testing_examples_are_the_tested_code() -> None:
    source = (ROOT / "tests" / "testing" / "test_testing_helpers.py").read_text()
    example = source.split("# docs: pytest\n")[1].split("# docs: end")[0].strip()
    assert f"```python\n{example}\n```" in (ROOT / "docs" / "testing.md").read_text()


def test_numbers_quoted_in_the_docs_are_the_codes() -> None:
    from django_cachestrat import invalidation

    api = (ROOT / "docs" / "api.md").read_text()
    assert f"More than {invalidation.BULK_LIMIT:,} pks (`invalidation.BULK_LIMIT`)" in api
    assert "1,000 pks" not in api
