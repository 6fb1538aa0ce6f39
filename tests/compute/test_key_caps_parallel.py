"""A key's caps under parallel submissions (on the event loop's own connections, as the
fast lane submits) and through the live server's fast lane: no two requests pass a cap
together, and the lane refuses what Django's path refuses."""

import asyncio
import threading
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from billing.models import Balance, LedgerEntry
from compute.models import Job
from compute.services import submission
from compute.services.publish import Outbox
from core import tx
from core.errors import ApiError
from portal import services
from portal.keys import usage
from portal.keys.limits import KeyLimits, utc_day
from portal.models import ApiKeyDay
from tests.compute.jobs_support import island
from tests.factories import CargoFactory, UserFactory
from tests.threads import at_once

pytestmark = pytest.mark.usefixtures("closed_pool")


async def outcome(user, key: KeyLimits, workload: str = "cap-chat") -> str:
    """``created``, or the code of the submission's refusal."""
    try:
        async with tx.async_tx() as db:
            await submission.submit_job(db, user=user, workload=workload,
                                        job_input={"prompt": "Hi"}, outbox=Outbox(), key=key)  # fmt: skip
    except ApiError as exc:
        return exc.code
    return "created"


async def capped_key(user, **limits) -> KeyLimits:
    key, _ = await sync_to_async(services.create_api_key)(user=user, name="capped", **limits)
    return KeyLimits(key_id=str(key.pk), **limits)


@pytest.mark.django_db(transaction=True)
async def test_parallel_submissions_never_pass_a_spend_cap_together():
    """GIVEN a key whose daily cap fits three jobs of 0.01 WHEN eight submissions run at
    once, each on its own connection THEN three jobs are created and held, five refused."""
    await sync_to_async(CargoFactory)(slug="cap-chat", runtime_type="container",
                                      price_per_job=Decimal("0.01"))  # fmt: skip
    await sync_to_async(island)(max_concurrent_jobs=100)
    user = await sync_to_async(UserFactory)(credits=10)
    key = await capped_key(user, spend_cap_day=Decimal("0.03"))

    results = await asyncio.gather(*(outcome(user, key) for _ in range(8)))

    assert sorted(results) == ["created"] * 3 + ["key_spend_cap"] * 5
    assert await Job.objects.filter(user=user).acount() == 3
    assert await LedgerEntry.objects.filter(user=user, kind="hold").acount() == 3
    day = await ApiKeyDay.objects.aget(key_id=key.key_id)
    assert (day.jobs, day.credits_held) == (3, Decimal("0.03"))


@pytest.mark.django_db(transaction=True)
async def test_parallel_submissions_never_pass_a_jobs_per_minute_limit_together():
    await sync_to_async(CargoFactory)(slug="cap-chat", runtime_type="container")
    await sync_to_async(island)(max_concurrent_jobs=100)
    user = await sync_to_async(UserFactory)(credits=10)
    key = await capped_key(user, jobs_per_minute=2)

    results = await asyncio.gather(*(outcome(user, key) for _ in range(6)))

    assert sorted(results) == ["created"] * 2 + ["key_job_rate"] * 4
    assert await Job.objects.filter(user=user).acount() == 2


@pytest.mark.django_db(transaction=True)
async def test_a_submission_and_a_jobs_end_of_one_key_do_not_deadlock():
    """GIVEN a job's end of the key holding the account's balance (it locks the balance,
    then the key's day) WHEN the key submits meanwhile THEN the submission waits for the
    balance before it touches the key's day, and both commit (the day's row locked first
    by the submission was a deadlock)."""
    await sync_to_async(CargoFactory)(slug="cap-chat", runtime_type="container")
    await sync_to_async(island)(max_concurrent_jobs=10)
    user = await sync_to_async(UserFactory)(credits=10)
    key = await capped_key(user)
    balance_locked = threading.Event()

    def a_jobs_end() -> None:
        try:
            with transaction.atomic():
                Balance.objects.select_for_update().get(user=user)
                balance_locked.set()
                time.sleep(1.5)  # the submission comes now, and waits for the balance
                statement = usage.adding(key.key_id, utc_day(timezone.now()), tokens=1)
                tx.sync(lambda db: db.one(statement))
        finally:
            connections.close_all()

    ending = asyncio.ensure_future(asyncio.to_thread(a_jobs_end))
    await asyncio.to_thread(balance_locked.wait)
    assert await outcome(user, key) == "created"
    await ending
    day = await ApiKeyDay.objects.aget(key_id=key.key_id)
    assert (day.jobs, day.tokens) == (1, 1)


# --- through the live server's fast lane ------------------------------------------------
@pytest.fixture
def account(live):
    """An account with credits, in the live server's database."""
    return services.sign_up(email="ada@example.com", password="correct horse battery")


@pytest.fixture
def lane_chat(live):
    return CargoFactory(slug="lane-chat", runtime_type="container", price_per_job=Decimal("0.01"))


def key_of(user, **limits) -> str:
    return services.create_api_key(user=user, name="capped", **limits)[1]


def post(live, key: str, path: str, body: dict):
    with live.client(key) as client:
        return client.post(path, json=body)


JOB = {"workload": "lane-chat", "input": {"prompt": "Hi"}}
CHAT = {"model": "lane-chat", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.usefixtures("streams")
def test_two_requests_at_once_through_the_lane_pass_a_cap_once(live, account, lane_chat):
    island(max_concurrent_jobs=10)
    key = key_of(account, spend_cap_total=Decimal("0.01"))
    answers = at_once(2, lambda _: post(live, key, "/jobs", JOB).status_code)

    assert sorted(answers) == [201, 402]
    assert Job.objects.filter(user=account).count() == 1


@pytest.mark.usefixtures("streams")
def test_the_lane_refuses_a_job_past_a_cap_with_402(live, account, lane_chat):
    key = key_of(account, spend_cap_day=Decimal("0.001"))
    response = post(live, key, "/jobs", JOB)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "key_spend_cap"
    assert not Job.objects.filter(user=account).exists()


def test_the_lane_refuses_a_chat_completion_of_a_cargo_not_allowed(live, account, lane_chat):
    key = key_of(account, allowed_cargos=["another"])
    response = post(live, key, "/chat/completions", CHAT)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("cargo_not_allowed", "permission_error")
    assert not Job.objects.filter(user=account).exists()


def test_the_lane_refuses_a_key_used_from_an_address_it_does_not_allow(live, account, lane_chat):
    key = key_of(account, allowed_ips=["10.0.0.0/8"])
    response = post(live, key, "/jobs", JOB)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ip_not_allowed"
    assert not Job.objects.filter(user=account).exists()
