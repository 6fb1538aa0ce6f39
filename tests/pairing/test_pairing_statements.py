"""What runs between a pairing request and the commit that notifies the Island or the page:
few statements, the row locks taken by the lookup itself (bench/pairing.py measures the
latency; these keep its cause from coming back)."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pairing import codes, mobile, services
from pairing.models import PairingCode


def statements(queries) -> list[str]:
    """The SQL statements, without the savepoints of the test's own transaction."""
    sqls = [query["sql"] for query in queries]
    return [sql for sql in sqls if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def test_confirming_locks_the_code_and_its_island_with_the_lookup(island, code, user):
    with CaptureQueriesContext(connection) as queries:
        services.confirm_pairing(code=code, user=user, ip="10.0.0.1")
    sqls = statements(queries.captured_queries)
    verbs = [sql.split(" ", 1)[0] for sql in sqls]
    # lookup, Island, codes, the account's audit log, the attempt's audit
    assert verbs == ["SELECT", "UPDATE", "UPDATE", "INSERT", "INSERT"]
    assert sqls[0].endswith("FOR NO KEY UPDATE")
    assert '"compute_island"' in sqls[0]


def test_confirming_spends_every_live_code_of_the_island_but_credits_only_the_typed_one(
    island, code, user
):
    now = timezone.now()
    other = PairingCode.objects.create(
        island=island,
        seed=codes.new_seed(),
        code_hash="0" * 64,
        expires_at=now + timedelta(minutes=5),
    )
    services.confirm_pairing(code=code, user=user, ip="10.0.0.1")
    typed = PairingCode.objects.get(code_hash=codes.code_hash(code))
    other.refresh_from_db()
    assert (typed.used_at is not None, typed.used_by) == (True, user)
    assert (other.used_at is not None, other.used_by) == (True, None)


def test_claiming_locks_only_the_session_with_the_lookup(user):
    session, code = mobile.start_mobile_session(user=user)
    with CaptureQueriesContext(connection) as queries:
        island, _, claimed, _ = mobile.claim_mobile_session(
            code=code, device_name="Pixel 8", platform="android", hardware={}, runtimes=[],
            ip="10.0.0.1",
        )  # fmt: skip
    sqls = statements(queries.captured_queries)
    verbs = [sql.split(" ", 1)[0] for sql in sqls]
    # lookup, Island, session, the account's audit log, the attempt's audit
    assert verbs == ["SELECT", "INSERT", "UPDATE", "INSERT", "INSERT"]
    assert sqls[0].endswith('FOR NO KEY UPDATE OF "pairing_mobilepairingsession"')
    assert (claimed.pk, island.owner) == (session.pk, user)
