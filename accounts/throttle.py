"""Sign-in throttling and lockout, per account and per source address, shared by every process via PostgreSQL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import SignInThrottle, ThrottleScope

_HMAC_SALT = "teleconsult.accounts.signin-throttle"


def normalise_email(email: str) -> str:
    """The form of an e-mail address that identifies an account: NFKC, trimmed, lower case."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def _address_network(address: str) -> str:
    # An IPv6 client usually controls a whole /64, so that is the unit counted; IPv4 is counted per address.
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _keyed_hash(scope: str, value: str) -> str:
    return salted_hmac(f"{_HMAC_SALT}.{scope}", value, algorithm="sha256").hexdigest()


def account_key(email: str) -> str:
    """The stored key of an account's counter: a keyed hash of the normalised e-mail, never the e-mail."""
    return _keyed_hash(ThrottleScope.ACCOUNT, normalise_email(email))


@dataclass(frozen=True)
class ThrottleKeys:
    """The two counters one attempt touches. Holds only keyed hashes."""

    account: str
    address: str

    @classmethod
    def for_attempt(cls, *, email: str, address: str) -> ThrottleKeys:
        return cls(account=account_key(email), address=_keyed_hash(ThrottleScope.ADDRESS, _address_network(address)))

    def pairs(self) -> tuple[tuple[ThrottleScope, str, int], ...]:
        return (
            (ThrottleScope.ACCOUNT, self.account, settings.LOGIN_FAILURE_LIMIT_ACCOUNT),
            (ThrottleScope.ADDRESS, self.address, settings.LOGIN_FAILURE_LIMIT_ADDRESS),
        )


def locked_scopes(keys: ThrottleKeys, *, now: dt.datetime | None = None) -> list[str]:
    """The scopes (account, address) currently locked out for this attempt."""
    now = now or timezone.now()
    wanted = Q(scope=ThrottleScope.ACCOUNT, key_hash=keys.account) | Q(
        scope=ThrottleScope.ADDRESS, key_hash=keys.address
    )
    return sorted(SignInThrottle.objects.filter(wanted, locked_until__gt=now).values_list("scope", flat=True))


# One statement per counter: insert-or-update is atomic in PostgreSQL, so concurrent failures from several
# processes each count exactly once without an explicit row lock. A counter starts over when its window
# has passed or its lockout has ended; reaching the limit sets `locked_until`.
_RECORD_FAILURE_SQL = """
INSERT INTO accounts_signinthrottle AS t (scope, key_hash, failures, window_started_at, locked_until)
VALUES (%(scope)s, %(key)s, 1, %(now)s, CASE WHEN 1 >= %(limit)s THEN %(lock_end)s::timestamptz END)
ON CONFLICT (scope, key_hash) DO UPDATE SET
    failures = CASE WHEN t.window_started_at <= %(window_start)s OR t.locked_until <= %(now)s
                    THEN 1 ELSE t.failures + 1 END,
    window_started_at = CASE WHEN t.window_started_at <= %(window_start)s OR t.locked_until <= %(now)s
                             THEN %(now)s ELSE t.window_started_at END,
    locked_until = CASE
        WHEN t.locked_until > %(now)s THEN t.locked_until
        WHEN (CASE WHEN t.window_started_at <= %(window_start)s OR t.locked_until <= %(now)s
                   THEN 1 ELSE t.failures + 1 END) >= %(limit)s THEN %(lock_end)s::timestamptz
        ELSE NULL END
RETURNING locked_until
"""


def record_failure(keys: ThrottleKeys, *, now: dt.datetime | None = None) -> list[str]:
    """Count one failed attempt on both counters; return the scopes that this failure locked out."""
    now = now or timezone.now()
    window_start = now - dt.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    lock_end = now + dt.timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    newly_locked: list[str] = []
    with connection.cursor() as cursor:
        for scope, key, limit in keys.pairs():
            cursor.execute(
                _RECORD_FAILURE_SQL,
                {
                    "scope": scope.value,
                    "key": key,
                    "now": now,
                    "limit": limit,
                    "lock_end": lock_end,
                    "window_start": window_start,
                },
            )
            (locked_until,) = cursor.fetchone()
            # Only the failure that set this very lock reports it (an earlier lock keeps its own end time).
            if locked_until is not None and locked_until == lock_end:
                newly_locked.append(scope.value)
    return newly_locked


def clear_account(*, email: str) -> None:
    """A complete sign-in forgives the account's earlier failures (the address counter is left alone, so
    one valid account cannot be used to reset an address that is guessing at others)."""
    SignInThrottle.objects.filter(scope=ThrottleScope.ACCOUNT, key_hash=account_key(email)).delete()


def prune(*, now: dt.datetime | None = None) -> int:
    """Delete counters that can no longer affect anything (window and lockout both over)."""
    now = now or timezone.now()
    horizon = now - dt.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS + settings.LOGIN_LOCKOUT_SECONDS)
    deleted, _ = SignInThrottle.objects.filter(window_started_at__lt=horizon).exclude(locked_until__gt=now).delete()
    return deleted
