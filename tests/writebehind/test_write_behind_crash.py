"""Write-behind is exactly-once with real Celery workers: killed mid-flush, two at once,
and Redis stopped while increments keep coming.

Writers (threads and forked processes) call ``Profile.cached.incr`` on random rows and add
what they incremented into shared memory; at the end every database counter must equal its
start plus those sums, exactly. The workers record every flush step to a file (see
:mod:`tests.celery_app`), so the tests also check *how* the batches went: each batch applied
once, a batch left by a killed worker reclaimed, a batch committed but not acknowledged
acknowledged without being applied again.
"""

from __future__ import annotations

import multiprocessing
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_cachestrat import drain as drains
from django_cachestrat.breaker import breaker
from django_cachestrat.client import connection
from django_cachestrat.models import CounterBatch, DeadLetter
from django_cachestrat.plan import plan_for
from tests.celery_app import CRASH_POINTS
from tests.factories import ProfileFactory
from tests.servers import RedisServer
from tests.testapp.models import Profile
from tests.workers import Worker, Workers, read_events

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 50
START = 1_000_000  # far above what the negative increments of a run can take away
STEPS = [-3, -2, -1, 1, 2, 3, 5, 8]  # increments drawn at random, negatives included
RECLAIM_AFTER = 0.5
FORK = multiprocessing.get_context("fork")


def write_behind(**options: Any) -> dict[str, Any]:
    """CACHESTRAT with these WRITE_BEHIND options (the workers are given the same)."""
    return {**settings.CACHESTRAT, "WRITE_BEHIND": options}


# -- writers --------------------------------------------------------------------------------


def _write(
    pks: list[int],
    sums: Any,
    calls: Any,
    steps: list[int],
    seed: int,
    stop: Any,
    pause: Any,
    parked: Any,
) -> None:
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            if pause.is_set():
                with parked.get_lock():
                    parked.value += 1
                while pause.is_set() and not stop.is_set():
                    time.sleep(0.001)
                with parked.get_lock():
                    parked.value -= 1
                continue
            i = rng.randrange(len(pks))
            by = rng.choice(steps)
            Profile.cached.incr(pks[i], "likes", by=by)
            sums[i] += by  # counted once incr() has returned: the increment is accepted
            calls.value += 1
            time.sleep(0.0005)  # leave the two-core machine some room for the workers
    finally:
        connections.close_all()


class Writers:
    """Threads and forked processes incrementing random rows until stopped.

    Each writer adds what it incremented into its own shared array (no lock needed), so the
    exact expected value of every row is known at the end. ``pause_all()`` parks every writer
    between two increments, so nothing is in flight while the test acts.
    """

    def __init__(self, pks: list[int], threads: int, processes: int, steps: list[int]) -> None:
        self.pks = pks
        self.steps = steps
        self.stop_event = FORK.Event()
        self.pause = FORK.Event()
        self.parked = FORK.Value("i", 0)
        count = threads + processes
        self.sums = [FORK.Array("q", len(pks), lock=False) for _ in range(count)]
        self.calls = [FORK.Value("q", 0, lock=False) for _ in range(count)]
        self.kinds = ["process"] * processes + ["thread"] * threads
        self.runners: list[Any] = []

    def start(self) -> Writers:
        # Processes first, while this process has no other thread; no connection is shared.
        connections.close_all()
        for n, kind in enumerate(self.kinds):
            args = (self.pks, self.sums[n], self.calls[n], self.steps, n, self.stop_event)
            args += (self.pause, self.parked)
            factory = FORK.Process if kind == "process" else threading.Thread
            runner = factory(target=_write, args=args, daemon=True)
            runner.start()
            self.runners.append(runner)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for runner in self.runners:
            runner.join(30)
        for runner, kind in zip(self.runners, self.kinds, strict=True):
            if kind == "process":
                if runner.is_alive():
                    runner.kill()
                    runner.join(5)
                assert runner.exitcode == 0, f"a writer process exited with {runner.exitcode}"
            else:
                assert not runner.is_alive(), "a writer thread did not stop"

    def pause_all(self, timeout: float = 10) -> None:
        self.pause.set()
        deadline = time.monotonic() + timeout
        while self.parked.value < len(self.runners):
            assert time.monotonic() < deadline, "the writers did not pause"
            time.sleep(0.005)

    def resume(self) -> None:
        self.pause.clear()

    def totals(self) -> dict[int, int]:
        return {pk: sum(s[i] for s in self.sums) for i, pk in enumerate(self.pks)}

    def increments(self) -> int:
        return sum(c.value for c in self.calls)

    def __enter__(self) -> Writers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self.stop_event.is_set():
            self.stop_event.set()
            for runner in self.runners:
                runner.join(30)
                if isinstance(runner, multiprocessing.process.BaseProcess) and runner.is_alive():
                    runner.kill()


# -- helpers --------------------------------------------------------------------------------


def make_rows(likes: int = START) -> list[int]:
    return [p.pk for p in ProfileFactory.create_batch(ROWS, likes=likes)]


def in_flight() -> list[str]:
    """The write-behind keys still holding increments: pending, claimed, or a claim."""
    plan = plan_for(Profile)
    client = connection()
    keys = [key for i in range(plan.stripes) for key in plan.keys.stripe(i)[:3]]
    return [key for key, exists in zip(keys, map(client.exists, keys), strict=True) if exists]


def drain(worker: Worker, timeout: float = 30) -> int:
    """Ask ``worker`` to flush until Redis holds no increment; return how many flushes."""
    deadline = time.monotonic() + timeout
    sent = 0
    while in_flight():
        assert worker.alive(), f"the worker died:\n{worker.output()}"
        assert time.monotonic() < deadline, f"still in flight: {in_flight()}"
        worker.flush()
        sent += 1
        time.sleep(0.25)
    return sent


def assert_exact(pks: list[int], expected: dict[int, int]) -> None:
    values = dict(Profile.objects.filter(pk__in=pks).values_list("pk", "likes"))
    wrong = {pk: (values[pk], expected[pk]) for pk in pks if values[pk] != expected[pk]}
    assert not wrong, f"{len(wrong)} rows off (database, expected): {wrong}"
    assert not DeadLetter.objects.exists()


def assert_each_batch_applied_once(events: list[dict[str, Any]]) -> None:
    """Every recorded batch was applied by exactly one flusher; any other flusher that met
    it found it recorded and only acknowledged it."""
    firsts = Counter(e["batch"] for e in events if e["event"] == "applied" and not e["duplicate"])
    assert firsts, "no batch was applied"
    twice = {batch: n for batch, n in firsts.items() if n > 1}
    assert not twice, f"batches applied more than once: {twice}"
    assert set(firsts) == set(CounterBatch.objects.values_list("id", flat=True))


@pytest.fixture
def events() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cachestrat-events-") as directory:
        yield Path(directory) / "events.jsonl"


# -- (a) workers killed at every point of a flush -------------------------------------------


class Chaos:
    """Crash workers started one after another, each set to die at the next point of
    :data:`CRASH_POINTS` (and ``random``), a few alive at once, each asked to flush until it
    dies; one that has not died after a while is stopped and replaced."""

    CYCLE = (*CRASH_POINTS, "random")

    def __init__(self, workers: Workers, slots: int = 3, patience: float = 3.0) -> None:
        self.workers = workers
        self.slots: list[dict[str, Any] | None] = [None] * slots
        self.patience = patience
        self.turn = 0
        self.survived = 0

    def start_next(self) -> dict[str, Any]:
        crash_at = self.CYCLE[self.turn % len(self.CYCLE)]
        self.turn += 1
        worker = self.workers.start(crash_at=crash_at, chance=0.5)
        return {"worker": worker, "ready": None, "asked": 0.0}

    def step(self) -> None:
        now = time.monotonic()
        for n, slot in enumerate(self.slots):
            if slot is None:
                self.slots[n] = self.start_next()
                continue
            worker: Worker = slot["worker"]
            if not worker.alive():
                assert worker.killed, f"the worker did not die by SIGKILL:\n{worker.output()}"
                self.slots[n] = None
            elif slot["ready"] is None:
                if worker.ready_file.exists():
                    slot["ready"] = now
            elif now - slot["ready"] > self.patience:
                worker.stop()  # nothing it could claim in time: make room for the next one
                self.survived += 1
                self.slots[n] = None
            elif now - slot["asked"] > 0.3:
                worker.flush()
                slot["asked"] = now

    def stop(self) -> None:
        for slot in self.slots:
            if slot is not None:
                slot["worker"].stop()


def kill_at(workers: Workers, point: str, pks: list[int], extra: dict[int, int]) -> int:
    """Make sure one worker dies at ``point``: increment a few rows (added to ``extra``),
    then ask a worker set to die there for sure to flush until it does; return its pid."""
    for pk in pks[:5]:
        Profile.cached.incr(pk, "likes", by=2)
        extra[pk] = extra.get(pk, 0) + 2
    worker = workers.start(crash_at=point, chance=1.0).wait_ready()
    deadline = time.monotonic() + 15
    while worker.alive():
        assert time.monotonic() < deadline, f"no kill at {point}:\n{worker.output()}"
        worker.flush()
        worker.wait_exit(0.3)
    assert worker.killed, worker.output()
    return worker.pid  # type: ignore[return-value]


def test_workers_killed_at_every_point_of_a_flush_lose_and_repeat_nothing(events):
    started = time.monotonic()
    with override_settings(CACHESTRAT=write_behind(RECLAIM_AFTER=RECLAIM_AFTER, BATCH_SIZE=4)):
        pks = make_rows()
        extra: dict[int, int] = {}
        with Workers(events) as workers, Writers(pks, threads=3, processes=2, steps=STEPS) as w:
            chaos = Chaos(workers)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                chaos.step()
                time.sleep(0.05)
            w.stop()
            chaos.stop()
            kills = Counter(e["point"] for e in read_events(events) if e["event"] == "killed")
            for point in CRASH_POINTS:  # the random draws missed a point: hit it for sure
                if not kills[point]:
                    kill_at(workers, point, pks, extra)
            # The last one leaves a batch committed but not acknowledged to the clean worker.
            last = kill_at(workers, "after_commit", pks, extra)
            clean = workers.start().wait_ready()
            time.sleep(RECLAIM_AFTER)  # the last dead worker's claim can be reclaimed
            drain(clean)
            clean.stop()
        assert drains.drain_all() == []  # nothing left in flight

        totals = w.totals()
        assert_exact(pks, {pk: START + totals[pk] + extra.get(pk, 0) for pk in pks})

    log = read_events(events)
    assert_each_batch_applied_once(log)
    kills = Counter(e["point"] for e in log if e["event"] == "killed")
    assert all(kills[point] for point in CRASH_POINTS), kills
    killed = {(e["point"], e["batch"]) for e in log if e["event"] == "killed" and e["batch"]}
    reclaimed = {e["batch"] for e in log if e["event"] == "claimed" and e["reclaimed"]}
    duplicates = {e["batch"] for e in log if e["event"] == "applied" and e["duplicate"]}
    firsts = {e["batch"] for e in log if e["event"] == "applied" and not e["duplicate"]}
    for point, batch in killed:
        assert batch in reclaimed, f"batch {batch} killed {point} was never reclaimed"
        if point == "after_commit":
            assert batch in duplicates, f"batch {batch} committed, not acknowledged: re-applied?"
        else:
            assert batch in firsts, f"batch {batch} killed {point} was never applied"
    assert reclaimed and duplicates
    (left,) = [e["batch"] for e in log if e["event"] == "killed" and e["pid"] == last]
    by_clean = [e for e in log if e["pid"] == clean.pid and e["event"] == "applied"]
    assert any(e["batch"] == left and e["duplicate"] for e in by_clean), (
        "the clean worker did not acknowledge the batch left committed, unacknowledged"
    )
    print(
        f"\n(a) {w.increments()} increments by {len(w.runners)} writers, "
        f"{sum(kills.values())} workers killed {dict(kills)}, {chaos.survived} stopped alive, "
        f"{len(firsts)} batches, {len(reclaimed)} reclaimed, {len(duplicates)} committed but "
        f"not acknowledged then acknowledged only, {len(by_clean)} applied or acknowledged "
        f"by the clean worker, {time.monotonic() - started:.1f}s"
    )


# -- (b) two workers flushing at once -------------------------------------------------------


def test_two_workers_flushing_at_once_apply_each_batch_once(events):
    """The claim is reclaimable after 50 ms and a flush holds its transaction 200 ms, so the
    two workers keep meeting on the same batch, both trying to apply it."""
    started = time.monotonic()
    with override_settings(CACHESTRAT=write_behind(RECLAIM_AFTER=0.05, BATCH_SIZE=4)):
        pks = make_rows()
        with Workers(events) as workers:
            pair = [workers.start(slow_apply=0.2) for _ in range(2)]
            for worker in pair:
                worker.wait_ready()
            with Writers(pks, threads=3, processes=2, steps=STEPS) as w:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    for worker in pair:
                        worker.flush()
                    time.sleep(0.25)
                w.stop()
            flushes = drain(pair[0])
            for worker in pair:
                assert worker.alive(), worker.output()
                worker.stop()
        assert drains.drain_all() == []
        totals = w.totals()
        assert_exact(pks, {pk: START + totals[pk] for pk in pks})

    log = read_events(events)
    assert_each_batch_applied_once(log)
    by_worker = Counter(e["pid"] for e in log if e["event"] == "acknowledged")
    assert len(by_worker) == 2, by_worker  # both flushed
    duplicates = [e for e in log if e["event"] == "applied" and e["duplicate"]]
    assert duplicates, "the two workers never met on one batch"
    firsts = sum(1 for e in log if e["event"] == "applied" and not e["duplicate"])
    print(
        f"\n(b) {w.increments()} increments, {firsts} batches applied by 2 workers "
        f"{sorted(by_worker.values())}, {len(duplicates)} met by both and acknowledged only, "
        f"{flushes} final flushes, {time.monotonic() - started:.1f}s"
    )


# -- (c) Redis stopped while increments keep coming -----------------------------------------


def test_redis_stopped_mid_run_keeps_every_increment_exactly(events):
    """Increments made while Redis is down go to the database directly; the ones pending in
    Redis when it stopped are still there after it restarts (append-only file), and flushed."""
    started = time.monotonic()
    directory = tempfile.TemporaryDirectory(prefix="cachestrat-redis-")
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always", "--dir", directory.name)
    server.start()
    caches = server.caches()
    options = write_behind(RECLAIM_AFTER=RECLAIM_AFTER, BATCH_SIZE=4)
    options["BREAKER_COOLDOWN"] = 0.5
    steps = [1, 2, 3, 5]  # positive: the database can only grow during the outage
    try:
        with override_settings(CACHES=caches, CACHESTRAT=options), Workers(events) as workers:
            breaker.reset()
            pks = make_rows(likes=0)
            worker = workers.start().wait_ready()
            with Writers(pks, threads=2, processes=2, steps=steps) as w:
                flush_for(worker, 1.5)
                w.pause_all()  # nothing in flight when Redis stops (see the test below)
                before_outage = sum(w.totals().values())
                held = len(in_flight())
                server.stop()
                database_before = db_total(pks)
                w.resume()
                time.sleep(1.5)  # increments now go to the database directly
                w.pause_all()
                outage = sum(w.totals().values()) - before_outage
                database_during = db_total(pks) - database_before
                server.start()
                w.resume()
                flush_for(worker, 1.5)
                w.stop()
            time.sleep(RECLAIM_AFTER)  # a flush cut by the stop left a claim: reclaim it
            flushes = drain(worker)
            assert drains.drain_all() == []
            totals = w.totals()
            assert_exact(pks, totals)
            assert outage > 0, "no increment was made while Redis was down"
            assert database_during >= outage, "increments made while Redis was down are missing"
    finally:
        server.stop()
        directory.cleanup()
        breaker.reset()
    assert_each_batch_applied_once(read_events(events))
    print(
        f"\n(c) {w.increments()} increments, {held} stripe keys in flight at the stop, "
        f"{outage} (sum) made while Redis was down, "
        f"{CounterBatch.objects.count()} batches, {flushes} final flushes, "
        f"{time.monotonic() - started:.1f}s"
    )


def flush_for(worker: Worker, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.flush()
        time.sleep(0.25)


def db_total(pks: list[int]) -> int:
    return sum(Profile.objects.filter(pk__in=pks).values_list("likes", flat=True))


def test_an_increment_that_times_out_in_a_slow_redis_is_counted_once():
    """Redis busy longer than SOCKET_TIMEOUT: incr() gives up and writes to the database,
    then Redis runs the increment it had already received; the increment is settled (undone
    in Redis) before the flush, so it counts once."""
    server = RedisServer("--enable-debug-command", "yes")
    server.start()
    caches = server.caches()
    try:
        with override_settings(CACHES=caches):
            breaker.reset()
            pk = ProfileFactory(likes=0).pk
            Profile.cached.incr(pk, "likes", by=1)
            busy = threading.Thread(target=sleep_redis, args=(server.port, 2))
            busy.start()
            wait_until_asleep(server.port)  # the next command waits in Redis's socket
            Profile.cached.incr(pk, "likes", by=5)  # times out: written to the database
            busy.join()
            plan = plan_for(Profile)
            pending = plan.keys.stripe(plan.keys.stripe_of(pk, plan.stripes)).pending
            deadline = time.monotonic() + 2
            while connection().hget(pending, f"likes:{pk}") != b"6":  # Redis ran it anyway
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            drains.drain_all()
            assert Profile.objects.get(pk=pk).likes == 6
    finally:
        server.stop()
        breaker.reset()


def sleep_redis(port: int, seconds: float) -> None:
    with redis.Redis(port=port) as client:
        client.execute_command("DEBUG", "SLEEP", seconds)


def wait_until_asleep(port: int) -> None:
    """Return once Redis stops answering (it is running ``DEBUG SLEEP``)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with redis.Redis(port=port, socket_timeout=0.05, retry=Retry(NoBackoff(), 0)) as client:
            try:
                client.ping()
            except redis.TimeoutError:
                return
        time.sleep(0.005)
    raise RuntimeError("Redis never went to sleep")  # not the failure the xfail expects
