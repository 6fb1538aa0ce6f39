"""The jobs API: shapes, validation, ownership, cancel, quotas and idempotency."""

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.models import Job
from tests.compute.jobs_support import island, running_job

JOB_FIELDS = {"id", "workload_id", "workload_slug", "status", "input", "output", "usage",
              "created_at", "started_at", "completed_at", "duration_ms", "error"}  # fmt: skip
USAGE_FIELDS = {"prompt_tokens", "completion_tokens", "total_tokens", "credits_used"}


def submit(api, **body):
    return api.post(
        "/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}, **body}, format="json"
    )


def test_submitting_a_job_returns_it_with_the_seed_fields_and_its_state(api, chat):
    response = submit(api, priority=7)
    assert response.status_code == 201
    data = response.json()["data"]
    assert set(data) >= JOB_FIELDS
    assert set(data["usage"]) == USAGE_FIELDS
    assert data["status"] == "queued"  # no Island is online
    assert (data["workload_id"], data["workload_slug"], data["priority"]) == (
        chat.pk,
        "chat-test",
        7,
    )
    assert data["input"] == {"prompt": "Hi"}
    assert Job.objects.get(pk=data["id"]).status == "queued"
    # Clients declare credits_used a number (the upstream SDK: float = 0.0).
    assert data["usage"]["credits_used"] == 0


def test_a_job_submitted_while_an_island_has_room_is_running_on_it_at_once(api, chat):
    host = island()
    data = submit(api).json()["data"]
    assert (data["status"], data["island_id"]) == ("running", str(host.pk))
    job = Job.objects.get(pk=data["id"])
    assert (job.status, job.island_id, job.attempts) == ("running", host.pk, 1)


@pytest.mark.parametrize(("body", "field"), [
    ({"priority": 101}, "priority"),
    ({"priority": -1}, "priority"),
    ({"input": "text"}, "input"),
    ({"colour": "red"}, "colour"),
])  # fmt: skip
def test_invalid_submissions_are_refused_with_422(api, chat, body, field):
    response = submit(api, **body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]


def test_an_unknown_or_disabled_workload_is_a_404(api, chat):
    assert submit(api, workload="nope").status_code == 404
    chat.is_enabled = False
    chat.save()
    response = submit(api)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "workload_not_found"


def test_jobs_need_a_key(anon, chat):
    assert anon.get("/api/v1/jobs").status_code == 401
    assert submit(anon).status_code == 401


def test_a_listed_job_carries_the_same_fields_as_the_single_job(api, chat):
    for _ in range(3):
        submit(api)
    body = api.get("/api/v1/jobs?limit=2&offset=1").json()
    assert body["meta"] == {"total": 3, "limit": 2, "offset": 1}
    assert len(body["data"]) == 2
    one = body["data"][0]
    assert api.get(f"/api/v1/jobs/{one['id']}").json()["data"] == one


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=x"])
def test_bad_paging_is_a_422(api, query):
    assert api.get(f"/api/v1/jobs?{query}").status_code == 422


def test_another_users_job_is_a_404_everywhere(api, chat, other_user):
    job = running_job(chat, island(), user=other_user)
    for path in (f"/api/v1/jobs/{job.pk}", f"/api/v1/jobs/{job.pk}/output"):
        assert api.get(path).status_code == 404
    assert api.delete(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert api.get("/api/v1/jobs").json()["meta"]["total"] == 0
    job.refresh_from_db()
    assert job.status == "running"


def test_a_finished_job_shows_usage_and_duration(api, chat, user):
    now = timezone.now()
    job = running_job(chat, island(), user=user, output="Hi there!", started_at=now - timedelta(seconds=4),
                      prompt_tokens=5, completion_tokens=8, price=chat.price_per_job)  # fmt: skip
    Job.objects.filter(pk=job.pk).update(status="completed", completed_at=now, credits_used="0.01")
    data = api.get(f"/api/v1/jobs/{job.pk}").json()["data"]
    assert data["status"] == "completed"
    assert data["output"] == "Hi there!"
    assert data["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 8,
        "total_tokens": 13,
        "credits_used": 0.01,
    }
    assert data["duration_ms"] == 4000
    assert api.get(f"/api/v1/jobs/{job.pk}/output").json()["data"]["output"] == "Hi there!"


def test_cancelling_a_pending_job_cancels_it(api, chat):
    job_id = submit(api).json()["data"]["id"]
    response = api.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "cancelled"


def test_cancelling_a_finished_job_is_a_409(api, chat, user):
    job = running_job(chat, island(), user=user)
    Job.objects.filter(pk=job.pk).update(status="completed")
    response = api.delete(f"/api/v1/jobs/{job.pk}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_finished"


def test_the_eleventh_concurrent_job_is_refused_with_429(api, chat, settings):
    for _ in range(settings.JOB_CONCURRENT_LIMIT):
        assert submit(api).status_code == 201
    response = submit(api)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "concurrent_job_limit"
    assert response["Retry-After"] == "1"
    Job.objects.filter(status="queued").update(status="completed")
    assert submit(api).status_code == 201


def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer(api, chat):
    first = api.post("/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}},
                     format="json", HTTP_IDEMPOTENCY_KEY="abc-1")  # fmt: skip
    Job.objects.update(status="running")
    again = api.post("/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}},
                     format="json", HTTP_IDEMPOTENCY_KEY="abc-1")  # fmt: skip
    assert (
        (again.status_code, again.json())
        == (first.status_code, first.json())
        == (201, first.json())
    )
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_422(api, chat):
    def post(prompt):
        return api.post("/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": prompt}},
                        format="json", HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip

    assert post("Hi").status_code == 201
    response = post("Bye")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_belong_to_one_account(api, chat, other_user):
    from rest_framework.test import APIClient

    from portal.services import create_api_key

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {create_api_key(user=other_user, name='t')[1]}")
    body = {"workload": "chat-test", "input": {"prompt": "Hi"}}
    a = api.post("/api/v1/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = other.post("/api/v1/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert a.json()["data"]["id"] != b.json()["data"]["id"]


def test_a_refused_request_does_not_use_up_its_idempotency_key(api, chat):
    bad = api.post("/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}, "priority": 500},
                   format="json", HTTP_IDEMPOTENCY_KEY="fix-me")  # fmt: skip
    assert bad.status_code == 422
    good = api.post("/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}, "priority": 5},
                    format="json", HTTP_IDEMPOTENCY_KEY="fix-me")  # fmt: skip
    assert good.status_code == 201


def test_an_oversized_idempotency_key_is_refused(api, chat):
    response = api.post("/api/v1/jobs", {"workload": "chat-test", "input": {}}, format="json",
                        HTTP_IDEMPOTENCY_KEY="k" * 201)  # fmt: skip
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
