"""Key counts and memory per model, estimated from a bounded SCAN of the Redis database.

One pass serves every model: ``SCAN`` without ``MATCH`` (so the number of keys examined
is known), ``COUNT`` ``SCAN_COUNT``, at most ``SCAN_ROUNDS`` calls per primary (a Redis
Cluster's keys are scanned on each of its primaries, and ``DBSIZE`` is their sum). When
every cursor comes back to 0 the counts are exact; otherwise each model's share of the keys
examined is scaled to ``DBSIZE``. Memory is ``MEMORY USAGE`` of a few keys seen, averaged,
times the estimated count. The work per page view is bounded whatever the size of the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .client import topology
from .failopen import fail_open

__all__ = ["KeySample", "sample_keys"]

#: Keys asked of Redis per SCAN call (a hint: Redis may return a few more or fewer).
SCAN_COUNT = 1000
#: SCAN calls per page view, so at most about ``SCAN_COUNT * SCAN_ROUNDS`` keys examined.
SCAN_ROUNDS = 10
#: Keys per model whose ``MEMORY USAGE`` is averaged.
MEMORY_SAMPLES = 20


@dataclasses.dataclass
class KeySample:
    """What one bounded pass over the database saw, by model namespace."""

    examined: int
    dbsize: int
    complete: bool  # the cursor came back to 0: every key was examined
    matched: dict[str, int]
    memory: dict[str, float]  # mean bytes per key, for the namespaces with a sample

    def key_count(self, namespace: str) -> float:
        """The keys of a namespace: exact when complete, else scaled to ``DBSIZE``."""
        seen = self.matched.get(namespace, 0)
        if self.complete or not self.examined:
            return float(seen)
        return seen * self.dbsize / self.examined

    def bytes(self, namespace: str) -> float | None:
        mean = self.memory.get(namespace)
        return None if mean is None else mean * self.key_count(namespace)


@fail_open
def sample_keys(namespaces: Iterable[str]) -> KeySample:
    """Scan at most ``SCAN_ROUNDS`` pages and count the keys under each namespace."""
    prefixes = tuple(namespaces)
    dbsize, complete = 0, True
    seen: set[Any] = set()  # SCAN may return a key twice while the table is resized
    for client in topology().primaries():
        dbsize += int(client.dbsize())
        cursor, rounds = 0, 0
        while rounds < SCAN_ROUNDS:
            cursor, page = client.scan(cursor=cursor, count=SCAN_COUNT)
            seen.update(page)
            rounds += 1
            if cursor == 0:
                break
        complete = complete and cursor == 0
    matched = dict.fromkeys(prefixes, 0)
    examples: dict[str, list[bytes]] = {p: [] for p in prefixes}
    encoded = [(p, p.encode()) for p in prefixes]
    for key in seen:
        for prefix, raw in encoded:
            if key.startswith(raw):
                matched[prefix] += 1
                if len(examples[prefix]) < MEMORY_SAMPLES:
                    examples[prefix].append(key)
                break
    sample = KeySample(len(seen), dbsize, complete, matched, {})
    sample.memory = _mean_memory(examples)
    return sample


def _mean_memory(examples: dict[str, list[bytes]]) -> dict[str, float]:
    """Mean ``MEMORY USAGE`` per namespace; keys gone meanwhile (or a Redis that refuses the
    command) are left out."""
    pipe = topology().pipeline()
    order = [(prefix, key) for prefix, keys in examples.items() for key in keys]
    for _, key in order:
        pipe.memory_usage(key)
    sizes: dict[str, list[int]] = {}
    for (prefix, _), size in zip(order, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(size, int):
            sizes.setdefault(prefix, []).append(size)
    return {prefix: sum(s) / len(s) for prefix, s in sizes.items()}
