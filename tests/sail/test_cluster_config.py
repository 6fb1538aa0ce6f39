"""A clustered Sail's configuration: docker-compose's ``cluster`` profile renders one
configuration per node that nats-server accepts, and the coordinator takes several server
URLs."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from config import stack
from sail.client import servers
from tests.conftest import BASE_DIR


def render_node(tmp_path: Path, node: int) -> subprocess.CompletedProcess:
    """Run the command of compose's sail-cluster-config for ``node``, into tmp_path."""
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    script = compose["services"]["sail-cluster-config"]["command"][-1]
    loop_body = script.split("; do ", 1)[1].split(" || exit 1")[0].replace("$$n", str(node))
    args = shlex.split(loop_body.replace("/etc/sail", str(tmp_path)))
    assert args[:3] == ["python", "-m", "sail.server_config"]
    env = {**os.environ, "SAIL_SECRET": "s" * 40}
    return subprocess.run(
        [sys.executable, *args[1:], "--store-dir", str(tmp_path / f"js-{node}")],
        env=env, cwd=BASE_DIR, capture_output=True, text=True,
    )  # fmt: skip


def test_the_cluster_profile_renders_three_nodes_that_the_server_accepts(tmp_path):
    names = set()
    for node in (1, 2, 3):
        made = render_node(tmp_path, node)
        assert made.returncode == 0, made.stderr
        path = tmp_path / f"nats-{node}.conf"
        checked = subprocess.run(
            [str(stack.VENV_BIN / "nats-server"), "-c", str(path), "-t"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        config = json.loads(path.read_text())
        names.add(config["server_name"])
        routes = config["cluster"]["routes"]
        assert [route.rsplit("@", 1)[1] for route in routes] == [
            "nats-1:6222",
            "nats-2:6222",
            "nats-3:6222",
        ]
        assert config["cluster"]["authorization"]["user"] == "route"
        assert "s" * 40 not in path.read_text()  # the route password derives from it
        assert "auth_callout" in config["authorization"]
    assert names == {"sail-1", "sail-2", "sail-3"}


def test_a_node_outside_the_routes_is_refused(tmp_path):
    made = render_node(tmp_path, 4)

    assert made.returncode == 2
    assert "--node must be between 1 and 3" in made.stderr
    assert not (tmp_path / "nats-4.conf").exists()


def test_the_coordinator_takes_a_comma_separated_list_of_servers():
    assert servers("nats://a:4222, nats://b:4222 ,nats://c:4222") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]


def test_an_empty_server_list_is_refused_by_name():
    with pytest.raises(ImproperlyConfigured, match="NATS_URL"):
        servers(" , ")
