"""Mobile Islands: a QR code at /pair/mobile, claimed by the phone over HTTPS. Audited and
limited as every pairing attempt (pairing.services)."""

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.events import send_to_user
from compute.models import Island
from pairing import codes, records
from pairing.models import MobilePairingSession
from pairing.services import (
    Kind,
    Outcome,
    after_commit,
    attempt,
    check_limits,
    paired_event,
    refuse,
)
from portal import audit as audit_log
from portal.models import User
from sail import keys

MOBILE_SESSION_TTL = timedelta(minutes=10)
MAX_LIVE_MOBILE_SESSIONS = 5
MOBILE_RUNTIME = {"ios": "coreml", "android": "onnx"}


def start_mobile_session(*, user: User) -> tuple[MobilePairingSession, str]:
    """A new one-time session; returns it with its code (never stored in clear)."""
    now = timezone.now()
    with transaction.atomic():
        user_sessions = MobilePairingSession.objects.filter(user=user, claimed_at__isnull=True)
        user_sessions.filter(expires_at__lte=now).delete()
        live = list(user_sessions.order_by("-created_at").values_list("pk", flat=True))
        # A user reloading the page must not pile up claimable codes.
        stale = live[MAX_LIVE_MOBILE_SESSIONS - 1 :]
        MobilePairingSession.objects.filter(pk__in=stale).update(expires_at=now)
        code = codes.random_code(codes.MOBILE_LENGTH)
        session = MobilePairingSession.objects.create(
            user=user,
            code_hash=codes.code_hash(code),
            created_at=now,
            expires_at=now + MOBILE_SESSION_TTL,
        )
    return session, code


def _find_mobile_session(*, code: str, ip: str, lock: bool = False) -> MobilePairingSession:
    check_limits(user=None, ip=ip)
    rows = MobilePairingSession.objects.select_related("user").filter(
        code_hash=codes.code_hash(code)
    )
    if lock:
        # Locked by the lookup: a second claim of the code waits, then sees it claimed.
        rows = rows.select_for_update(of=("self",), no_key=True)
    row = rows.first()
    if row is None:
        raise refuse("Unknown pairing code", Outcome.WRONG, "invalid_code", 404)
    if row.claimed_at is not None:
        raise refuse("This pairing code has already been used", Outcome.USED, "code_used", 409)
    if row.expires_at <= timezone.now():
        raise refuse(
            "This pairing code has expired: show a new code at /pair/mobile",
            Outcome.EXPIRED,
            "code_expired",
            410,
        )
    return row


def claim_mobile_session(
    *,
    code: str,
    device_name: str,
    platform: str,
    hardware: dict,
    runtimes: Iterable[str],
    app_version: str = "",
    nkey: str | None = None,
    ip: str,
) -> tuple[Island, str, MobilePairingSession, str]:
    """Create the phone's Island for the session's account; returns it with its token
    and, when the phone sent no key of its own, the seed of the key made for it."""
    code = codes.normalize(code)
    # A key made here is new to the world; one the phone sent may be taken already.
    seed = "" if nkey else keys.new_seed()
    island, token, session = attempt(
        Kind.MOBILE,
        code,
        None,
        ip,
        lambda: _claim(
            code=code,
            device_name=device_name,
            platform=platform,
            hardware=hardware,
            runtimes=runtimes,
            app_version=app_version,
            nkey=nkey or keys.public_key(seed),
            check_key=not seed,
            ip=ip,
        ),
    )
    records.attempted(
        kind=Kind.MOBILE, user=session.user, ip=ip, code=code, outcome=Outcome.CLAIMED,
        island_id=island.pk,
    )  # fmt: skip
    return island, token, session, seed


def hash_token(token: str) -> str:
    # 256 random bits: a fast hash is as safe as a slow one and keeps checks cheap.
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def _claim(
    *,
    code: str,
    device_name: str,
    platform: str,
    hardware: dict,
    runtimes: Iterable[str],
    app_version: str,
    nkey: str,
    check_key: bool,
    ip: str,
) -> tuple[Island, str, MobilePairingSession]:
    session = _find_mobile_session(code=code, ip=ip, lock=True)
    if check_key and Island.objects.filter(nkey=nkey).exists():
        raise refuse("This key belongs to another Island", Outcome.USED, "key_in_use", 409)
    now = timezone.now()
    runtime = MOBILE_RUNTIME[platform]
    token = secrets.token_urlsafe(32)
    island = Island.objects.create(
        id=uuid.uuid4(),
        owner=session.user,
        name=device_name,
        platform=platform,
        agent_version=app_version,
        capabilities=dict(hardware),
        runtimes=list(dict.fromkeys([runtime, *runtimes])),
        registered_at=now,
        paired_at=now,
        nkey=nkey,
        token_hash=hash_token(token),
        token_expires_at=now + settings.MOBILE_TOKEN_TTL,
    )
    session.claimed_at = now
    session.island = island
    session.save(update_fields=["claimed_at", "island"])
    event = paired_event(island, session_id=str(session.pk))
    after_commit(lambda: send_to_user(session.user_id, event))
    # The phone acts for the account that opened the session.
    records.log_pairing(
        island, account=session.user, actor=audit_log.Actor(user=session.user, ip=ip)
    )
    return island, token, session
