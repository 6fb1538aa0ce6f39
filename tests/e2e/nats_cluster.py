"""A three-node NATS cluster of the Sail's configuration (sail.server_config, each node
with the routes to the others) on loopback ports, started and stopped by a test."""

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sail import keys, server_config

NATS_SERVER = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
    "nats-server"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Node:
    number: int
    port: int
    cluster_port: int
    http_port: int
    root: Path
    proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"sail-{self.number}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    def __init__(self, root: Path, secret: str, size: int = 3):
        assert NATS_SERVER is not None, "needs the nats-server binary"
        self.root, self.secret = root, secret
        self.nodes = [
            Node(n, free_port(), free_port(), free_port(), root / f"node-{n}")
            for n in range(1, size + 1)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: the coordinator's and the Islands' NATS_URL."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> "NatsCluster":
        routes = tuple(f"127.0.0.1:{node.cluster_port}" for node in self.nodes)
        for node in self.nodes:
            node.root.mkdir(parents=True, exist_ok=True)
            config = node.root / "nats.conf"
            config.write_text(
                server_config.render(
                    server_config.Server(
                        "127.0.0.1", node.port, str(node.root / "js"), node.http_port, node.name
                    ),
                    keys.CoordinatorKeys.from_secret(self.secret),
                    cluster=server_config.Cluster(
                        node.cluster_port, routes, keys.route_password(self.secret)
                    ),
                )
            )
            log = (node.root / "nats.log").open("ab")
            node.proc = subprocess.Popen(
                [NATS_SERVER, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_for_meta_leader()
        return self

    def wait_for_meta_leader(self, timeout: float = 30.0) -> str:
        """The JetStream meta leader's name, once the surviving nodes agree on one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.running:
                    continue
                try:
                    jsz = httpx.get(f"http://127.0.0.1:{node.http_port}/jsz", timeout=1).json()
                except (httpx.HTTPError, ValueError):
                    continue
                leader = (jsz.get("meta_cluster") or {}).get("leader")
                if leader:
                    return leader
            time.sleep(0.1)
        raise RuntimeError("the NATS cluster elected no JetStream leader")

    def kill(self, node: Node) -> None:
        """SIGKILL: the node is gone at once, as in a crash (no leadership hand-over)."""
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.running:
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
