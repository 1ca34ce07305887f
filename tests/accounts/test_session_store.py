"""accounts.sessions: Django's database session store and ModelBackend, their per-request reads compiled once, with
Django's behaviour (expired or unknown sessions load empty, inactive users are nobody)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.db.models.sql.compiler import SQLCompiler
from django.urls import reverse
from django.utils import timezone

from accounts.sessions import AccountBackend, SessionStore
from tests.accounts.helpers import post_password

pytestmark = pytest.mark.django_db


def test_the_project_uses_them():
    assert settings.SESSION_ENGINE == "accounts.sessions"
    assert settings.AUTHENTICATION_BACKENDS == ["accounts.sessions.AccountBackend"]


def test_a_saved_session_loads_with_its_data_without_compiling_again():
    stored = SessionStore()
    stored["answer"] = 42
    stored.save()
    SessionStore(stored.session_key).load()  # the read is compiled at most once per process
    with mock.patch.object(SQLCompiler, "as_sql", side_effect=AssertionError("compiled again")):
        loaded = SessionStore(stored.session_key)
        assert loaded["answer"] == 42
    assert loaded.session_key == stored.session_key


def test_an_expired_unknown_or_missing_session_loads_empty_and_gets_no_key():
    stored = SessionStore()
    stored["answer"] = 42
    stored.save()
    Session.objects.filter(session_key=stored.session_key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    for key in (stored.session_key, "x" * 32, None):
        session = SessionStore(key)
        assert session.load() == {}
        assert session.session_key is None
    # Saving an emptied session starts a new row under a new key; the expired one is not revived.
    fresh = SessionStore(stored.session_key)
    fresh["answer"] = 43
    fresh.save()
    assert fresh.session_key != stored.session_key
    assert SessionStore(fresh.session_key)["answer"] == 43


def test_the_backend_finds_active_users_only(personas):
    backend = AccountBackend()
    user = personas.patient
    assert backend.get_user(user.pk) == user
    assert backend.get_user(str(user.pk)) == user
    assert backend.get_user(user.pk + 10_000) is None
    assert backend.get_user("not a number") is None
    assert backend.get_user(None) is None
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert backend.get_user(user.pk) is None


def test_signing_in_through_the_site_uses_the_backend_and_the_store(client, personas):
    response = post_password(client, "paciente@example.test")
    assert response.status_code == 302
    session = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
    assert session["_auth_user_backend"] == "accounts.sessions.AccountBackend"
    assert session["_auth_user_id"] == str(personas.patient.pk)
    assert client.get(reverse("accounts:security")).status_code == 200  # the next request finds the user again


def test_a_session_signed_in_before_the_backend_was_renamed_stays_signed_in(client, personas):
    """Sessions from before this backend name Django's ModelBackend; they keep working, and name this one once saved."""
    user = personas.patient
    older = DatabaseSessionStore()
    older.update(
        {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
    )
    older.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = older.session_key
    assert client.get(reverse("accounts:security")).status_code == 200
    assert SessionStore(older.session_key)[BACKEND_SESSION_KEY] == "accounts.sessions.AccountBackend"
    # Any other backend name is not in the settings: that session signs nobody in.
    stranger = DatabaseSessionStore()
    stranger.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "elsewhere.Backend", HASH_SESSION_KEY: "x"})
    stranger.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = stranger.session_key
    assert client.get(reverse("accounts:security")).status_code == 302
