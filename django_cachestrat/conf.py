"""The CACHESTRAT settings, read at call time so ``override_settings`` just works."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.db import connections

__all__ = ["DEFAULTS", "conf", "primary_of"]

#: Every setting with its default; ``docs/configuration.md`` documents each one.
DEFAULTS: dict[str, Any] = {
    "CACHE_ALIAS": "default",
    "CONNECTION": None,
    "KEY_PREFIX": "cs",
    "TIMEOUT": 3600,
    "JITTER": 0.1,
    "NEGATIVE_TIMEOUT": 30,
    "FAIL_OPEN": True,
    "MODELS": {},
    "WRITE_BEHIND": {"INTERVAL": 5, "BATCH_SIZE": 1000, "STRIPES": 8, "RECLAIM_AFTER": 30},
    "EARLY_REFRESH": 1.0,
    "LEASE_TIMEOUT": 5.0,
    "LEASE_WAIT": 1.0,
    "BREAKER_THRESHOLD": 3,
    "BREAKER_COOLDOWN": 5.0,
    "REPLICAS": {},
    "REPLICA_LAG": 5.0,
    "REDIS_REPLICA_WAIT": 0.1,
    "EXTERNAL_WRITES": {
        "ENABLED": False,
        "DATABASES": ["default"],
        "BATCH_SIZE": 500,
        "INTERVAL": 1.0,
    },
    "METRICS": False,
    "TRACING": {"ENABLED": False, "READS": False},
}


class Settings:
    """Typed view of ``settings.CACHESTRAT``; each property reads the setting anew."""

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(settings, "CACHESTRAT", None)
        return value if isinstance(value, dict) else {}

    def _get(self, name: str) -> Any:
        return self.raw.get(name, DEFAULTS[name])

    @property
    def CACHE_ALIAS(self) -> str:
        return str(self._get("CACHE_ALIAS"))

    @property
    def CONNECTION(self) -> str | None:
        value = self._get("CONNECTION")
        return str(value) if value else None

    @property
    def KEY_PREFIX(self) -> str:
        prefix = str(self._get("KEY_PREFIX"))
        # pytest-xdist gives each worker a test database of its own, so a namespace too.
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        return f"{prefix}.{worker}" if worker else prefix

    @property
    def TIMEOUT(self) -> float:
        return float(self._get("TIMEOUT"))

    @property
    def JITTER(self) -> float:
        return float(self._get("JITTER"))

    @property
    def NEGATIVE_TIMEOUT(self) -> float:
        return float(self._get("NEGATIVE_TIMEOUT"))

    @property
    def FAIL_OPEN(self) -> bool:
        return bool(self._get("FAIL_OPEN"))

    @property
    def MODELS(self) -> dict[str, dict[str, Any]]:
        return dict(self._get("MODELS"))

    @property
    def WRITE_BEHIND(self) -> dict[str, Any]:
        return {**DEFAULTS["WRITE_BEHIND"], **self._get("WRITE_BEHIND")}

    @property
    def EARLY_REFRESH(self) -> float:
        return float(self._get("EARLY_REFRESH"))

    @property
    def LEASE_TIMEOUT(self) -> float:
        return float(self._get("LEASE_TIMEOUT"))

    @property
    def LEASE_WAIT(self) -> float:
        return float(self._get("LEASE_WAIT"))

    @property
    def BREAKER_THRESHOLD(self) -> int:
        return int(self._get("BREAKER_THRESHOLD"))

    @property
    def BREAKER_COOLDOWN(self) -> float:
        return float(self._get("BREAKER_COOLDOWN"))

    @property
    def REPLICAS(self) -> dict[str, str]:
        return dict(self._get("REPLICAS"))

    @property
    def EXTERNAL_WRITES(self) -> dict[str, Any]:
        return {**DEFAULTS["EXTERNAL_WRITES"], **self._get("EXTERNAL_WRITES")}

    @property
    def REPLICA_LAG(self) -> float:
        return float(self._get("REPLICA_LAG"))

    @property
    def REDIS_REPLICA_WAIT(self) -> float:
        return float(self._get("REDIS_REPLICA_WAIT"))

    @property
    def METRICS(self) -> bool:
        return bool(self._get("METRICS"))

    @property
    def TRACING(self) -> dict[str, bool]:
        return {**DEFAULTS["TRACING"], **self._get("TRACING")}


conf = Settings()


def primary_aliases() -> list[str]:
    """Every database alias but the replicas: the databases whose rows and increments
    the cache holds (a replica's rows are its primary's)."""
    replicas = conf.REPLICAS
    return [alias for alias in connections if alias not in replicas]


def replica_lag_ms(using: str) -> int:
    """How long a write on ``using`` marks what it deletes for its replicas to catch up:
    0 unless ``using`` is a primary with replicas (see replicas.py)."""
    return max(1, int(conf.REPLICA_LAG * 1000)) if using in conf.REPLICAS.values() else 0


def primary_of(alias: str) -> str:
    """The database whose rows a connection reads: the primary a replica follows."""
    replicas = conf.REPLICAS
    return replicas.get(alias, alias) if replicas else alias
