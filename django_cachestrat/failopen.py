"""The fail-open policy: a Redis call under the breaker, its failure served by the database."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

from .breaker import Unavailable, breaker
from .client import REDIS_ERRORS, built
from .conf import conf
from .pending import pending
from .topology import NodeDown, ReplicaLag, failed_node

__all__ = ["fail_open", "failed"]

logger = logging.getLogger("django_cachestrat")

P = ParamSpec("P")
R = TypeVar("R")


def fail_open(func: Callable[P, R]) -> Callable[P, R]:
    """Run a Redis operation under the breaker; failures become :class:`Unavailable`.

    With ``FAIL_OPEN = False`` the Redis error reaches the caller instead.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not breaker.allow():
            raise Unavailable("circuit breaker open")
        try:
            if pending.waiting:  # deletes that missed Redis go first, before any read
                pending.replay(wait=False)
            if (
                pending.unconfirmed_keys
                or pending.unconfirmed_generations
                or pending.unconfirmed_calls
            ):
                pending.resend_unconfirmed()  # a failover may have lost them
            result = func(*args, **kwargs)
        except ReplicaLag:
            raise  # the primary took the write; the caller keeps it for after a failover
        except NodeDown as exc:
            if exc.failed:
                failed(exc, exc.node)
            if not conf.FAIL_OPEN:
                raise
            raise Unavailable(str(exc)) from exc  # known down: skipped, nothing to count
        except REDIS_ERRORS as exc:
            # On a cluster the node the error came from is blamed, not the connection.
            shape = built()
            cluster = shape is not None and shape.is_cluster
            failed(exc, failed_node(exc) if cluster else None)
        if breaker.failures:
            breaker.success()
        return result

    return wrapper


def failed(exc: BaseException, node: str | None) -> NoReturn:
    """Count a failure on the node's breaker (or the connection's), then fail open."""
    pending.expect_records()
    failing = breaker.node(node) if node else breaker
    failing.failure(conf.BREAKER_THRESHOLD, conf.BREAKER_COOLDOWN)  # counts it too
    logger.warning("Redis unavailable, serving from the database: %s", exc)
    if not conf.FAIL_OPEN:
        raise exc
    raise Unavailable(str(exc)) from exc
