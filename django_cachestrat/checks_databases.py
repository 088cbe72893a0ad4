"""System checks for several databases: ``REPLICAS`` and the aliases keys are named after."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning

from .checks_options import NUMBER, error, is_finite, is_type, unknown_key
from .conf import DEFAULTS

__all__ = ["check_databases"]

#: Characters an alias may not hold: it is part of every key of its rows (braces move the
#: Redis Cluster hash tag, glob characters break SCAN patterns, ":" and "@" the layout).
UNSAFE = "{}*?[]\\:@"


def check_databases(raw: dict[str, Any]) -> list[CheckMessage]:
    """``CACHESTRAT["REPLICAS"]`` against ``DATABASES``, and aliases usable in keys."""
    databases = getattr(settings, "DATABASES", {})
    messages: list[CheckMessage] = [
        error(
            f"DATABASES alias {alias!r} cannot name cache keys: it holds whitespace or one "
            f"of {UNSAFE}.",
            "Rename the alias: rows read through it are cached under keys that name it.",
            "E183",
        )
        for alias in databases
        if alias != "default" and any(c.isspace() or c in UNSAFE for c in str(alias))
    ]
    external = raw.get("EXTERNAL_WRITES", {})
    if isinstance(external, dict):
        messages += [e for k, v in external.items() if (e := _check_external(k, v))]
    replicas = raw.get("REPLICAS", {})
    if not isinstance(replicas, dict):
        return messages  # reported as a type error (E003)
    for replica, primary in replicas.items():
        messages += _check_pair(replica, primary, replicas, databases)
    messages += [
        Warning(
            f"DATABASES[{alias!r}] is a test mirror of {mirror!r}, a replica, but "
            f"CACHESTRAT['REPLICAS'] does not map it: rows read through it are cached "
            f"under keys of their own, which writes on {mirror!r} never delete.",
            hint=f"Add CACHESTRAT['REPLICAS'] = {{{alias!r}: {mirror!r}}}.",
            id="django_cachestrat.W140",
        )
        for alias, config in databases.items()
        if isinstance(config, dict)
        and (mirror := (config.get("TEST") or {}).get("MIRROR"))
        and alias not in replicas
    ]
    return messages


def _check_pair(
    replica: Any, primary: Any, replicas: dict[Any, Any], databases: dict[str, Any]
) -> list[CheckMessage]:
    where = f"CACHESTRAT['REPLICAS'][{replica!r}]"
    unknown = [a for a in (replica, primary) if not isinstance(a, str) or a not in databases]
    if unknown:
        return [
            error(
                f"{where} = {primary!r} names {unknown[0]!r}, which is not a DATABASES alias.",
                f"Map replica aliases to primary aliases among {sorted(databases)}.",
                "E180",
            )
        ]
    if replica == primary:
        return [
            error(
                f"{where} maps the database {replica!r} to itself.",
                "Map each replica alias to the alias of the primary it follows; a "
                "primary needs no entry.",
                "E181",
            )
        ]
    if primary in replicas:
        return [
            error(
                f"{where} = {primary!r}, which is itself mapped as a replica (to "
                f"{replicas[primary]!r}).",
                "Map every replica to the primary where writes are made, even a replica "
                "that streams from another replica (cascading replication).",
                "E182",
            )
        ]
    return []


def _check_external(key: Any, value: Any) -> CheckMessage | None:
    defaults = DEFAULTS["EXTERNAL_WRITES"]
    where = f"CACHESTRAT['EXTERNAL_WRITES'][{key!r}]"
    if unknown := unknown_key("CACHESTRAT['EXTERNAL_WRITES']", key, defaults, "E184"):
        return unknown
    if key == "ENABLED":
        ok, kind = isinstance(value, bool), "True or False"
    elif key == "DATABASES":
        databases = getattr(settings, "DATABASES", {})
        ok = isinstance(value, list | tuple) and all(
            isinstance(a, str) and a in databases for a in value
        )
        kind = f"a list of DATABASES aliases ({', '.join(sorted(databases))})"
    elif key == "BATCH_SIZE":
        ok, kind = is_type(value, (int,)) and value > 0, "an int greater than 0"
    else:
        ok = is_type(value, NUMBER) and is_finite(value) and value > 0
        kind = "a finite number greater than 0"
    if ok:
        return None
    return error(f"{where} must be {kind}, not {value!r}.", f"Default: {defaults[key]!r}.", "E185")
