"""Every hook goes in and comes out again in one place, and a wiring failure is loud."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models.signals import post_save

from django_cachestrat import hooks, pending, statements
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db


def _ours(receivers: list[object]) -> list[object]:
    return [r for r in receivers if "django_cachestrat" in str(r[0])]


def test_uninstall_takes_out_what_install_put_in():
    connection.ensure_connection()
    try:
        hooks.uninstall()
        assert statements._wrapper not in connection.execute_wrappers
        assert _ours(post_save.receivers) == []
        assert not hasattr(User, "cached")  # named in settings, not a mixin model
        assert hasattr(Profile, "cached")  # the mixin's own, which stays
        assert isinstance(pending.pending.records, pending.NoRecords)
    finally:
        hooks.install()
    assert statements._wrapper in connection.execute_wrappers
    assert _ours(post_save.receivers)
    assert User.cached.get(pk=User.objects.create(username="u").pk).username == "u"
    assert not isinstance(pending.pending.records, pending.NoRecords)


def test_install_twice_installs_once():
    hooks.install()
    hooks.install()
    assert connection.execute_wrappers.count(statements._wrapper) <= 1
    receivers = [r[0] for r in _ours(post_save.receivers)]
    assert len(receivers) == len(set(receivers))
