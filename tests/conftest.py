"""Shared fixtures: personas (patient, practitioner, coordinator, auditor, admin, outsider), Redis, browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher

from accounts.models import Establishment, Role, User
from tests.factories import (
    EstablishmentFactory,
    PractitionerProfileFactory,
    StaffMembershipFactory,
    UserFactory,
    confirmed_totp_device,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(reason: str) -> None:
    """In CI a missing service is a failure, never a silent skip; elsewhere the test is skipped with the reason."""
    if IN_CI:
        pytest.fail(f"Required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _flushable_audit_trail():
    """Let Django's test flush (after transactional and live-server tests) empty the append-only audit tables.

    Their triggers refuse TRUNCATE for every role (audit/migrations/0002); the flush runs in one transaction,
    so `SET LOCAL session_replication_role = replica` (superuser only, as the test user is) switches the
    triggers off for that transaction alone. Production code never flushes.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET LOCAL session_replication_role = replica", *statements] if statements else statements

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@dataclass
class Personas:
    establishment: Establishment
    other_establishment: Establishment
    patient: User
    practitioner: User
    coordinator: User
    admin: User
    auditor: User
    outsider: User  # a practitioner elsewhere who "should have no access"


@pytest.fixture
def personas(db) -> Personas:
    home = EstablishmentFactory(name="Centro de Salud Belén", renipress_code="00006210")
    away = EstablishmentFactory(name="Hospital Regional del Sur", renipress_code="00007380")
    practitioner = PractitionerProfileFactory(user__email="medico@example.test").user
    outsider = PractitionerProfileFactory(user__email="ajeno@example.test").user
    StaffMembershipFactory(user=practitioner, establishment=home)
    StaffMembershipFactory(user=outsider, establishment=away)
    coordinator = StaffMembershipFactory(
        user__email="coordinacion@example.test", user__role=Role.COORDINATOR, establishment=home
    ).user
    admin = StaffMembershipFactory(
        user__email="admin@example.test", user__role=Role.CLINIC_ADMIN, establishment=home
    ).user
    auditor = StaffMembershipFactory(
        user__email="auditoria@example.test", user__role=Role.AUDITOR, establishment=home
    ).user
    for staff in (practitioner, outsider, coordinator, admin, auditor):
        confirmed_totp_device(staff)
    patient = UserFactory(email="paciente@example.test", role=Role.PATIENT)
    return Personas(home, away, patient, practitioner, coordinator, admin, auditor, outsider)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        require_service("REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require_service(f"Redis at REDIS_URL does not answer ({type(exc).__name__})")
    return url


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


@pytest.fixture(autouse=True)
def _fresh_keyring():
    """Each test loads data keys from its own database: no unwrapped key cached from an earlier test."""
    from teleconsult import crypto

    crypto.reset_keyring()
    yield
    crypto.reset_keyring()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts and ends in the default language: LocaleMiddleware activates a request's language in
    the test's thread and never deactivates it, which would leak English into the next test."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _low_cost_password_hashing(settings):
    """Argon2 at its lowest cost for every test: the same algorithm and code path as production, without
    ~0.3 s per persona. Production cost parameters are checked in tests/accounts."""
    settings.PASSWORD_HASHERS = ["tests.conftest.LowCostArgon2PasswordHasher"]


class LowCostArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 256
    parallelism = 1


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread while it is
# open, which would break pytest-asyncio tests that run after a browser test in another module.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        require_service(f"Chromium not found at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread; Django's ORM in the same thread is safe
    # here because the test drives the browser and the database one step at a time.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(locale="es-PE", base_url=live_server.url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


@pytest.fixture
def login_as(client):
    """Sign a persona in on the Django test client, with the second factor verified for staff.

    For tests of pages other than sign-in itself (the sign-in flow has its own tests end to end).
    """
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def _login(user: User):
        client.force_login(user)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is not None:
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()
        return client

    return _login
