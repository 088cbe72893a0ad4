"""A local Redis Cluster and Sentinel set for the tests, and CONNECTION factories for them."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.servers import LocalCluster, RedisServer, free_port

#: What the running fixtures serve; the factories below read it when Django calls them.
running: dict[str, Any] = {}

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def cluster_client() -> Any:
    """CONNECTION factory: a RedisCluster of the running local cluster."""
    return running["cluster"].client(**TIMEOUTS)


#: For the tests of a longer REDIS_REPLICA_WAIT: a WAIT may take longer than TIMEOUTS allow.
PATIENT = {"socket_timeout": 10.0, "socket_connect_timeout": 0.5}


def patient_cluster_client() -> Any:
    """CONNECTION factory: :func:`cluster_client` with a 10 s socket timeout."""
    return running["cluster"].client(**PATIENT)


def unreachable_cluster() -> Any:
    """CONNECTION factory: a RedisCluster whose startup node has nothing listening."""
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", running["dead_port"])], **TIMEOUTS)


def sentinel_client() -> Any:
    """CONNECTION factory: the primary of the running Sentinel set, through its sentinels."""
    from redis.sentinel import Sentinel

    sentinels = [("127.0.0.1", port) for port in running["sentinel"].sentinel_ports]
    return Sentinel(sentinels, **TIMEOUTS).master_for("cachestrat", **TIMEOUTS)


def patient_sentinel_client() -> Any:
    """CONNECTION factory: :func:`sentinel_client` with a 10 s socket timeout."""
    from redis.sentinel import Sentinel

    sentinels = [("127.0.0.1", port) for port in running["sentinel"].sentinel_ports]
    return Sentinel(sentinels, **TIMEOUTS).master_for("cachestrat", **PATIENT)


def flush_cluster(cluster: LocalCluster) -> None:
    for port in cluster.live_ports():
        from redis import Redis

        with Redis(port=port) as node:
            if node.info("replication")["role"] == "master":
                node.flushall()


class LocalSentinel:
    """One primary, one replica and three sentinels watching them, on loopback ports."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.primary = RedisServer("--repl-diskless-sync-delay", "0", "--dir", directory)
        self.replica = RedisServer("--repl-diskless-sync-delay", "0", "--dir", directory)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        from redis import Redis

        self.primary.start()
        self.replica.start()
        with Redis(port=self.replica.port) as replica:
            replica.replicaof("127.0.0.1", self.primary.port)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor cachestrat 127.0.0.1 {self.primary.port} 2\n"
                "sentinel down-after-milliseconds cachestrat 1000\n"
            )
            self.sentinels.append(
                subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError("the local Sentinel set did not become ready")

    def _ready(self) -> bool:
        from redis import Redis

        try:
            with Redis(port=self.replica.port) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.sentinel_ports:
                with Redis(port=port) as sentinel:
                    master = sentinel.sentinel_master("cachestrat")
                    if int(master.get("num-other-sentinels", 0)) < 2:
                        return False
        except Exception:  # not up yet
            return False
        return True

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.sentinels = []
        self.replica.stop()
        self.primary.stop()


def standalone_client() -> Any:
    """CONNECTION factory: the running standalone server named ``standalone``."""
    from redis import Redis

    return Redis(port=running["standalone"].port, **TIMEOUTS)
