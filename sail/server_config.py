"""The nats-server configuration of the Sail: accounts, users and the auth callout.

One function renders it for every place that runs a server: ``make run``'s embedded
server, the test suite's own server and docker-compose's (``python -m
sail.server_config``, below). It holds public keys and a bcrypt hash only.

- Account ``APP`` (JetStream): the coordinator's processes and the auth callout, as
  static nkey users; every Island with a key, placed here by the callout with the
  permissions of sail.permissions.
- Account ``FIELD`` (no JetStream): the shared ``user:password`` of upstream agents, when
  ``SAIL_FIELD_PASSWORD`` is set. What it publishes reaches ``APP`` as ``field.…``; it
  hears only what the coordinator publishes under ``field.`` for field Islands.
- Account ``SYS``: the coordinator's system user, which disconnects revoked Islands.

A cluster (``Cluster``): every node gets this same configuration plus a ``cluster`` block
with the routes to the others, its own ``server_name`` and a route user whose password
derives from ``SAIL_SECRET`` (keys.route_password); the cluster port belongs on a private
network. Streams keep ``SAIL_STREAM_REPLICAS`` copies (sail.streams).

Nobody connects anonymously: a client that is none of the static users is handed to the
auth callout (pairing.callout), which admits a valid key signature or refuses.

Imports no Django: the launcher renders it before Django starts.
"""

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import bcrypt

from sail import keys, permissions
from sail.permissions import FIELD_REPORTS, TO_ISLAND
from sail.subjects import PAIRING, REGISTER

APP, FIELD, SYS = "APP", "FIELD", "SYS"
# The largest message: a job's assignment carries its input, which may be an image of
# JOB_IMAGE_MAX_BYTES (8 MiB, about 11 MiB in base64); NATS's default is 1 MiB.
MAX_PAYLOAD = 16 * 1024 * 1024
ROUTE_USER = "route"
FIELD_PREFIX = "field"


@dataclass(frozen=True)
class Server:
    """Where one nats-server listens and keeps its JetStream data."""

    host: str
    port: int
    store_dir: str
    http_port: int | None = None
    name: str = "sail"


@dataclass(frozen=True)
class Cluster:
    """The routes of one node of a cluster: ``routes`` holds every node's ``host:port``
    (its own too: a server skips a route to itself), ``password`` the route user's."""

    port: int
    routes: tuple[str, ...]
    password: str
    name: str = "sail"


def field_password_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=11)).decode()


def render(
    server: Server,
    coordinator: keys.CoordinatorKeys,
    *,
    field_user: str = "island",
    field_password_hash: str = "",
    cluster: Cluster | None = None,
) -> str:
    """The configuration text (JSON, which nats-server reads as its own syntax)."""
    config: dict[str, Any] = {
        "server_name": server.name,
        "listen": f"{server.host}:{server.port}",
        "jetstream": {"store_dir": server.store_dir},
        "max_payload": MAX_PAYLOAD,
        "accounts": {
            APP: _app(coordinator),
            FIELD: _field(field_user, field_password_hash),
            SYS: {"users": [{"nkey": keys.public_key(coordinator.system)}]},
        },
        "system_account": SYS,
        "authorization": {
            "auth_callout": {
                "issuer": keys.public_key(coordinator.issuer),
                "account": APP,
                # Static users never wait for the callout (they work while it is down).
                "auth_users": _static_users(coordinator, field_user if field_password_hash else ""),
                # Only APP's users are the callout's to judge; a wrong field password is
                # refused by the server itself and never reaches the callout.
                "allowed_accounts": [APP],
            }
        },
    }
    if server.http_port:
        config["http"] = f"{server.host}:{server.http_port}"
    if cluster is not None:
        config["cluster"] = _cluster(server.host, cluster)
    return json.dumps(config, indent=2) + "\n"


def _cluster(host: str, cluster: Cluster) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "listen": f"{host}:{cluster.port}",
        "authorization": {"user": ROUTE_USER, "password": cluster.password},
        "routes": [f"nats-route://{ROUTE_USER}:{cluster.password}@{r}" for r in cluster.routes],
        # Clients keep to the URLs they were given: the nodes' addresses inside a private
        # network mean nothing to an Island outside it.
        "no_advertise": True,
    }


def _static_users(coordinator: keys.CoordinatorKeys, field_user: str) -> list[str]:
    users = [keys.public_key(seed) for seed in (coordinator.coordinator, coordinator.callout)]
    users.append(keys.public_key(coordinator.system))
    return [*users, field_user] if field_user else users


def _app(coordinator: keys.CoordinatorKeys) -> dict[str, Any]:
    field_in = [
        *(f"host.*.{kind}" for kind in FIELD_REPORTS),
        REGISTER,
    ]
    return {
        "jetstream": "enabled",
        "users": [
            {
                "nkey": keys.public_key(coordinator.coordinator),
                # The callout's requests carry other clients' credentials.
                "permissions": {"subscribe": {"deny": [permissions.AUTH_REQUESTS]}},
            },
            {
                "nkey": keys.public_key(coordinator.callout),
                # Answers auth requests, and nothing else (allow_responses alone
                # denies every other publish).
                "permissions": {
                    "subscribe": {"allow": [permissions.AUTH_REQUESTS]},
                    "allow_responses": True,
                },
            },
        ],
        "imports": [
            {"stream": {"account": FIELD, "subject": subject}, "prefix": FIELD_PREFIX}
            for subject in field_in
        ],
        "exports": [
            *(
                {"stream": f"{FIELD_PREFIX}.host.*.{kind}", "accounts": [FIELD]}
                for kind in TO_ISLAND
            ),
            {"service": f"{FIELD_PREFIX}.{PAIRING}", "accounts": [FIELD]},
            {"service": f"{FIELD_PREFIX}.host.*.ping", "accounts": [FIELD]},
        ],
    }


def _field(user: str, password_hash: str) -> dict[str, Any]:
    account: dict[str, Any] = {
        "exports": [
            *({"stream": f"host.*.{kind}", "accounts": [APP]} for kind in FIELD_REPORTS),
            {"stream": REGISTER, "accounts": [APP]},
        ],
        "imports": [
            *(
                {
                    "stream": {"account": APP, "subject": f"{FIELD_PREFIX}.host.*.{kind}"},
                    "to": f"host.*.{kind}",
                }
                for kind in TO_ISLAND
            ),
            {"service": {"account": APP, "subject": f"{FIELD_PREFIX}.{PAIRING}"}, "to": PAIRING},
            {
                "service": {"account": APP, "subject": f"{FIELD_PREFIX}.host.*.ping"},
                "to": "host.*.ping",
            },
        ],
    }
    if password_hash:
        account["users"] = [
            {"user": user, "password": password_hash, "permissions": permissions.field_user()}
        ]
    return account


def main(argv: list[str]) -> int:
    """``python -m sail.server_config --out FILE``: the configuration for docker-compose's
    nats service, from SAIL_SECRET and SAIL_FIELD_USER / SAIL_FIELD_PASSWORD; with
    ``--routes nats-1:6222,nats-2:6222,nats-3:6222 --node 2``, that of the cluster's
    second node."""
    parser = argparse.ArgumentParser(prog="python -m sail.server_config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - inside its container
    parser.add_argument("--port", type=int, default=4222)
    parser.add_argument("--http-port", type=int, default=8222)
    parser.add_argument("--store-dir", default="/data")
    parser.add_argument("--routes", default="", help="every node's host:port, comma-separated")
    parser.add_argument("--node", type=int, default=0, help="this node's place in --routes, from 1")
    options = parser.parse_args(argv)
    secret = os.environ.get("SAIL_SECRET", "")
    if not secret:
        print("SAIL_SECRET is not set (see .env.example)", file=sys.stderr)  # noqa: T201
        return 2
    routes = tuple(route.strip() for route in options.routes.split(",") if route.strip())
    if routes and not 1 <= options.node <= len(routes):
        print(f"--node must be between 1 and {len(routes)}", file=sys.stderr)  # noqa: T201
        return 2
    name, cluster = "sail", None
    if routes:
        name = f"sail-{options.node}"
        port = int(routes[options.node - 1].rsplit(":", 1)[1])
        cluster = Cluster(port, routes, keys.route_password(secret))
    password = os.environ.get("SAIL_FIELD_PASSWORD", "")
    text = render(
        Server(options.host, options.port, options.store_dir, options.http_port, name),
        keys.CoordinatorKeys.from_secret(secret),
        field_user=os.environ.get("SAIL_FIELD_USER") or "island",
        field_password_hash=field_password_hash(password) if password else "",
        cluster=cluster,
    )
    with open(options.out, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(options.out, 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
