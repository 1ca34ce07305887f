"""Passwords are hashed with Argon2 at Django's production cost (tests elsewhere use a low-cost Argon2)."""

from django.contrib.auth.hashers import Argon2PasswordHasher, check_password, make_password

import teleconsult.settings as configured


def test_argon2_is_the_configured_hasher():
    assert configured.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_production_cost_hash_verifies(settings):
    settings.PASSWORD_HASHERS = configured.PASSWORD_HASHERS
    encoded = make_password("una-clave-larga-2026")
    assert encoded.startswith("argon2$argon2id$")
    hasher = Argon2PasswordHasher()
    assert hasher.decode(encoded)["memory_cost"] == Argon2PasswordHasher.memory_cost
    assert check_password("una-clave-larga-2026", encoded)
    assert not check_password("otra-clave", encoded)
