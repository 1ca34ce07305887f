"""Throttling and lockout per account and per source address, identical for unknown e-mails (SEC-2)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from accounts import throttle
from accounts.models import SignInThrottle, ThrottleScope
from accounts.throttle import ThrottleKeys
from audit.actions import AuditAction, Outcome
from tests.accounts.helpers import LOGIN, OTP, events, fresh_code, move_throttle_clock, post_password

LOCKED = "Demasiados intentos fallidos"
GENERIC = "Correo o contraseña incorrectos."
HOME = reverse("frontend:home")
WRONG = "wrong-password-123"


def _fail(client, email, times, password=WRONG):
    return [post_password(client, email, password) for _ in range(times)]


@pytest.mark.parametrize("email", ["paciente@example.test", "no-existe@example.test"])
def test_account_locks_after_the_limit_for_known_and_unknown_emails(client, personas, settings, email):
    limit = settings.LOGIN_FAILURE_LIMIT_ACCOUNT
    responses = _fail(client, email, limit)
    assert all(GENERIC in r.content.decode() for r in responses[:-1])
    assert responses[-1].status_code == 429 and LOCKED in responses[-1].content.decode()
    # Locked now: even the right password is refused, with the same message.
    right = post_password(client, email)
    assert right.status_code == 429 and LOCKED in right.content.decode()
    assert client.session.get("_auth_user_id") is None
    (lockout,) = events(AuditAction.SIGNIN_LOCKED_OUT)
    assert lockout.outcome == Outcome.DENIED and lockout.details == {"scopes": ["account"]}
    expected_actor = personas.patient.pk if email.startswith("paciente") else None
    assert lockout.actor_user_id == expected_actor
    denied = events(AuditAction.SIGNIN_FAILED, outcome=Outcome.DENIED)
    assert [e.details for e in denied] == [{"reason": "locked_out", "scopes": ["account"]}]


def test_known_and_unknown_lockouts_look_the_same(client, personas, settings):
    limit = settings.LOGIN_FAILURE_LIMIT_ACCOUNT
    known = _fail(client, "paciente@example.test", limit + 1)
    unknown = _fail(client, "no-existe@example.test", limit + 1)
    assert [r.status_code for r in known] == [r.status_code for r in unknown]


def test_lockout_ends_after_the_lockout_period(client, personas, settings):
    _fail(client, "paciente@example.test", settings.LOGIN_FAILURE_LIMIT_ACCOUNT)
    assert post_password(client, "paciente@example.test").status_code == 429
    move_throttle_clock(settings.LOGIN_LOCKOUT_SECONDS - 5)
    assert post_password(client, "paciente@example.test").status_code == 429
    move_throttle_clock(10)
    response = post_password(client, "paciente@example.test")
    assert response.status_code == 302 and response.url == HOME
    # A complete sign-in clears the account's counter.
    assert not SignInThrottle.objects.filter(scope=ThrottleScope.ACCOUNT).exists()


def test_failures_outside_the_window_do_not_add_up(client, personas, settings):
    limit = settings.LOGIN_FAILURE_LIMIT_ACCOUNT
    _fail(client, "paciente@example.test", limit - 1)
    move_throttle_clock(settings.LOGIN_FAILURE_WINDOW_SECONDS + 1)
    _fail(client, "paciente@example.test", limit - 1)
    assert post_password(client, "paciente@example.test").status_code == 302


def test_address_locks_after_its_limit_across_many_emails(client, personas, settings):
    settings.LOGIN_FAILURE_LIMIT_ADDRESS = 6
    for n in range(6):
        post_password(client, f"guess{n}@example.test", "wrong-password-123")
    (lockout,) = events(AuditAction.SIGNIN_LOCKED_OUT)
    assert lockout.details == {"scopes": ["address"]}
    # The address is locked even for a real account with the right password...
    assert post_password(client, "paciente@example.test").status_code == 429
    # ...but another address is not affected.
    other = post_password(client, "paciente@example.test", REMOTE_ADDR="203.0.113.9")
    assert other.status_code == 302


def test_counters_store_keyed_hashes_never_the_email(client, personas):
    post_password(client, "Paciente@Example.test", "wrong-password-123")
    rows = list(SignInThrottle.objects.all())
    assert {r.scope for r in rows} == {"account", "address"}
    for row in rows:
        assert len(row.key_hash) == 64 and "paciente" not in row.key_hash.lower()
        assert "127.0.0.1" not in row.key_hash
    keys = ThrottleKeys.for_attempt(email="  paciente@EXAMPLE.test", address="127.0.0.1")
    assert SignInThrottle.objects.get(scope="account").key_hash == keys.account
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_signinthrottle")
        assert "paciente" not in str(cursor.fetchall()).lower()


def test_ipv6_clients_are_counted_per_64_network():
    a = ThrottleKeys.for_attempt(email="x@example.test", address="2001:db8:1:2::1")
    b = ThrottleKeys.for_attempt(email="x@example.test", address="2001:db8:1:2:ffff::9")
    c = ThrottleKeys.for_attempt(email="x@example.test", address="2001:db8:1:3::1")
    assert a.address == b.address != c.address


def test_wrong_otp_codes_count_and_lock_the_account(client, personas, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # only our own counter is under test here
    post_password(client, "medico@example.test")
    for _ in range(settings.LOGIN_FAILURE_LIMIT_ACCOUNT - 1):
        assert client.post(OTP, {"otp_token": "000000"}).status_code == 200
    response = client.post(OTP, {"otp_token": "000000"})
    # The lockout ends the half-way sign-in; the next visit shows why.
    assert response.status_code == 302 and response.url == LOGIN
    assert LOCKED in client.get(LOGIN).content.decode()
    assert len(events(AuditAction.OTP_FAILED)) == settings.LOGIN_FAILURE_LIMIT_ACCOUNT
    (lockout,) = events(AuditAction.SIGNIN_LOCKED_OUT)
    assert lockout.actor_user_id == personas.practitioner.pk
    # Locked at the password step too, and the code no longer helps.
    assert post_password(client, "medico@example.test").status_code == 429
    assert client.post(OTP, {"otp_token": fresh_code(personas.practitioner)}).url.startswith(LOGIN)


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_each_count_once(settings):
    """Several processes failing at once: the single-statement upsert counts every failure and exactly one
    of them reports the lockout it caused."""
    settings.LOGIN_FAILURE_LIMIT_ACCOUNT = 8
    settings.LOGIN_FAILURE_LIMIT_ADDRESS = 1000
    keys = ThrottleKeys.for_attempt(email="carrera@example.test", address="198.51.100.7")
    results: list[list[str]] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        try:
            barrier.wait()
            results.append(throttle.record_failure(keys))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row = SignInThrottle.objects.get(scope=ThrottleScope.ACCOUNT, key_hash=keys.account)
    assert row.failures == 8 and row.locked_until is not None
    assert sum(1 for r in results if "account" in r) == 1
    assert throttle.locked_scopes(keys) == ["account"]


def test_prune_removes_only_finished_counters(client, personas, settings):
    post_password(client, "paciente@example.test", "wrong-password-123")
    assert throttle.prune() == 0
    move_throttle_clock(settings.LOGIN_FAILURE_WINDOW_SECONDS + settings.LOGIN_LOCKOUT_SECONDS + 1)
    assert throttle.prune() == 2


def test_prune_command(client, personas, settings):
    from io import StringIO

    from django.core.management import call_command

    post_password(client, "paciente@example.test", WRONG)
    move_throttle_clock(settings.LOGIN_FAILURE_WINDOW_SECONDS + settings.LOGIN_LOCKOUT_SECONDS + 1)
    out = StringIO()
    call_command("prune_signin_throttle", stdout=out)
    assert "Deleted 2" in out.getvalue() and not SignInThrottle.objects.exists()
