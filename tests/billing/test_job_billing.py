"""Money on the job path: the budget held on submit (402 at the exact boundary), placement
within the budget at the Island's ask, settlement on completion (decimal fee split),
release on failure, cancel and timeout, and exactly-once under duplicate and reordered
events, concurrent workers, a worker dying mid-way, and concurrent submits.
Real Postgres, Redis and NATS (JetStream)."""

import contextlib
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing import services
from billing import settlement as ledger
from billing.models import Balance, LedgerEntry
from compute import job_events as handlers
from compute import tasks
from compute.models import AskingPrice, Island, Job, RateSnapshot, SavedBid
from compute.selectors import market as selectors
from compute.services import dispatch, jobs, placement, settlement, submission, sweep
from core import tx
from core.errors import ApiError
from tests.compute import jobs_support
from tests.compute.jobs_support import island
from tests.factories import UserFactory
from tests.threads import at_once

D = Decimal
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("streams")]

_fresh_index = jobs_support._fresh_index  # a fixture
chat = jobs_support.chat  # a fixture: Cargo "chat-test" listed at 0.01
streams = jobs_support.streams  # a fixture


# --- helpers -------------------------------------------------------------------------
def balance(user) -> Balance:
    return Balance.objects.filter(user=user).first() or Balance(user=user)


def assert_books_balance(*users) -> None:
    """Every bucket of every balance is the sum of its entries' effects."""
    for user in users:
        totals = [D(0), D(0), D(0)]
        for kind, amount in LedgerEntry.objects.filter(user=user).values_list("kind", "amount"):
            for i, factor in enumerate(LedgerEntry.EFFECTS[kind]):
                totals[i] += factor * amount
        b = balance(user)
        assert (b.available, b.held, b.earnings) == tuple(totals), user.email
        assert min(b.available, b.held, b.earnings) >= 0


def kinds(job) -> list[str]:
    return sorted(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True))


def status(host, job, state, **extra) -> bool:
    payload = {"job_id": str(job.pk), "state": state, "timestamp": 1, **extra}
    return handlers.on_status(str(host.pk), payload)


@pytest.fixture
def submit(django_capture_on_commit_callbacks):
    """Submit through the job service and run its dispatch (on commit)."""

    def go(user, cargo, **fields) -> Job:
        with django_capture_on_commit_callbacks(execute=True):
            job = tx.sync(
                submission.submit_job,
                user=user,
                workload=cargo.slug,
                job_input={"prompt": "Hi"},
                **fields,
            )
        job.refresh_from_db()
        return job

    return go


def post_job(api, **fields):
    return api.post(
        "/api/v1/jobs",
        {"workload": "chat-test", "input": {"prompt": "Hi"}, **fields},
        format="json",
    )


def set_available(user, amount: Decimal) -> None:
    services.adjust(
        user=user,
        amount=amount - balance(user).available,
        reason="test",
        idempotency_key=f"set:{uuid.uuid4()}",
    )


# --- submit: budget, hold, 402 -----------------------------------------------------
def test_a_budget_equal_to_the_available_balance_is_held_in_full(api, user, chat):
    set_available(user, D(5))
    response = post_job(api, bid="5")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["data"]["id"])
    assert job.budget == D(5)
    assert (balance(user).available, balance(user).held) == (D(0), D(5))
    [hold] = LedgerEntry.objects.filter(job_id=job.pk)
    assert (hold.kind, hold.amount, hold.available_after, hold.held_after) == (
        "hold", D(5), D(0), D(5)
    )  # fmt: skip


def test_one_millionth_of_a_credit_over_the_balance_is_a_402_and_no_job(api, user, chat):
    set_available(user, D(5))
    response = post_job(api, bid="5.000001")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert Job.objects.count() == 0
    assert not LedgerEntry.objects.filter(kind="hold").exists()
    assert (balance(user).available, balance(user).held) == (D(5), D(0))


def test_an_account_without_a_balance_row_cannot_submit(chat, submit):
    with pytest.raises(services.InsufficientCredits):
        submit(UserFactory(), chat)
    assert Job.objects.count() == 0


@pytest.mark.parametrize("bid", ["-0.01", "abc", "0.0000001", "1e30", "NaN", True, [1]])
def test_a_bid_must_be_a_non_negative_decimal_with_at_most_six_places(api, chat, bid):
    response = post_job(api, bid=bid)
    assert response.status_code == 422
    assert "bid" in response.json()["error"]["details"]
    assert Job.objects.count() == 0


def test_the_budget_is_the_bid_then_the_saved_bid_then_the_market_rate_then_the_price(chat, submit):
    island(asking_prices={"_default": "0.001"}, max_concurrent_jobs=10)  # no surge
    user = UserFactory(credits=100)
    assert submit(user, chat).budget == D("0.01")  # the Cargo's price
    cache.clear()  # the surge flag is cached for 30 s
    RateSnapshot.objects.create(
        cargo=chat, avg_price=D("0.02"), min_price=D("0.01"), max_price=D("0.03"), num_hosts=2
    )
    assert submit(user, chat).budget == D("0.02")  # the market rate
    SavedBid.objects.create(user=user, cargo=chat, bid=D("0.05"))
    assert submit(user, chat).budget == D("0.05")  # the user's saved bid
    assert submit(user, chat, bid=D("0.07")).budget == D("0.07")  # the job's own bid
    assert balance(user).held == D("0.15")
    assert_books_balance(user)


# --- placement within the budget, clearing at the ask ----------------------------------
def test_only_an_island_whose_effective_ask_is_within_the_budget_takes_the_job(chat, submit):
    cheap_by_heartbeat = island(asking_prices={"chat-test": "0.001"})
    AskingPrice.objects.create(island=cheap_by_heartbeat, cargo=chat, price=D("0.5"))  # owner's
    unpriced = island(asking_prices={})  # the list price, 0.01: over a 0.009 budget
    within = island(asking_prices={"_default": "0.008"})
    job = submit(UserFactory(credits=1), chat, bid=D("0.009"))
    assert (job.island_id, job.price, job.budget) == (within.pk, D("0.008"), D("0.009"))
    assert unpriced.pk != job.island_id


def test_an_owners_api_ask_under_the_budget_wins_over_a_dearer_heartbeat_ask(chat, submit):
    host = island(asking_prices={"chat-test": "5"})
    AskingPrice.objects.create(island=host, cargo=chat, price=D("0.003"))
    job = submit(UserFactory(credits=1), chat)
    assert (job.island_id, job.price) == (host.pk, D("0.003"))


def test_a_job_no_island_can_afford_waits_queued_with_its_hold(chat, submit):
    island(asking_prices={"_default": "0.02"})
    user = UserFactory(credits=1)
    job = submit(user, chat)
    assert (job.status, job.island_id) == ("queued", None)
    assert balance(user).held == D("0.01")


# --- settlement on completion ----------------------------------------------------------
def test_completion_charges_the_ask_refunds_the_rest_and_pays_the_owner_net_of_the_fee(
    api, user, chat, submit, settings
):
    settings.PLATFORM_FEE_RATE = D("0.10")
    host = island(asking_prices={"chat-test": "0.0133"})
    before = balance(user).available
    job = submit(user, chat, bid=D("0.02"))
    assert job.island_id == host.pk
    status(host, job, "started")
    assert status(host, job, "succeeded") is True

    job.refresh_from_db()
    host.refresh_from_db()
    owner = host.owner
    assert (job.status, job.credits_used) == ("completed", D("0.0133"))
    assert (balance(user).available, balance(user).held) == (before - D("0.0133"), D(0))
    assert balance(owner).earnings == D("0.01197")
    assert (host.earnings, host.jobs_completed) == (D("0.01197"), 1)
    entries = dict(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", "amount"))
    assert entries == {"hold": D("0.02"), "capture": D("0.0133"), "release": D("0.0067"),
                       "earning": D("0.0133"), "fee": D("0.00133")}  # fmt: skip
    [card] = selectors.island_earnings(user=owner)
    assert card["net_earnings"] == host.earnings
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["data"]["usage"]["credits_used"] == 0.0133
    assert_books_balance(user, owner)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    price=st.decimals(min_value=0, max_value=10**9, places=6),
    rate=st.decimals(min_value=0, max_value=1, places=4),
)
def test_the_fee_split_is_exact_in_decimals(price, rate):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.conf.settings.PLATFORM_FEE_RATE", rate)
        earned, fee = ledger.split_fee(price)
    assert isinstance(earned, Decimal)
    assert isinstance(fee, Decimal)
    assert earned + fee == price
    assert fee == fee.quantize(D("0.000001"))
    assert abs(fee - price * rate) <= D("0.0000005")


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("failed", "failed"),
        ("failed_timeout", "timeout"),
        ("cancel_api", "cancelled"),
        ("cancel_island", "cancelled"),
        ("sweep_timeout", "timeout"),
        ("cancel_queued", "cancelled"),
    ],
)
def test_a_job_that_does_not_complete_costs_nothing(api, user, chat, submit, end, expected):
    host = island() if end != "cancel_queued" else None
    before = balance(user).available
    job = submit(user, chat)
    if end == "failed":
        status(host, job, "failed", error="out of memory")
    elif end == "failed_timeout":
        status(host, job, "failed", error="timeout: 300s")
    elif end in ("cancel_api", "cancel_queued"):
        assert api.delete(f"/api/v1/jobs/{job.pk}").status_code == 200
    elif end == "cancel_island":
        status(host, job, "cancelled")
    else:
        Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
        assert sweep.sweep_jobs()["timed_out"] == 1
    job.refresh_from_db()
    assert (job.status, job.credits_used) == (expected, D(0))
    assert (balance(user).available, balance(user).held) == (before, D(0))
    assert kinds(job) == ["hold", "release"]
    if host:
        host.refresh_from_db()
        assert (host.earnings, host.jobs_completed) == (D(0), 0)
    assert_books_balance(user)


# --- exactly once -------------------------------------------------------------------------
def test_duplicate_and_reordered_events_settle_once(chat, submit):
    host = island(asking_prices={"chat-test": "0.004"})
    user = UserFactory(credits=1)
    job = submit(user, chat)
    assert status(host, job, "succeeded") is True  # before "started": reordered
    for state in ("started", "succeeded", "failed", "cancelled", "succeeded"):
        assert status(host, job, state) is False
    job.refresh_from_db()
    host.refresh_from_db()
    assert job.status == "completed"
    assert kinds(job) == ["capture", "earning", "fee", "hold", "release"]
    assert (balance(user).available, balance(user).held) == (D("0.996"), D(0))
    assert (host.jobs_completed, host.jobs_failed, host.earnings) == (1, 0, D("0.0036"))
    assert_books_balance(user, host.owner)


def test_a_failure_after_completion_never_refunds_and_a_completion_after_failure_never_charges(
    chat, submit
):
    host = island(max_concurrent_jobs=2)
    user = UserFactory(credits=1)
    failed = submit(user, chat)
    status(host, failed, "failed", error="boom")
    assert status(host, failed, "succeeded") is False
    assert kinds(failed) == ["hold", "release"]
    done = submit(user, chat)
    status(host, done, "succeeded")
    assert status(host, done, "failed", error="late") is False
    assert kinds(done) == ["capture", "earning", "fee", "hold"]
    assert balance(user).available == D("0.99")


@pytest.mark.django_db(transaction=True)
def test_workers_applying_the_same_completion_at_once_charge_and_pay_once(chat):
    host = island(asking_prices={"chat-test": "0.005"})
    user = UserFactory(credits=1)
    job = tx.sync(
        submission.submit_job, user=user, workload="chat-test", job_input={"prompt": "Hi"}
    )
    job.refresh_from_db()  # dispatched on commit
    assert (job.status, job.island_id) == ("running", host.pk)
    events = ["succeeded"] * 6 + ["failed"] * 2

    results = at_once(len(events), lambda i: status(host, job, events[i], error="x"))

    assert results.count(True) == 1
    assert all(r in (True, False) for r in results), results
    job.refresh_from_db()
    host.refresh_from_db()
    if job.status == "completed":
        assert kinds(job) == ["capture", "earning", "fee", "hold", "release"]
        assert (host.jobs_completed, host.earnings) == (1, D("0.0045"))
        assert balance(user).available == D("0.995")
    else:  # a failure won the race: no charge at all
        assert kinds(job) == ["hold", "release"]
        assert (host.jobs_failed, host.earnings) == (1, D(0))
    assert balance(user).held == 0
    assert_books_balance(user, host.owner)


def test_a_worker_dying_mid_completion_leaves_nothing_half_done(chat, submit, monkeypatch):
    """GIVEN a worker that dies after the settlement but before the transaction commits
    THEN nothing of the completion is kept, and the redelivered event settles it once."""
    from compute.services import karma

    host = island()
    user = UserFactory(credits=1)
    job = submit(user, chat)

    def die(**_):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(karma, "record_completed_job", die)
        with pytest.raises(SystemExit):
            status(host, job, "succeeded")
    job.refresh_from_db()
    assert (job.status, kinds(job)) == ("running", ["hold"])
    assert status(host, job, "succeeded") is True  # JetStream redelivers
    assert kinds(job) == ["capture", "earning", "fee", "hold"]
    assert_books_balance(user, host.owner)


def test_the_safety_net_settles_a_job_whose_settlement_was_skipped(chat, submit):
    host = island(asking_prices={"chat-test": "0.004"})
    user = UserFactory(credits=1)
    completed, failed = submit(user, chat), submit(user, chat)
    assert completed.island_id == host.pk
    # The final states were written, the money never moved (a worker killed between).
    Job.objects.filter(pk=completed.pk).update(status="completed", completed_at=timezone.now())
    Job.objects.filter(pk=failed.pk).update(status="failed", completed_at=timezone.now())
    assert balance(user).held == D("0.02")

    assert tasks.settle_ended_jobs() == 2

    completed.refresh_from_db()
    failed.refresh_from_db()
    host.refresh_from_db()
    assert (completed.credits_used, failed.credits_used) == (D("0.004"), D(0))
    assert kinds(completed) == ["capture", "earning", "fee", "hold", "release"]
    assert kinds(failed) == ["hold", "release"]
    assert (balance(user).available, balance(user).held) == (D("0.996"), D(0))
    assert host.earnings == D("0.0036") == balance(host.owner).earnings
    assert tasks.settle_ended_jobs() == 0
    assert_books_balance(user, host.owner)


def test_the_safety_net_leaves_running_jobs_and_settled_jobs_alone(chat, submit):
    host = island(max_concurrent_jobs=2)
    user = UserFactory(credits=1)
    running = submit(user, chat)
    done = submit(user, chat)
    status(host, done, "succeeded")
    assert settlement.ended_jobs_with_open_holds() == []
    assert tasks.settle_ended_jobs() == 0
    assert kinds(running) == ["hold"]


# --- concurrency of submits --------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_submits_never_overdraw_the_balance(chat, settings):
    """GIVEN 100 credits WHEN 20 jobs with a bid of 10 are submitted at once THEN exactly
    10 are created and held, 10 get a 402, and the balance never goes negative."""
    settings.JOB_CONCURRENT_LIMIT = 100
    user = UserFactory(credits=100)

    def go(i: int) -> str:
        try:
            tx.sync(
                submission.submit_job,
                user=user,
                workload="chat-test",
                job_input={"n": i},
                bid=D(10),
            )
            return "created"
        except services.InsufficientCredits:
            return "402"

    results = at_once(20, go)

    assert sorted(results) == ["402"] * 10 + ["created"] * 10
    assert Job.objects.filter(user=user).count() == 10
    assert (balance(user).available, balance(user).held) == (D(0), D(100))
    assert LedgerEntry.objects.filter(user=user, kind="hold").count() == 10
    assert_books_balance(user)


# --- the invariant under random sequences --------------------------------------------------
EVENTS = ["submit", "dispatch", "start", "succeed", "fail", "timeout", "cancel", "island_cancel",
          "sweep"]  # fmt: skip
OPS = st.lists(
    st.tuples(st.sampled_from(EVENTS), st.integers(min_value=0, max_value=5)),  # job or bid
    min_size=1,
    max_size=30,
)
BIDS = [None, D("0.004"), D("0.01"), D("0.5"), D("0.333333"), D("2")]


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_any_sequence_of_job_events_keeps_the_ledger_equal_to_the_balances(chat, ops):
    """Submits (some refused for lack of credits), dispatches, completions, failures,
    timeouts, cancels and their duplicates, in any order: every balance is the sum of its
    entries, captures equal gross earnings, every ended job's hold is closed, and every
    Island's earnings equal its net earnings in the ledger."""
    user = UserFactory(credits=D("3"))
    hosts = [
        island(asking_prices={"chat-test": "0.004"}, max_concurrent_jobs=2),
        island(asking_prices={"_default": "0.3"}, max_concurrent_jobs=2),
    ]
    placement.reset_index()  # this example's Islands
    created: list[Job] = []
    for op, n in ops:
        if op == "submit":
            with contextlib.suppress(services.InsufficientCredits):  # out of credits
                created.append(
                    tx.sync(
                        submission.submit_job,
                        user=user,
                        workload="chat-test",
                        job_input={},
                        bid=BIDS[n],
                    )
                )
            continue
        if not created:
            continue
        job = created[n % len(created)]
        on = Job.objects.filter(pk=job.pk).values_list("island_id", flat=True).get()
        host = on or hosts[n % 2].pk
        event = {"job_id": str(job.pk), "timestamp": 1}
        if op == "dispatch":
            dispatch.dispatch_job(job.pk)
        elif op == "start":
            handlers.on_status(str(host), {**event, "state": "started"})
        elif op == "succeed":
            handlers.on_status(str(host), {**event, "state": "succeeded"})
        elif op == "fail":
            handlers.on_status(str(host), {**event, "state": "failed", "error": "x"})
        elif op == "timeout":
            handlers.on_status(str(host), {**event, "state": "failed", "error": "timeout"})
        elif op == "island_cancel":
            handlers.on_status(str(host), {**event, "state": "cancelled"})
        elif op == "cancel":
            with contextlib.suppress(ApiError):  # 409 when it already ended
                jobs.cancel_job(user=user, job_id=job.pk)
        else:
            settlement.release_holds_of_ended_jobs()

    owners = [Island.objects.get(pk=h.pk).owner for h in hosts]
    assert_books_balance(user, *owners)
    mine = LedgerEntry.objects.filter(job_id__in=[j.pk for j in created])
    captured = mine.filter(kind="capture").aggregate(s=Sum("amount"))["s"] or 0
    earned = mine.filter(kind="earning").aggregate(s=Sum("amount"))["s"] or 0
    assert captured == earned
    assert settlement.ended_jobs_with_open_holds() == []
    open_holds = sum(
        (j.budget for j in Job.objects.filter(pk__in=[j.pk for j in created])
         .exclude(status__in=Job.FINAL)),
        D(0),
    )  # fmt: skip
    assert balance(user).held == open_holds
    for job in Job.objects.filter(pk__in=[j.pk for j in created], status__in=Job.FINAL):
        assert job.credits_used == ledger.charged_for(job.pk)
    for host in hosts:
        host.refresh_from_db()
        cards = {c["id"]: c["net_earnings"] for c in selectors.island_earnings(user=host.owner)}
        assert cards[host.pk] == host.earnings
