import contextlib
import uuid
from decimal import Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import services as ledger
from billing import settlement
from billing.models import Balance, LedgerEntry
from portal import services as accounts
from tests.threads import at_once

D = Decimal


def balance_of(user) -> Balance:
    return Balance.objects.get(user=user)


def assert_ledger_explains_balance(user) -> None:
    """Every bucket of the balance equals the sum of the entries' effects on it."""
    totals = [D(0), D(0), D(0)]
    for kind, amount in LedgerEntry.objects.filter(user=user).values_list("kind", "amount"):
        for i, factor in enumerate(LedgerEntry.EFFECTS[kind]):
            totals[i] += factor * amount
    balance = balance_of(user)
    assert (balance.available, balance.held, balance.earnings) == tuple(totals)


@pytest.fixture
def consumer(db):
    """An account holding exactly 100 credits."""
    user = accounts.sign_up(email="consumer@example.com", password=None)
    starting = balance_of(user).available
    ledger.adjust(user=user, amount=D(100) - starting, reason="test", idempotency_key="t")
    return user


@pytest.fixture
def owner(db):
    """The owner of the Island that runs the jobs."""
    return accounts.sign_up(email="owner@example.com", password=None)


def test_sign_up_grants_the_starting_credits_once(db, settings):
    user = accounts.sign_up(email="new@example.com", password=None)
    assert balance_of(user).available == settings.STARTING_CREDITS
    ledger.grant(user=user, amount=D(5), reason="again", idempotency_key=f"signup-grant:{user.pk}")
    assert balance_of(user).available == settings.STARTING_CREDITS


def test_a_hold_at_the_exact_balance_passes_and_one_credit_more_is_refused(consumer):
    with pytest.raises(ledger.InsufficientCredits) as refused:
        ledger.hold(user_id=consumer.pk, job_id=uuid.uuid4(), amount=D("100.000001"))
    assert refused.value.status_code == 402
    assert refused.value.code == "insufficient_credits"
    ledger.hold(user_id=consumer.pk, job_id=uuid.uuid4(), amount=D(100))
    assert (balance_of(consumer).available, balance_of(consumer).held) == (D(0), D(100))


def test_settle_charges_the_price_releases_the_rest_and_pays_the_owner_minus_the_fee(
    consumer, owner, settings
):
    settings.PLATFORM_FEE_RATE = D("0.10")
    job = uuid.uuid4()
    ledger.hold(user_id=consumer.pk, job_id=job, amount=D("1.5"))
    earned_before = balance_of(owner).earnings
    result = settlement.settle(
        user_id=consumer.pk, owner_id=owner.pk, job_id=job, price=D("0.0133")
    )
    assert result == settlement.Settlement(
        charged=D("0.0133"), earned=D("0.01197"), fee=D("0.00133")
    )
    assert balance_of(consumer).available == D(100) - D("0.0133")
    assert balance_of(consumer).held == 0
    assert balance_of(owner).earnings - earned_before == D("0.01197")


def test_settling_or_releasing_twice_changes_nothing(consumer, owner):
    job = uuid.uuid4()
    ledger.hold(user_id=consumer.pk, job_id=job, amount=D(2))
    settlement.settle(user_id=consumer.pk, owner_id=owner.pk, job_id=job, price=D(1))
    before = list(LedgerEntry.objects.values_list("pk", flat=True))
    assert settlement.settle(user_id=consumer.pk, owner_id=owner.pk, job_id=job, price=D(1)) is None
    settlement.release(user_id=consumer.pk, job_id=job)
    ledger.hold(user_id=consumer.pk, job_id=job, amount=D(2))
    assert list(LedgerEntry.objects.values_list("pk", flat=True)) == before
    assert balance_of(consumer).available == D(99)


def test_a_failed_job_costs_nothing(consumer):
    job = uuid.uuid4()
    ledger.hold(user_id=consumer.pk, job_id=job, amount=D(7))
    settlement.release(user_id=consumer.pk, job_id=job)
    assert (balance_of(consumer).available, balance_of(consumer).held) == (D(100), D(0))
    assert_ledger_explains_balance(consumer)


def test_entries_cannot_take_the_available_balance_below_zero_even_if_code_tries(consumer):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Balance.objects.filter(user=consumer).update(available=D(-1))


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_holds_never_overdraw_the_balance():
    """GIVEN 100 credits WHEN 20 threads each hold 10 at once THEN exactly 10 succeed."""
    user = accounts.sign_up(email="rush@example.com", password=None)
    ledger.adjust(
        user=user, amount=D(100) - balance_of(user).available, reason="t", idempotency_key="t"
    )

    def submit(_: int) -> str:
        try:
            ledger.hold(user_id=user.pk, job_id=uuid.uuid4(), amount=D(10))
            return "held"
        except ledger.InsufficientCredits:
            return "refused"

    results = at_once(20, submit)
    assert sorted(results) == ["held"] * 10 + ["refused"] * 10
    assert (balance_of(user).available, balance_of(user).held) == (D(0), D(100))
    assert_ledger_explains_balance(user)


operations = st.lists(
    st.tuples(
        st.sampled_from(["hold", "settle", "release", "duplicate"]),
        st.integers(min_value=0, max_value=5),  # which job
        st.decimals(min_value=D("0.01"), max_value=D(40), places=2),
    ),
    max_size=30,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_any_sequence_of_movements_keeps_the_ledger_equal_to_the_balances(consumer, owner, ops):
    jobs = [uuid.uuid4() for _ in range(6)]
    for op, index, amount in ops:
        job = jobs[index]
        if op == "hold":
            with contextlib.suppress(ledger.InsufficientCredits):
                ledger.hold(user_id=consumer.pk, job_id=job, amount=amount)
        elif op == "settle":
            settlement.settle(user_id=consumer.pk, owner_id=owner.pk, job_id=job, price=amount)
        elif op == "release":
            settlement.release(user_id=consumer.pk, job_id=job)
        else:
            settlement.settle(user_id=consumer.pk, owner_id=owner.pk, job_id=job, price=amount)
            settlement.release(user_id=consumer.pk, job_id=job)
    for user in (consumer, owner):
        assert_ledger_explains_balance(user)
    total = LedgerEntry.objects.filter(user=consumer, kind="capture").aggregate(s=Sum("amount"))
    earned = LedgerEntry.objects.filter(user=owner, kind="earning").aggregate(s=Sum("amount"))
    assert (total["s"] or 0) == (earned["s"] or 0)
