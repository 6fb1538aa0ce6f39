"""A key's own limits on the job path (Django's path; the fast lane and parallel
submissions: tests/compute/test_key_caps_parallel.py): spend caps per day, month and in
all, jobs per minute, Cargos, addresses, expiry; refused jobs leave no job and no hold."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import LedgerEntry
from compute.models import Job
from compute.services import jobs
from portal import services
from portal.models import ApiKey, ApiKeyDay
from tests.compute import jobs_support

_fresh_index = jobs_support._fresh_index  # a fixture
chat = jobs_support.chat  # a fixture: a Cargo "chat-test" priced 0.01


def client_of(user, **limits) -> tuple[APIClient, ApiKey]:
    """A client with a new read+write key of ``user`` having ``limits``."""
    key, raw = services.create_api_key(user=user, name="capped", **limits)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, key


def submit(client, workload="chat-test"):
    body = {"workload": workload, "input": {"prompt": "Hi"}}
    return client.post("/api/v1/jobs", body, format="json")


def spent_before(key, day, credits) -> None:
    ApiKeyDay.objects.create(key=key, day=day, credits_spent=Decimal(credits))


def refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    return error


def nothing_made(user) -> bool:
    return (
        not Job.objects.filter(user=user).exists()
        and not LedgerEntry.objects.filter(user=user, kind="hold").exists()
    )


def test_a_job_within_the_daily_cap_is_created_and_counted_with_its_budget(user, chat):
    client, key = client_of(user, spend_cap_day=Decimal("0.02"))
    assert submit(client).status_code == 201
    today = ApiKeyDay.objects.get(key=key)
    assert (today.jobs, today.credits_held, today.credits_spent) == (1, Decimal("0.01"), 0)


def test_a_job_past_the_daily_cap_gets_402_and_leaves_no_job_and_no_hold(user, chat):
    client, key = client_of(user, spend_cap_day=Decimal("0.015"))
    spent_before(key, timezone.now().date(), "0.01")
    error = refused(submit(client), 402, "key_spend_cap")
    assert (error["window"], error["cap"], error["spent"]) == ("day", 0.015, 0.01)
    assert nothing_made(user)


def test_a_running_job_counts_its_budget_against_the_cap(user, chat):
    client, _ = client_of(user, spend_cap_day=Decimal("0.01"))
    assert submit(client).status_code == 201
    refused(submit(client), 402, "key_spend_cap")
    assert Job.objects.filter(user=user).count() == 1


def test_yesterdays_spend_does_not_count_against_todays_cap(user, chat):
    client, key = client_of(user, spend_cap_day=Decimal("0.01"))
    spent_before(key, timezone.now().date() - timedelta(days=1), "5")
    assert submit(client).status_code == 201


def _earlier_this_month():
    today = timezone.now().date()
    return today.replace(day=1) if today.day > 1 else today


def test_a_job_past_the_monthly_cap_gets_402(user, chat):
    client, key = client_of(user, spend_cap_month=Decimal("1"))
    spent_before(key, _earlier_this_month(), "0.995")
    assert refused(submit(client), 402, "key_spend_cap")["window"] == "month"
    assert nothing_made(user)


def test_last_months_spend_does_not_count_against_the_monthly_cap(user, chat):
    client, key = client_of(user, spend_cap_month=Decimal("1"))
    spent_before(key, timezone.now().date().replace(day=1) - timedelta(days=1), "5")
    assert submit(client).status_code == 201


def test_a_job_past_the_total_cap_gets_402(user, chat):
    client, key = client_of(user, spend_cap_total=Decimal("3"))
    spent_before(key, timezone.now().date() - timedelta(days=400), "2.995")
    assert refused(submit(client), 402, "key_spend_cap")["window"] == "total"
    assert nothing_made(user)


def test_an_ended_job_counts_what_it_cost_and_frees_the_rest_of_its_budget(user, chat):
    """GIVEN a job that held 0.01 and cost 0.004 WHEN it ends THEN its day shows 0.004
    spent, nothing held, its tokens; and another job fits under a cap of 0.014."""
    client, key = client_of(user, spend_cap_day=Decimal("0.014"))
    host = jobs_support.island()
    job_id = submit(client).json()["data"]["id"]
    Job.objects.filter(pk=job_id).update(price=Decimal("0.004"))
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    assert jobs.finish(job_id=job_id, event="succeed", island_id=host.pk, usage=usage)
    day = ApiKeyDay.objects.get(key=key)
    assert (day.credits_spent, day.credits_held, day.tokens, day.jobs) == (
        Decimal("0.004"), 0, 7, 1,
    )  # fmt: skip
    assert submit(client).status_code == 201


def test_a_failed_job_gives_its_hold_back_to_the_cap(user, chat):
    client, key = client_of(user, spend_cap_day=Decimal("0.01"))
    job_id = submit(client).json()["data"]["id"]
    assert jobs.finish(job_id=job_id, event="fail", error="broken")
    assert ApiKeyDay.objects.get(key=key).credits_held == 0
    assert submit(client).status_code == 201


def test_a_key_past_its_jobs_per_minute_gets_429_with_retry_after(user, chat):
    client, _ = client_of(user, jobs_per_minute=2)
    assert [submit(client).status_code for _ in range(2)] == [201, 201]
    response = submit(client)
    error = refused(response, 429, "key_job_rate")
    assert error["limit"] == 2
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert Job.objects.filter(user=user).count() == 2


def test_jobs_older_than_a_minute_do_not_count_against_the_rate(user, chat):
    client, key = client_of(user, jobs_per_minute=1)
    assert submit(client).status_code == 201
    Job.objects.filter(api_key=key).update(created_at=timezone.now() - timedelta(seconds=61))
    assert submit(client).status_code == 201


def test_another_keys_jobs_do_not_count_against_a_keys_rate(user, chat):
    other, _ = client_of(user)
    client, _ = client_of(user, jobs_per_minute=1)
    assert submit(other).status_code == 201
    assert submit(client).status_code == 201


def test_a_cargo_the_key_does_not_allow_gets_403_and_no_job(user, chat):
    client, _ = client_of(user, allowed_cargos=["other-cargo"])
    error = refused(submit(client), 403, "cargo_not_allowed")
    assert error["allowed"] == ["other-cargo"]
    assert nothing_made(user)


def test_an_allowed_cargo_runs(user, chat):
    client, _ = client_of(user, allowed_cargos=["chat-test"])
    assert submit(client).status_code == 201


@pytest.mark.parametrize(("allowed", "status"), [
    (["127.0.0.1"], 200),
    (["127.0.0.0/8"], 200),
    (["10.0.0.0/8"], 403),
    (["10.0.0.0/8", "::1"], 403),
])  # fmt: skip
def test_a_key_is_used_only_from_its_allowed_addresses(user, allowed, status):
    client, _ = client_of(user, allowed_ips=allowed)
    response = client.get("/api/v1/account", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "ip_not_allowed"


def test_an_expired_key_gets_401(user):
    client, _ = client_of(user, expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/account")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_a_session_submission_has_no_key_and_no_key_usage(user, chat, client):
    client.force_login(user)
    response = client.post(
        "/api/v1/jobs", {"workload": "chat-test", "input": {"prompt": "Hi"}},
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 201
    assert Job.objects.get(user=user).api_key_id is None
    assert not ApiKeyDay.objects.exists()
