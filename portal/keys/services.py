"""Minting, editing and revoking keys, within the limits of whoever does it, and the
audit trail of every change (portal.models.ApiKeyChange, and a line of the account's
audit log: portal.audit).

A key acting on keys (it needs the ``keys`` scope: portal.api.keys) can only make or
leave a key within its own limits: scopes among its own, each of its caps, its expiry,
Cargos and addresses at least as tight. So a leaked key cannot mint a stronger one, nor
keep itself alive past its expiry, nor loosen (or revoke) a stronger key. The portal's
session has no such bound: it is the account holder."""

from datetime import datetime
from decimal import Decimal
from ipaddress import ip_network
from typing import Any

from django.db import transaction

from core.errors import ApiError
from portal import audit, services
from portal.audit import Actor
from portal.keycache import forget_key
from portal.models import ApiKey, ApiKeyChange, User

CAPS = ("spend_cap_day", "spend_cap_month", "spend_cap_total", "jobs_per_minute")
EDITABLE = ("name", "scopes", "expires_at", *CAPS, "allowed_cargos", "allowed_ips")


def exceeding(own: ApiKey, state: dict) -> list[str]:
    """The fields of ``state`` (a key's fields) that go beyond the key ``own``."""
    beyond = []
    if not set(state["scopes"]) <= set(own.scopes):
        beyond.append("scopes")
    for name in CAPS:
        mine, theirs = getattr(own, name), state[name]
        if mine is not None and (theirs is None or theirs > mine):
            beyond.append(name)
    if own.expires_at and (state["expires_at"] is None or state["expires_at"] > own.expires_at):
        beyond.append("expires_at")
    if own.allowed_cargos and not (
        state["allowed_cargos"] and set(state["allowed_cargos"]) <= set(own.allowed_cargos)
    ):
        beyond.append("allowed_cargos")
    mine_nets = [ip_network(n, strict=False) for n in own.allowed_ips]
    theirs_nets = [ip_network(n, strict=False) for n in state["allowed_ips"]]
    if mine_nets and not (
        theirs_nets and all(any(_within(t, m) for m in mine_nets) for t in theirs_nets)
    ):
        beyond.append("allowed_ips")
    return beyond


def _within(inner: Any, outer: Any) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)


def _check_within(actor: Actor, state: dict, *, doing: str) -> None:
    own = actor.acting_key()
    if own is None:
        return
    beyond = exceeding(own, state)
    if beyond:
        raise ApiError(
            f"An API key can only {doing} keys within its own scopes and limits: "
            + ", ".join(beyond),
            code="beyond_own_limits",
            status_code=403,
            fields=beyond,
        )


def state_of(key: ApiKey) -> dict:
    return {name: getattr(key, name) for name in EDITABLE}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


ACTIONS = {
    "created": audit.Action.KEY_CREATED,
    "updated": audit.Action.KEY_UPDATED,
    "revoked": audit.Action.KEY_REVOKED,
}


def _record(actor: Actor, key: ApiKey, action: str, changes: dict) -> None:
    ApiKeyChange.objects.create(
        key=key,
        user=_person(actor),
        action=action,
        changes={name: [_json(before), _json(after)] for name, (before, after) in changes.items()},
        by_key_id=actor.key_id,
        by_session=actor.session,
        ip=actor.ip,
    )
    audit.record(
        account=key.user,
        action=ACTIONS[action],
        actor=actor,
        key_id=str(key.pk),
        key=f"{key.name} ({key.prefix})",
        fields=sorted(changes),
    )


def _person(actor: Actor) -> User:
    if actor.user is None:
        raise ValueError("keys are changed by a signed-in account")
    return actor.user


@transaction.atomic
def create_key(*, actor: Actor, name: str, scopes: list[str], **limits: Any) -> tuple[ApiKey, str]:
    """A new key of ``actor``'s account (``limits``: of :data:`EDITABLE`); 403 when
    ``actor`` is a key and the new one would go beyond it."""
    state: dict[str, Any] = dict.fromkeys((*CAPS, "expires_at"))
    state.update(allowed_cargos=[], allowed_ips=[], name=name, scopes=sorted(scopes))
    state.update(limits)
    _check_within(actor, state, doing="create")
    key, raw = services.create_api_key(user=_person(actor), name=name, scopes=scopes, **limits)
    _record(actor, key, "created", {n: (None, v) for n, v in state_of(key).items() if v})
    return key, raw


@transaction.atomic
def update_key(*, actor: Actor, key: ApiKey, changes: dict) -> ApiKey:
    """Apply ``changes`` (of :data:`EDITABLE`) to the key and record them; 403 when
    ``actor`` is a key and the result would go beyond it."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    before = state_of(key)
    after = {**before, **changes}
    if "scopes" in changes:
        after["scopes"] = sorted(set(changes["scopes"]))
    _check_within(actor, after, doing="edit")
    changed = {n: (before[n], after[n]) for n in EDITABLE if before[n] != after[n]}
    if changed:
        for name, (_, value) in changed.items():
            setattr(key, name, value)
        key.save(update_fields=list(changed))
        _record(actor, key, "updated", changed)
        _forget(key)
    return key


def _forget(key: ApiKey) -> None:
    """This process reads the key anew on its next request; the others within
    API_KEY_CACHE_SECONDS (portal.api.auth)."""
    transaction.on_commit(lambda: forget_key(key.key_hash))


@transaction.atomic
def revoke_key(*, actor: Actor, key: ApiKey) -> None:
    """Revoke the key (a key may revoke itself, or a key within its own limits)."""
    if str(key.pk) != actor.key_id:
        _check_within(actor, state_of(key), doing="revoke")
    if key.revoked_at is None:
        services.revoke_api_key(key=key)
        _record(actor, key, "revoked", {"revoked_at": (None, key.revoked_at)})


def changes_of(user: User, key_id: Any = None):
    """The account's audit trail (of one key), newest first."""
    rows = ApiKeyChange.objects.filter(key__user=user).select_related("key", "by_key", "user")
    return rows.filter(key_id=key_id) if key_id is not None else rows
