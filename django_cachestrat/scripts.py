"""The Lua scripts of ``lua/``, run one at a time or many in one pipelined round trip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from .breaker import recovered
from .client import built, topology_for
from .cluster import Cluster
from .topology import ReplicaLag

__all__ = ["Call", "Script", "run_many", "scripts"]


class Script:
    """One Lua script from ``lua/``, run by EVALSHA and loaded again after a Redis restart."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath(f"lua/{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self._sha = self.sha.encode()  # bytes go out as they are: redis-py encodes no copy

    def __call__(self, client: Any, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        # One EVALSHA, no pipeline object: this is the write-behind increment's hot path.
        try:
            return client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self._sha, len(keys), *keys, *args)


Call = tuple[Script, Sequence[str], Sequence[Any]]


def run_many(
    client: Any, calls: Sequence[Call], reads: Sequence[str] = (), wait: bool = False
) -> list[Any]:
    """Run script calls in one pipelined round trip (two if Redis lost its script cache).

    ``reads``: keys to ``GET`` in the same round trip, before the scripts; their values
    come first in the result. On a cluster the pipeline routes each command by its keys
    (every script touches one slot) and sends to all nodes before reading; ``SCRIPT LOAD``
    goes to every primary. ``wait``: then ``WAIT 1`` on every primary written to that has a
    replica, in the same pipeline; :class:`ReplicaLag` if one was not acknowledged in time
    (the calls ran).
    """
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    # The app's own connection has its topology already (built once: for a Sentinel
    # primary, building one asks the sentinels for replicas).
    shape = built()
    shape = shape if shape is not None and shape.client is client else topology_for(client)
    if not reads and len(calls) == 1 and calls[0][1] and isinstance(shape, Cluster):
        script, keys, args = calls[0]  # straight to its node
        answer = shape.run_script(script.sha, keys, args, wait)
        if answer is not None:
            if not answer[1]:
                raise ReplicaLag()
            return [answer[0]]
        # Its node answered with a redirect or NOSCRIPT: on through the pipeline.
    probes = shape.guard(keys[0] for _, keys, _ in calls if keys)  # every script: one slot
    targets = shape.wait_targets(keys[0] for _, keys, _ in calls if keys) if wait else []
    acknowledged: list[Any] = []
    values: list[Any] = []
    for attempt in (1, 2):
        pipe = shape.pipeline()
        if attempt == 1:
            for key in reads:
                pipe.get(key)
        for i in todo:
            script, keys, args = calls[i]
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        shape.add_waits(pipe, targets)
        out = pipe.execute(raise_on_error=False)
        recovered(probes)
        if attempt == 1:
            values, out = out[: len(reads)], out[len(reads) :]
            for value in values:
                if isinstance(value, Exception):
                    raise value
        out, acknowledged = out[: len(todo)], out[len(todo) :]
        missing = []
        for i, reply in zip(todo, out, strict=True):
            if isinstance(reply, NoScriptError) and attempt == 1:
                missing.append(i)
            elif isinstance(reply, Exception):
                raise reply
            results[i] = reply
        if not missing:
            break
        for script in {calls[i][0] for i in missing}:
            client.script_load(script.source)
        todo = missing
    for count in acknowledged:
        if isinstance(count, Exception):
            raise count
        if int(count) < 1:
            raise ReplicaLag()
    return [*values, *results]


class _Scripts:
    """The Lua scripts, each in its own file under ``lua/``."""

    def __init__(self) -> None:
        self.lease = Script("lease")
        self.fill = Script("fill")
        self.release = Script("release")
        self.incr = Script("incr")
        self.claim = Script("claim")
        self.ack = Script("ack")
        self.counts = Script("counts")
        self.cancel = Script("cancel")

    run_many = staticmethod(run_many)


scripts = _Scripts()
