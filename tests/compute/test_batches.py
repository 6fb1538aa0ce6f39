"""Batch jobs through the API with Islands' reports applied as the worker applies them:
validation, holds for the whole batch, held-back children, merges, fail modes, cancel
(the same with real Islands: tests/e2e/test_batches.py)."""

from decimal import Decimal

import orjson
import pytest

from billing.models import Balance, LedgerEntry
from compute import job_events as handlers
from compute.models import Job
from compute.services import batches, dispatch
from core.redis import redis_client
from tests.compute.jobs_support import island

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("streams")]


def submit(api, inputs, **body):
    return api.post(
        "/api/v1/jobs/batch", {"workload": "chat-test", "inputs": inputs, **body}, format="json"
    )


def children(parent_id) -> list[Job]:
    return list(Job.objects.filter(parent_id=parent_id).order_by("batch_index"))


def run(child: Job, output: str, *, state: str = "succeeded") -> None:
    """The child's Island sends its output and its end, as an upstream agent does (after
    the dispatch pass that a worker would run)."""
    dispatch.dispatch_queued()
    child.refresh_from_db()
    host = str(child.island_id)
    job_id = str(child.pk)
    handlers.on_output(host, {"job_id": job_id, "seq": 1, "chunk": output, "is_final": True})
    handlers.on_status(host, {"job_id": job_id, "state": state, "timestamp": 1, "error": "boom"})


def test_a_batch_answers_the_parent_with_its_children_and_holds_them_all(api, user, chat):
    island(max_concurrent_jobs=5)
    before = Balance.objects.get(user=user).available

    response = submit(api, [{"prompt": f"p{i}"} for i in range(3)], max_parallelism=2)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"id", "state", "workload", "batch", "children", "created_at"}
    assert (body["state"], body["workload"]) == ("running", "chat-test")
    assert body["batch"] == {"chunk_count": 3, "merge_strategy": "concat",
                             "fail_mode": "best_effort", "max_parallelism": 2,
                             "completed": 0, "failed": 0}  # fmt: skip
    assert [c["batch_index"] for c in body["children"]] == [0, 1, 2]
    assert [c["state"] for c in body["children"]] == ["queued", "queued", "pending"]
    assert Balance.objects.get(user=user).available == before - 3 * Decimal("0.01")
    parent = api.get(f"/api/v1/jobs/{body['id']}").json()["data"]
    assert parent["input"] == {"inputs": [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}]}
    assert parent["usage"]["credits_used"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"inputs": [{"prompt": "x"}] * 101},
        {"inputs": [{"prompt": "x"}], "merge_strategy": "zip"},
        {"inputs": [{"prompt": "x"}], "fail_mode": "never"},
        {"inputs": [{"prompt": "x"}], "max_parallelism": 0},
        {"inputs": [{"prompt": "x"}], "bid_price": "-1"},
        {"inputs": [{"prompt": "x"}], "bid_price": "NaN"},
        {"inputs": [{"prompt": "x"}, "text"]},
        {"inputs": [{"prompt": "x"}], "colour": "red"},
    ],
)
def test_an_invalid_batch_is_refused_with_422_and_stores_nothing(api, chat, body):
    response = api.post("/api/v1/jobs/batch", {"workload": "chat-test", **body}, format="json")

    assert response.status_code == 422, response.json()
    assert response.json()["error"]["code"] == "validation_error"
    assert not Job.objects.exists()
    assert not LedgerEntry.objects.filter(kind="hold").exists()


def test_a_batch_the_balance_cannot_cover_is_a_402_and_stores_nothing(api, user, chat):
    Balance.objects.filter(user=user).update(available=Decimal("0.029999"))

    response = submit(api, [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}])

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert not Job.objects.exists()
    assert Balance.objects.get(user=user).available == Decimal("0.029999")


def test_an_unknown_workload_is_a_404(api, chat):
    response = api.post("/api/v1/jobs/batch", {"workload": "nope", "inputs": [{}]}, format="json")
    assert response.status_code == 404


def test_concat_merges_the_children_in_index_order_and_sums_their_cost(api, user, chat):
    island(max_concurrent_jobs=5)
    body = submit(api, [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]).json()
    first, second, third = children(body["id"])

    for child, text in ((third, "C"), (first, "A"), (second, "B")):
        run(child, text)

    status = api.get(f"/api/v1/jobs/{body['id']}/batch-status").json()
    assert status["parent_state"] == "succeeded"
    assert status["child_states"] == {"succeeded": 3}
    parent = api.get(f"/api/v1/jobs/{body['id']}").json()["data"]
    assert (parent["status"], parent["output"]) == ("completed", "ABC")
    assert parent["usage"]["completion_tokens"] == 3
    assert parent["usage"]["credits_used"] == pytest.approx(0.03)
    assert LedgerEntry.objects.filter(job_id=body["id"]).count() == 0  # children pay


def test_flatten_makes_one_array_of_the_childrens_items():
    merged = batches.merge("flatten", ["[1, 2]", '{"a": 3}', "plain text", "[]", '["x"]'])
    assert orjson.loads(merged) == [1, 2, {"a": 3}, "plain text", "x"]
    assert batches.merge("concat", ["a", "b"]) == "ab"


def test_best_effort_completes_with_the_children_that_did(api, chat):
    island(max_concurrent_jobs=5)
    body = submit(api, [{"prompt": "a"}, {"prompt": "b"}]).json()
    first, second = children(body["id"])

    run(first, "A", state="failed")
    run(second, "B")

    status = api.get(f"/api/v1/jobs/{body['id']}/batch-status").json()
    assert (status["parent_state"], status["child_states"]) == (
        "succeeded",
        {"failed": 1, "succeeded": 1},
    )
    assert status["children"][0]["error"] == "boom"
    parent = Job.objects.get(pk=body["id"])
    assert (parent.status, parent.output) == ("completed", "B")


def test_fail_fast_cancels_the_rest_on_the_first_failure(api, user, chat):
    island(max_concurrent_jobs=5)
    body = submit(api, [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}],
                  fail_mode="fail_fast", max_parallelism=2).json()  # fmt: skip
    first = children(body["id"])[0]

    run(first, "A", state="failed")

    states = [c.status for c in children(body["id"])]
    assert states == ["failed", "cancelled", "cancelled"]
    parent = Job.objects.get(pk=body["id"])
    assert parent.status == "failed"
    assert "#0: boom" in parent.error
    balance = Balance.objects.get(user=user)
    assert balance.held == 0
    status = api.get(f"/api/v1/jobs/{body['id']}/batch-status").json()
    assert status["parent_state"] == "failed"


def test_a_held_back_child_goes_when_a_sibling_ends(api, chat):
    island(max_concurrent_jobs=5)
    body = submit(api, [{"prompt": "a"}, {"prompt": "b"}], max_parallelism=1).json()
    first, second = children(body["id"])
    assert second.status == "pending"
    dispatch.dispatch_queued()
    second.refresh_from_db()
    assert second.status == "pending"  # no pass takes it while it is held back

    run(first, "A")

    second.refresh_from_db()
    assert second.status in ("queued", "running")


def test_cancelling_the_parent_cancels_its_children_and_releases_their_holds(api, user, chat):
    island(max_concurrent_jobs=1)
    body = submit(api, [{"prompt": "a"}, {"prompt": "b"}]).json()
    first, _ = children(body["id"])
    run(first, "A")

    response = api.delete(f"/api/v1/jobs/{body['id']}")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "cancelled"
    assert [c.status for c in children(body["id"])] == ["completed", "cancelled"]
    assert Balance.objects.get(user=user).held == 0
    status = api.get(f"/api/v1/jobs/{body['id']}/batch-status").json()
    assert status["parent_state"] == "cancelled"
    assert Job.objects.get(pk=body["id"]).credits_used == Decimal("0.01")


def test_batch_status_of_a_plain_job_is_a_404(api, chat):
    plain = api.post(
        "/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "x"}}, format="json"
    ).json()["data"]
    assert api.get(f"/api/v1/jobs/{plain['id']}/batch-status").status_code == 404


# --- Idempotency-Key: a batch retried after a lost answer is made once ---------------------
def keyed(api, key, inputs):
    body = {"workload": "chat-test", "inputs": inputs}
    return api.post("/api/v1/jobs/batch", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_batch_retried_with_its_idempotency_key_is_made_and_held_once(api, user, chat):
    island(max_concurrent_jobs=5)
    before = Balance.objects.get(user=user).available
    inputs = [{"prompt": "a"}, {"prompt": "b"}]

    first = keyed(api, "batch-1", inputs)
    again = keyed(api, "batch-1", inputs)

    assert (first.status_code, again.status_code) == (201, 201), first.json()
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.filter(parent__isnull=True).count() == 1
    assert len(children(first.json()["id"])) == 2
    assert Balance.objects.get(user=user).available == before - 2 * Decimal("0.01")


def test_a_batch_whose_idempotency_record_was_lost_is_found_by_its_parent(api, user, chat):
    first = keyed(api, "batch-2", [{"prompt": "a"}])
    redis_client().delete(*redis_client().keys(f"idem:{user.pk}:*"))

    again = keyed(api, "batch-2", [{"prompt": "a"}])

    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.filter(parent__isnull=True).count() == 1


def test_an_idempotency_key_of_the_other_kind_or_another_body_is_a_422(api, user, chat):
    job = {"workload": "chat-test", "input": {"prompt": "a"}}
    assert (
        api.post("/api/v1/jobs", job, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    )
    assert keyed(api, "k2", [{"prompt": "a"}]).status_code == 201

    of_a_job = keyed(api, "k1", [{"prompt": "a"}])
    other_body = keyed(api, "k2", [{"prompt": "b"}])
    redis_client().delete(*redis_client().keys(f"idem:{user.pk}:*"))
    of_a_job_unrecorded = keyed(api, "k1", [{"prompt": "a"}])  # the job row has the key
    of_a_batch_unrecorded = api.post("/api/v1/jobs", job, format="json", HTTP_IDEMPOTENCY_KEY="k2")

    for response in (of_a_job, other_body, of_a_job_unrecorded, of_a_batch_unrecorded):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Job.objects.filter(batch__isnull=False).count() == 1
    assert Job.objects.filter(parent__isnull=True, batch__isnull=True).count() == 1
