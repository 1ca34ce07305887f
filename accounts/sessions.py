"""The session store and the authentication backend: Django's database ones, with their per-request reads compiled
once per process.

Every authenticated request and every visit websocket that joins reads its session row and its user row. Through the
ORM each of those reads is built and compiled to SQL again, which was a fifth of the CPU of a visit join on the
process's one sync thread (docs/decisions.md, "Prepared reads"). Behaviour is Django's: an expired or unknown
session key loads as an empty session, the user must still be able to authenticate (active), and everything
else (saving, cycling keys, the session hash bound to the password) is the parent classes' own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.models import User
from teleconsult.prepared import PreparedRead

# The expiry is compared here rather than in SQL, so the read has one value: the key.
_SESSION = PreparedRead(lambda session_key: Session.objects.filter(session_key=session_key), session_key=str)
_USER = PreparedRead(lambda user_id: User.objects.filter(pk=user_id), user_id=int)


# Sessions signed in before this backend existed name Django's ModelBackend, which this one is, with the same password
# check: they stay signed in (saved again, they name this one).
_RENAMED_BACKENDS = {"django.contrib.auth.backends.ModelBackend": "accounts.sessions.AccountBackend"}


def _renamed(data: dict[str, Any]) -> dict[str, Any]:
    renamed = _RENAMED_BACKENDS.get(data.get(BACKEND_SESSION_KEY, ""))
    if renamed is not None:
        data[BACKEND_SESSION_KEY] = renamed
    return data


class SessionStore(DatabaseSessionStore):
    def load(self) -> dict[str, Any]:
        return _renamed(super().load())

    async def aload(self) -> dict[str, Any]:
        return _renamed(await super().aload())

    def _get_session_from_db(self) -> Session | None:
        key = self.session_key
        found = _SESSION.first(session_key=key) if key else None
        if found is None or found.expire_date <= timezone.now():
            self._session_key = None
            return None
        return found


class AccountBackend(ModelBackend):
    """Django's ModelBackend (passwords, permissions), with the signed-in user's row read through a prepared read."""

    def get_user(self, user_id: Any) -> User | None:
        try:
            pk = int(user_id)
        except (TypeError, ValueError):
            return None
        user = _USER.first(user_id=pk)
        return user if user is not None and self.user_can_authenticate(user) else None
