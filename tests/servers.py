"""A throwaway redis-server on a spare loopback port, started and stopped by pid, and a
proxy that loses its traffic on demand."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from threading import Event
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port(taken: frozenset[int] = frozenset()) -> int:
    """A spare port below 55536 whose cluster bus port (10000 higher) is spare too, and
    neither of which is one of ``taken`` (the ports of nodes chosen but not yet started)."""
    while True:
        port = random.randrange(20000, 45000)
        if {port, port + 10000} & taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class RedisServer:
    """``redis-server`` on 127.0.0.1 that a test can stop and start again on the same port."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def caches(self) -> dict[str, Any]:
        """A ``CACHES`` setting whose default cache is this server (short timeouts)."""
        return {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": self.url,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            }
        }

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # answering PING: up, and done loading its data
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                    if client.ping():
                        return
            except redis.AuthenticationError:  # answering, but only to its password
                return
            except redis.ConnectionError:  # refused, or still LOADING an append-only file
                time.sleep(0.02)
        self.stop()  # not left running behind the failed test
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class LossyProxy:
    """A TCP proxy in front of a Redis server that loses script calls on demand.

    ``lose_replies``: a script call (``EVALSHA``) reaches Redis and runs, its reply never
    comes back (the client times out after Redis applied it). ``lose_commands``: a script
    call is swallowed before Redis sees it. Other commands (the connection handshake, plain
    reads) pass either way.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_replies = False
        self.lose_commands = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            losing = Event()  # the replies of this connection are being lost
            for pipe in (self._commands, self._replies):
                threading.Thread(target=pipe, args=(client, server, losing), daemon=True).start()

    def _commands(self, client: socket.socket, server: socket.socket, losing: Event) -> None:
        with _closing(client, server):
            while data := client.recv(65536):
                script = b"EVALSHA" in data.upper()
                if script and self.lose_commands:
                    continue
                if script and self.lose_replies:
                    losing.set()
                server.sendall(data)

    def _replies(self, client: socket.socket, server: socket.socket, losing: Event) -> None:
        with _closing(client, server):
            while data := server.recv(65536):
                if not losing.is_set():
                    client.sendall(data)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def _closing(*sockets: socket.socket) -> Iterator[None]:
    """Shut both ends down when one side of a proxied connection ends."""
    try:
        yield
    except OSError:
        pass
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LocalCluster:
    """Six ``redis-server`` processes in cluster mode (three primaries, one replica each) on
    spare loopback ports, joined by ``redis-cli --cluster create`` and stopped by pid."""

    def __init__(self, directory: str, nodes: int = 6) -> None:
        self.nodes = nodes
        self._place(directory)

    def _place(self, directory: str) -> None:
        """Choose the nodes' ports, and the folder of their configuration files and logs."""
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.servers: list[RedisServer] = []
        taken: set[int] = set()
        for i in range(self.nodes):
            port = free_cluster_port(frozenset(taken))
            taken |= {port, port + 10000}
            self.servers.append(self._server(directory, i, port))

    @staticmethod
    def _server(directory: str, i: int, port: int) -> RedisServer:
        return RedisServer(
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"{directory}/nodes-{i}.conf",
            "--cluster-node-timeout",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
            # Replicas are listed in CLUSTER SLOTS once their offset moved: a ping
            # from the primary every second moves it soon after the start.
            "--repl-ping-replica-period",
            "1",
            "--dir",
            directory,
            "--logfile",
            f"{directory}/node-{i}.log",
            port=port,
        )

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def start(self) -> None:
        """Start and join the nodes. A cluster that does not become ready is started once
        more from scratch, on new ports, and why the first did not is printed (it is a
        fault of the machine's moment, not of what the tests check)."""
        try:
            self._start()
        except (RuntimeError, subprocess.SubprocessError) as first:
            print(f"\nStarting the local Redis Cluster again: {first}", file=sys.__stderr__)
            self.stop()
            self._place(os.path.join(self.directory, "again"))
            self._start()

    def _start(self) -> None:
        for server in self.servers:
            server.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=30,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every node says ``cluster_state:ok`` and every replica's link is up."""
        from redis import Redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ready(Redis(port=port)) for port in self.live_ports()):
                return
            time.sleep(0.05)
        states = {port: self._state(port) for port in self.live_ports()}
        logs = ""
        for i in range(len(self.servers)):
            with contextlib.suppress(OSError), open(f"{self.directory}/node-{i}.log") as log:
                logs += f"\n-- node {i}:\n" + "".join(log.readlines()[-15:])
        raise RuntimeError(f"the local Redis Cluster did not become ready: {states}{logs}")

    @staticmethod
    def _state(port: int) -> Any:
        """What a node says of itself, for the error when the cluster is not ready."""
        from redis import Redis

        try:
            with Redis(port=port, socket_timeout=2) as client:
                info = client.info("replication")
                return {
                    "cluster_state": client.cluster("INFO").get("cluster_state"),
                    "slot_entries": [len(e) for e in client.execute_command("CLUSTER SLOTS")],
                    "role": info["role"],
                    "link": info.get("master_link_status"),
                    "offset": info.get("slave_repl_offset", info.get("master_repl_offset")),
                }
        except Exception as error:
            return repr(error)

    def live_ports(self) -> list[int]:
        return [s.port for s in self.servers if s.process is not None]

    @staticmethod
    def _ready(client: Any) -> bool:
        try:
            with client:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
                # Every node's slot table lists a replica per range (clients build on it).
                if any(len(entry) < 4 for entry in client.execute_command("CLUSTER SLOTS")):
                    return False
                info = client.info("replication")
                return info["role"] == "master" or info.get("master_link_status") == "up"
        except Exception:  # a node still loading answers with errors
            return False

    def client(self, **options: Any) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode("127.0.0.1", port) for port in self.live_ports()]
        return RedisCluster(startup_nodes=nodes, **options)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
