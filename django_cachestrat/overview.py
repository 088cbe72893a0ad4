"""Figures of the admin overview: the Redis server, each cached model, and write-behind."""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any

from django.db.models import Max
from django.utils import timezone

from . import stats
from .breaker import Unavailable, breaker
from .client import REDIS_ERRORS, topology
from .conf import conf
from .drain import counter_models
from .eviction import MESSAGE, counter_labels, evicting_policies
from .failopen import fail_open
from .keys import claim_parts
from .models import CounterBatch, DeadLetter
from .options import cached_models
from .plan import ModelPlan, plan_for
from .sampling import KeySample, sample_keys

__all__ = ["ModelFigures", "Overview", "Server", "WriteBehind", "gather", "is_worth_caching"]

#: Used memory, as a share of ``maxmemory``, from which the page warns.
MEMORY_WARNING = 0.75
#: Caching a model pays when a database fill costs at least this many cache hits.
WORTH_RATIO = 2.0
#: Reads (over the hour shown) before the page gives that advice.
MIN_EVIDENCE = 20
#: Rows shown in the lists of recent batches and dead letters.
RECENT = 20
#: The statistics window of the page, in minutes.
WINDOW = 60


@dataclasses.dataclass
class Server:
    """The Redis server, from ``INFO``, and the app's own Redis error counts."""

    version: str
    used_memory: int
    maxmemory: int
    policy: str
    evicted_keys: int
    keyspace_hits: int
    keyspace_misses: int
    redis_errors: int = 0
    breaker_trips: int = 0
    eviction_risk: str | None = None  # pending increments that the policy may evict
    breaker_open: bool = False

    @property
    def memory_ratio(self) -> float | None:
        return self.used_memory / self.maxmemory if self.maxmemory else None

    @property
    def hit_ratio(self) -> float | None:
        reads = self.keyspace_hits + self.keyspace_misses
        return self.keyspace_hits / reads if reads else None

    @property
    def warnings(self) -> list[str]:
        found = []
        ratio = self.memory_ratio
        if ratio is None:
            found.append(
                "maxmemory is not set: Redis grows until the machine runs out of memory. "
                "Set maxmemory and a volatile-lru or volatile-lfu policy."
            )
        elif ratio >= MEMORY_WARNING:
            found.append(f"Redis uses {ratio:.0%} of maxmemory.")
        if self.policy == "noeviction":
            found.append(
                "The eviction policy is noeviction: once full, Redis refuses writes, and "
                "the app serves every read from the database."
            )
        elif self.eviction_risk:
            found.append(self.eviction_risk)
        return found


#: INFO fields added up over a cluster's primaries; the others are the first primary's.
SUMMED = ("used_memory", "maxmemory", "evicted_keys", "keyspace_hits", "keyspace_misses")


@fail_open
def _info() -> dict[str, Any]:
    """INFO of the server, or of every primary of a cluster added up."""
    infos: list[dict[str, Any]] = [client.info() for client in topology().primaries()]
    merged: dict[str, Any] = {"eviction_risk": None}
    if counter_labels() and (policies := evicting_policies(infos)):
        merged["eviction_risk"] = MESSAGE.format(
            policies=", ".join(policies), models=", ".join(counter_labels())
        )
    merged.update(infos[0])
    for name in SUMMED:
        merged[name] = sum(int(info.get(name, 0)) for info in infos)
    policies = sorted({str(info.get("maxmemory_policy", "?")) for info in infos})
    merged["maxmemory_policy"] = ",".join(policies)  # primaries set apart show each
    return merged


def server_figures(summaries: dict[str, stats.Summary]) -> Server:
    info = _info()
    counts = summaries[stats.REDIS_LABEL].counts if stats.REDIS_LABEL in summaries else {}
    return Server(
        version=str(info.get("redis_version", "?")),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "?")),
        evicted_keys=int(info.get("evicted_keys", 0)),
        keyspace_hits=int(info.get("keyspace_hits", 0)),
        keyspace_misses=int(info.get("keyspace_misses", 0)),
        redis_errors=counts.get("redis_errors", 0),
        breaker_trips=counts.get("breaker_trips", 0),
        breaker_open=breaker.is_open,
        eviction_risk=info["eviction_risk"],
    )


def is_worth_caching(summary: stats.Summary | None) -> bool | None:
    """False when a database fill is nearly as fast as a hit; None without the evidence."""
    if summary is None or not summary.median_hit_us or summary.median_fill_us is None:
        return None
    if summary.counts.get("hits", 0) + summary.counts.get("misses", 0) < MIN_EVIDENCE:
        return None
    return summary.median_fill_us >= WORTH_RATIO * summary.median_hit_us


@dataclasses.dataclass
class ModelFigures:
    """One cached model: its options, its keys in Redis and its statistics."""

    label: str
    name: str
    plan: ModelPlan
    keys: float
    keys_exact: bool
    memory: float | None
    summary: stats.Summary | None

    @property
    def worth_caching(self) -> bool | None:
        return is_worth_caching(self.summary)


def model_figures(
    sample: KeySample | None, summaries: dict[str, stats.Summary]
) -> list[ModelFigures]:
    figures = []
    for model in cached_models():
        plan = plan_for(model)
        namespace = plan.keys.namespace
        figures.append(
            ModelFigures(
                label=plan.keys.label,
                name=str(model._meta.verbose_name_plural),
                plan=plan,
                keys=sample.key_count(namespace) if sample else 0.0,
                keys_exact=bool(sample and sample.complete),
                memory=sample.bytes(namespace) if sample else None,
                summary=summaries.get(plan.keys.label),
            )
        )
    return sorted(figures, key=lambda f: f.label)


@dataclasses.dataclass
class WriteBehind:
    """A model's increments waiting in Redis, and how long they may have waited."""

    label: str
    pending: int  # (row, counter) pairs not yet claimed by a flush
    in_flight: int  # pairs of batches claimed and not yet acknowledged
    oldest_claim_s: float | None  # age of the oldest batch in flight
    waiting_s: float | None  # pending for at most this long (see docs/admin.md)
    never_flushed: bool  # a stripe holds increments and no batch of it is recorded

    @property
    def is_stalled(self) -> bool:
        limit = max(60.0, 10 * float(conf.WRITE_BEHIND["INTERVAL"]))
        reclaim = float(conf.WRITE_BEHIND["RECLAIM_AFTER"])
        late_claim = self.oldest_claim_s is not None and self.oldest_claim_s > reclaim
        return late_claim or (self.waiting_s is not None and self.waiting_s > limit)


@fail_open
def _stripes(plan: ModelPlan) -> list[Any]:
    pipe = topology().pipeline()
    for index in range(plan.stripes):
        keys = plan.keys.stripe(index)
        pipe.hlen(keys.pending)
        pipe.hlen(keys.claimed)
        pipe.get(keys.claim)
    return list(pipe.execute())


def write_behind() -> list[WriteBehind]:
    """Pending increments by model. A stripe's pending hash is renamed away by each claim,
    so what it holds arrived after its last batch was claimed, just before it was applied."""
    now_ms = time.time() * 1000
    return [_write_behind(plan_for(model), now_ms) for model in counter_models()]


def _write_behind(plan: ModelPlan, now_ms: float) -> WriteBehind:
    out = _stripes(plan)
    last = dict(
        CounterBatch.objects.filter(model=plan.keys.label)
        .values("stripe")
        .annotate(last=Max("applied_at"))
        .values_list("stripe", "last")
    )
    holding = [index for index in range(plan.stripes) if out[3 * index]]
    claims = [(now_ms - claim_parts(claim)[1]) / 1000 for claim in out[2::3] if claim]
    return WriteBehind(
        label=plan.keys.label,
        pending=sum(out[0::3]),
        in_flight=sum(out[1::3]),
        oldest_claim_s=max(claims, default=None),
        waiting_s=max((_age(last[i]) for i in holding if i in last), default=None),
        never_flushed=any(i not in last for i in holding),
    )


def _age(when: datetime.datetime) -> float:
    return (timezone.now() - when).total_seconds()


@dataclasses.dataclass
class Overview:
    server: Server | None
    sample: KeySample | None
    models: list[ModelFigures]
    write_behind: list[WriteBehind]
    batches: list[CounterBatch]
    dead_letters: list[DeadLetter]
    dead_letter_count: int
    error: str | None = None


def gather() -> Overview:
    """Every figure of the overview; with Redis unavailable, the database figures only."""
    summaries: dict[str, stats.Summary] = {}
    info = sample = None
    counters: list[WriteBehind] = []
    error = None
    try:
        summaries = stats.read(WINDOW)
        info = server_figures(summaries)
        sample = sample_keys(plan_for(m).keys.namespace for m in cached_models())
        counters = write_behind()
    except (Unavailable, *REDIS_ERRORS) as exc:
        error = str(exc) or type(exc).__name__
    return Overview(
        server=info,
        sample=sample,
        models=model_figures(sample, summaries),
        write_behind=counters,
        batches=list(CounterBatch.objects.order_by("-applied_at")[:RECENT]),
        dead_letters=list(DeadLetter.objects.order_by("-created_at")[:RECENT]),
        dead_letter_count=DeadLetter.objects.count(),
        error=error,
    )
