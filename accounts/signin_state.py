"""Session state of signing in: the half-way point between password and second factor, completion, activity."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user, login
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from django_otp import login as otp_login
from django_otp.models import Device

from accounts.models import User

# Between the password and the second factor the session holds only these keys, never an authenticated
# user: nothing (views, websocket consumers) can mistake a half-signed-in staff member for a signed-in one.
PENDING_USER_KEY = "accounts_pending_user"
PENDING_HASH_KEY = "accounts_pending_hash"
PENDING_AT_KEY = "accounts_pending_at"
PENDING_NEXT_KEY = "accounts_pending_next"
PENDING_VALID_SECONDS = 600
LAST_ACTIVITY_KEY = "accounts_last_activity"
BACKUP_CODES_KEY = "accounts_backup_codes_once"
BACKUP_NEXT_KEY = "accounts_backup_codes_next"
_BACKEND = "accounts.sessions.AccountBackend"


def session_user(session: SessionBase | None) -> AbstractBaseUser | AnonymousUser:
    """Who a session is signed in as, decided as Django decides it for a request (the session's user and backend,
    the session hash bound to the password; a session that fails the check is flushed). For the websocket
    consumers, which call it inside their first database call rather than through channels' AuthMiddleware: that
    middleware looks the user up in a thread hop of its own before the consumer may accept the handshake."""
    if session is None:
        return AnonymousUser()
    request = HttpRequest()
    request.session = session
    return get_user(request)


def begin_pending(request: HttpRequest, user: User, next_url: str | None) -> None:
    """The password was right; the second factor is still to come. A new session key stops fixation, and
    whoever was signed in on this browser before (even half-way) is signed out first."""
    if SESSION_KEY in request.session:
        request.session.flush()
    else:
        request.session.cycle_key()
    request.session[PENDING_USER_KEY] = user.pk
    # Bound to the password hash, like Django's own session hash: a password change voids the half-way state.
    request.session[PENDING_HASH_KEY] = user.get_session_auth_hash()
    request.session[PENDING_AT_KEY] = int(time.time())
    request.session[PENDING_NEXT_KEY] = next_url or ""


def pending_user(request: HttpRequest) -> User | None:
    user_id = request.session.get(PENDING_USER_KEY)
    started = request.session.get(PENDING_AT_KEY)
    if not isinstance(user_id, int) or not isinstance(started, int):
        return None
    if time.time() - started > PENDING_VALID_SECONDS:
        clear_pending(request)
        return None
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(
        request.session.get(PENDING_HASH_KEY, ""), user.get_session_auth_hash()
    ):
        clear_pending(request)
        return None
    return user


def pending_next(request: HttpRequest) -> str:
    return str(request.session.get(PENDING_NEXT_KEY) or "")


def clear_pending(request: HttpRequest) -> None:
    for key in (PENDING_USER_KEY, PENDING_HASH_KEY, PENDING_AT_KEY, PENDING_NEXT_KEY):
        request.session.pop(key, None)


def complete_signin(request: HttpRequest, user: User, device: Device | None) -> None:
    """Sign the user in (Django cycles the session key again) and mark the second factor as verified."""
    clear_pending(request)
    login(request, user, backend=_BACKEND)
    if device is not None:
        otp_login(request, device)
    touch_activity(request)


def touch_activity(request: HttpRequest) -> None:
    request.session[LAST_ACTIVITY_KEY] = int(time.time())


def idle_timeout_seconds(user: User) -> int:
    return settings.STAFF_IDLE_TIMEOUT_SECONDS if user.is_staff_member else settings.PATIENT_IDLE_TIMEOUT_SECONDS
