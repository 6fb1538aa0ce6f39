"""`island workloads` and `island hosts` against the live server."""

import json
import uuid

from django.utils import timezone
from island_cli.api import EXIT_AUTH, EXIT_NOT_FOUND

from compute.models import Cargo, Island


def make_cargo(slug: str = "llm-chat", **fields) -> Cargo:
    defaults = {
        "name": "LLM Chat (Mistral 7B)",
        "category": Cargo.Category.choices[0][0],
        "runtime_type": Cargo.Runtime.choices[0][0],
        "price_per_job": "0.01",
        "required_vram_mb": 8000,
    }
    return Cargo.objects.create(slug=slug, **(defaults | fields))


def make_island(name: str, *, online: bool, karma: int) -> Island:
    return Island.objects.create(
        id=uuid.uuid4(),
        name=name,
        region="eu-west",
        karma=karma,
        status=Island.Status.ONLINE if online else Island.Status.OFFLINE,
        last_heartbeat_at=timezone.now() if online else None,
        capabilities={"gpu": "RTX 4090"},
    )


def test_workloads_list_shows_slug_name_runtime_price_and_enabled(run, live):
    cargo = make_cargo()

    result = run("--api-url", live.url, "workloads", "list")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["SLUG", "NAME", "RUNTIME", "PRICE", "ENABLED"]
    row = next(r for r in rows if r.startswith("llm-chat "))
    assert row.split()[-3:] == [cargo.runtime_type, "0.0100", "yes"]
    assert row.index("LLM Chat") == header.index("NAME")


def test_workloads_get_shows_one_cargo_and_json_has_every_field(run, live):
    make_cargo()

    text = run("--api-url", live.url, "workloads", "get", "llm-chat")
    as_json = run("--api-url", live.url, "--format", "json", "workloads", "get", "llm-chat")

    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("Cargo llm-chat\n")
    assert "VRAM (MB):   8000" in text.stdout
    assert json.loads(as_json.stdout)["required_vram_mb"] == 8000


def test_an_unknown_workload_exits_4(run, live):
    result = run("--api-url", live.url, "workloads", "get", "no-such-cargo")

    assert result.exit_code == EXIT_NOT_FOUND
    assert "Workload not found" in result.stderr


def test_hosts_list_shows_online_islands_unless_told_all(run, live, key):
    online = make_island("gpu-beast-01", online=True, karma=98)
    make_island("ml-node-03", online=False, karma=5)
    args = ("--api-url", live.url, "--api-key", key, "hosts", "list")

    default = run(*args)
    everything = run(*args, "--all")
    only_offline = run(*args, "--status", "offline", "--format", "json")

    assert default.exit_code == 0, default.output
    header, first = default.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "REGION", "KARMA"]
    assert first.split() == [str(online.pk), "gpu-beast-01", "online", "eu-west", "98.0"]
    assert everything.exit_code == 0, everything.output
    assert [line.split()[1] for line in everything.stdout.splitlines()[1:]] == [
        "gpu-beast-01",
        "ml-node-03",
    ]
    assert [h["name"] for h in json.loads(only_offline.stdout)] == ["ml-node-03"]


def test_hosts_list_says_when_there_are_more_rows(run, live, key):
    for n in range(3):
        make_island(f"node-{n}", online=True, karma=n)

    result = run("--api-url", live.url, "--api-key", key, "hosts", "list", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "(rows 1-2 of 3; see --limit and --offset)"


def test_hosts_get_shows_one_island(run, live, key):
    island = make_island("gpu-beast-01", online=True, karma=98)

    result = run("--api-url", live.url, "--api-key", key, "hosts", "get", str(island.pk))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Island {island.pk}\n")
    assert '"gpu": "RTX 4090"' in result.stdout


def test_hosts_get_of_an_unknown_island_exits_4_and_hosts_need_a_key(run, live, key):
    unknown = str(uuid.uuid4())

    missing = run("--api-url", live.url, "--api-key", key, "hosts", "get", unknown)
    anonymous = run("--api-url", live.url, "hosts", "list")

    assert missing.exit_code == EXIT_NOT_FOUND
    assert anonymous.exit_code == EXIT_AUTH
