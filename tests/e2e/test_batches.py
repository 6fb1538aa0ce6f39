"""Batch jobs end to end: submitted over the API of the live server, each child placed
and run by real agents (mock runtime), merged into the parent; fail modes, cancel,
billing and `island jobs batch`."""

import json
from decimal import Decimal

from click.testing import CliRunner
from island_cli.agent.runtimes.mock import reply_tokens
from island_cli.main import cli

from billing.models import Balance, LedgerEntry
from compute.models import Cargo, Job
from tests.billing.test_job_billing import assert_books_balance
from tests.e2e.conftest import eventually, online, pair
from tests.e2e.test_jobs import LONG, chat_input, expected_output, get_job


def submit_batch(e2e, key: str, inputs: list, **fields) -> dict:
    with e2e.client(key) as client:
        response = client.post("/jobs/batch", json={"workload": "llm-chat", "inputs": inputs,
                                                     **fields})  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def batch_status(e2e, key: str, batch_id: str) -> dict:
    with e2e.client(key) as client:
        response = client.get(f"/jobs/{batch_id}/batch-status")
    assert response.status_code == 200, response.text
    return response.json()


def ended(e2e, key: str, batch_id: str, timeout: float = 30) -> dict:
    return eventually(
        lambda: (
            (s := batch_status(e2e, key, batch_id))["parent_state"]
            in ("succeeded", "failed", "cancelled")
            and s
        ),
        timeout=timeout,
        interval=0.2,
    )


def islands(agent, user, n: int, **options) -> list:
    started = [agent(f"batch-{i}", **options) for i in range(n)]
    for island_agent in started:
        pair(island_agent, user)
        online(island_agent)
    return started


def test_a_concat_batch_runs_on_several_islands_and_merges_in_index_order(e2e, account, agent):
    user, key = account
    islands(agent, user, 2)
    inputs = [chat_input(f"part number {n}", max_tokens=64) for n in range(4)]
    before = Balance.objects.get(user=user).available

    batch = submit_batch(e2e, key, inputs)
    status = ended(e2e, key, batch["id"])

    assert status["parent_state"] == "succeeded"
    assert status["child_states"] == {"succeeded": 4}
    assert len({c["host_id"] for c in status["children"]}) == 2  # both Islands took some
    parent = get_job(e2e, key, batch["id"])
    assert parent["status"] == "completed"
    assert parent["output"] == "".join(expected_output(i) for i in inputs)
    # Billing: each child charged once at its price, the parent nothing of its own.
    children = list(Job.objects.filter(parent_id=batch["id"]).order_by("batch_index"))
    for child in children:
        assert child.status == "completed"
        kinds = list(LedgerEntry.objects.filter(job_id=child.pk).values_list("kind", flat=True))
        assert (kinds.count("hold"), kinds.count("capture")) == (1, 1)
    assert not LedgerEntry.objects.filter(job_id=batch["id"]).exists()
    spent = sum((c.credits_used for c in children), Decimal(0))
    assert Decimal(str(parent["usage"]["credits_used"])) == spent > 0
    assert parent["usage"]["completion_tokens"] == sum(len(reply_tokens(i)) for i in inputs)
    balance = Balance.objects.get(user=user)
    assert (balance.available, balance.held) == (before - spent, 0)
    assert_books_balance(user)


def test_a_flatten_batch_via_the_cli_shows_progress_and_prints_one_array(
    e2e, account, agent, tmp_path
):
    user, key = account
    islands(agent, user, 1)
    inputs = [chat_input(f"line {n}", max_tokens=64) for n in range(3)]
    lines = tmp_path / "inputs.jsonl"
    lines.write_text("".join(json.dumps(i) + "\n" for i in inputs) + "\n")

    result = CliRunner().invoke(
        cli,
        ["--api-url", e2e.url, "--api-key", key, "jobs", "batch", "--workload", "llm-chat",
         "--inputs", str(lines), "--merge", "flatten", "--wait"],
        env={"HOME": str(tmp_path), "ARCHIPELAG_API_KEY": None, "ISLAND_CONFIG": None},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [expected_output(i) for i in inputs]
    assert "] 3/3" in result.stderr
    assert result.stderr.startswith("Batch ")


def test_best_effort_keeps_what_completed_and_fail_fast_cancels_the_rest(e2e, account, agent):
    """GIVEN a time limit of 1 s and Islands at 30 tokens a second: a short input
    completes, a long one times out on its Island."""
    user, key = account
    Cargo.objects.filter(slug="llm-chat").update(time_limit_seconds=1)
    islands(agent, user, 2, mock_tokens_per_second=30)
    short, long = chat_input("short", max_tokens=64), chat_input(LONG)

    best = submit_batch(e2e, key, [short, long, short])
    best_status = ended(e2e, key, best["id"])
    fast = submit_batch(e2e, key, [long, short, short], fail_mode="fail_fast", max_parallelism=1)
    fast_status = ended(e2e, key, fast["id"])

    assert best_status["parent_state"] == "succeeded"
    assert best_status["child_states"] == {"succeeded": 2, "failed": 1}
    assert "Timeout" in best_status["children"][1]["error"]
    assert get_job(e2e, key, best["id"])["output"] == expected_output(short) * 2
    assert fast_status["parent_state"] == "failed"
    assert [c["state"] for c in fast_status["children"]] == ["failed", "cancelled", "cancelled"]
    assert [c["host_id"] for c in fast_status["children"][1:]] == [None, None]  # never ran
    assert get_job(e2e, key, fast["id"])["status"] == "failed"
    assert Balance.objects.get(user=user).held == 0
    assert_books_balance(user)


def test_cancelling_the_parent_stops_its_running_children_on_their_islands(e2e, account, agent):
    user, key = account
    slow = islands(agent, user, 2, mock_tokens_per_second=4)
    batch = submit_batch(e2e, key, [chat_input(LONG)] * 3)
    eventually(
        lambda: Job.objects.filter(parent_id=batch["id"], status="running").exclude(output="")
    )

    with e2e.client(key) as client:
        cancelled = client.delete(f"/jobs/{batch['id']}")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    status = batch_status(e2e, key, batch["id"])
    assert status["parent_state"] == "cancelled"
    assert status["child_states"] == {"cancelled": 3}
    for island_agent in slow:  # each agent got its cancel and freed its slot
        eventually(lambda a=island_agent: a.island().active_jobs == 0, timeout=5)
    assert Balance.objects.get(user=user).held == 0
    assert not LedgerEntry.objects.filter(kind="capture", user=user).exists()
    assert_books_balance(user)
