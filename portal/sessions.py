"""The session store (SESSION_ENGINE): Django's database store, keyed by the SHA-256 of
the session key. The cookie holds the key and the database only its hash, so a dump of
the table hands nobody a session (the stored value, sent as a cookie, is hashed again and
matches nothing). Each row also names its account, for "Sign out everywhere".
"""

import hashlib

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from portal import audit, signals
from portal.models import Session, User


def stored_key(session_key: str) -> str:
    # A session key has ~165 random bits: a fast hash is as safe as a slow one here.
    return hashlib.sha256(session_key.encode()).hexdigest()


class SessionStore(DatabaseStore):
    @classmethod
    def get_model_class(cls):
        return Session

    def _live(self, session_key: str):
        return self.model.objects.filter(
            session_key=stored_key(session_key), expire_date__gt=timezone.now()
        )

    def _get_session_from_db(self):
        found = self._live(self.session_key).first()
        if found is None:
            self._session_key = None
        return found

    async def _aget_session_from_db(self):
        found = await self._live(self.session_key).afirst()
        if found is None:
            self._session_key = None
        return found

    def exists(self, session_key):
        return self.model.objects.filter(session_key=stored_key(session_key)).exists()

    async def aexists(self, session_key):
        return await self.model.objects.filter(session_key=stored_key(session_key)).aexists()

    def create_model_instance(self, data):
        return self._stored(super().create_model_instance(data), data)

    async def acreate_model_instance(self, data):
        return self._stored(await super().acreate_model_instance(data), data)

    @staticmethod
    def _stored(row: Session, data: dict) -> Session:
        row.session_key = stored_key(row.session_key)
        row.user_id = data.get(SESSION_KEY)
        return row

    def delete(self, session_key=None):
        key = session_key or self.session_key
        if key is not None:
            self.model.objects.filter(session_key=stored_key(key)).delete()

    async def adelete(self, session_key=None):
        key = session_key or self.session_key
        if key is not None:
            await self.model.objects.filter(session_key=stored_key(key)).adelete()


def others(*, user: User, keep: str | None) -> QuerySet[Session]:
    """The live sessions of ``user`` but the one whose key is ``keep``."""
    rows = Session.objects.filter(user=user, expire_date__gt=timezone.now())
    return rows.exclude(session_key=stored_key(keep)) if keep else rows


@transaction.atomic
def end_other_sessions(*, user: User, keep: str | None, actor: audit.Actor | None = None) -> int:
    """End every session of ``user`` but the one whose key is ``keep``; their open
    websockets close too. Returns how many ended."""
    rows = Session.objects.filter(user=user)
    ended = (rows.exclude(session_key=stored_key(keep)) if keep else rows).delete()[0]
    audit.record(account=user, action=audit.Action.SIGNED_OUT, actor=actor, elsewhere=ended)
    transaction.on_commit(lambda: tell_sockets(user.pk))
    return ended


def tell_sockets(user_id: object) -> None:
    """Sessions of the account ended: the apps with websockets close those whose session
    did (pairing.consumers)."""
    signals.sessions_ended.send(sender=Session, user_id=user_id)


async def session_is_live(session_key: str | None) -> bool:
    if not session_key:
        return False
    return await SessionStore()._live(session_key).aexists()
