"""Adds the benchmark's database latency to every connection the served project opens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.backends.signals import connection_created


class LoadSiteConfig(AppConfig):
    name = "bench.loadsite"
    label = "loadsite"

    def ready(self) -> None:
        if settings.LOAD_DB_DELAY > 0:
            connection_created.connect(_add_delay, dispatch_uid="loadsite-db-delay")


def _add_delay(sender: object, connection: Any, **kwargs: object) -> None:
    # First in the list: the delay stands for the network, so it wraps every other wrapper.
    connection.execute_wrappers.insert(0, _delayed)


def _delayed(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    # One statement is one round trip to the server (psycopg sends a query and reads all of
    # its rows in one exchange), so one sleep per statement adds one round trip's latency.
    time.sleep(settings.LOAD_DB_DELAY)
    return execute(sql, params, many, context)
