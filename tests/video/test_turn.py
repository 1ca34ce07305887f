"""TURN credentials (VID-6): the shared-secret scheme coturn implements, per participant per visit, short-lived;
and the ICE server settings, which fail loudly at start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from django.test import override_settings

from scheduling.models import ParticipantRole
from teleconsult.config import ConfigError, env_ice_servers
from tests.frontend.conftest import register
from tests.scheduling.test_joinlinks import make_appointment
from video.turn import credential_is_valid, ice_servers_for, participant_token, turn_credential

SECRET = "a-shared-secret-for-coturn-0123456789"
NOW = 1_900_000_000


@pytest.fixture
def turn_settings(settings):
    settings.TURN_SECRET = SECRET
    settings.TURN_CREDENTIAL_TTL = 600
    settings.ICE_SERVERS = [
        {"urls": ["stun:turn.example.pe:3478"]},
        {"urls": ["turn:turn.example.pe:3478?transport=udp", "turns:turn.example.pe:443?transport=tcp"]},
    ]
    return settings


@pytest.fixture
def visit(personas):
    return make_appointment(personas, register(personas))


def test_participant_gets_stun_and_turn_with_credentials_coturn_accepts(turn_settings, visit):
    patient = visit.participants.get(role=ParticipantRole.PATIENT)
    stun, turn = ice_servers_for(patient, now=NOW)

    assert stun == {"urls": ["stun:turn.example.pe:3478"]}
    assert turn["urls"] == ["turn:turn.example.pe:3478?transport=udp", "turns:turn.example.pe:443?transport=tcp"]
    expiry, token = turn["username"].split(":")
    assert int(expiry) == NOW + 600
    assert token == participant_token(patient)
    # What coturn computes with use-auth-secret: base64(HMAC-SHA1(static-auth-secret, username)).
    expected = base64.b64encode(hmac.new(SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected
    assert credential_is_valid(turn["username"], turn["credential"], now=NOW + 599)


def test_credentials_expire(turn_settings, visit):
    patient = visit.participants.get(role=ParticipantRole.PATIENT)
    _, turn = ice_servers_for(patient, now=NOW)
    assert not credential_is_valid(turn["username"], turn["credential"], now=NOW + 601)
    # A forged expiry breaks the HMAC.
    forged = f"{NOW + 86_400}:{turn['username'].split(':')[1]}"
    assert not credential_is_valid(forged, turn["credential"], now=NOW)
    assert not credential_is_valid(turn["username"], turn_credential(turn["username"], secret="another"), now=NOW)


def test_token_is_per_participant_opaque_and_stable(turn_settings, visit, personas):
    patient = visit.participants.get(role=ParticipantRole.PATIENT)
    practitioner = visit.participants.get(role=ParticipantRole.PRACTITIONER)
    token = participant_token(patient)
    assert token == participant_token(patient)
    assert token != participant_token(practitioner)
    # No personal data: not the DNI, the name or the e-mail; nor an encoding of the row id: the token is keyed by
    # the server's secret. (A short row id such as "5" may well occur among 24 base32 characters by chance.)
    for personal in ("10117410", "rosa", "quispe", personas.practitioner.email):
        assert personal not in token
    with override_settings(SECRET_KEY="another-server-secret-key-" * 2):
        assert participant_token(patient) != token
    assert token.isalnum()


def test_without_turn_servers_only_stun(settings, visit):
    settings.ICE_SERVERS = [{"urls": ["stun:stun.example.pe:3478"]}]
    patient = visit.participants.get(role=ParticipantRole.PATIENT)
    assert ice_servers_for(patient) == [{"urls": ["stun:stun.example.pe:3478"]}]


# --- Settings ---


def test_turn_and_stun_urls():
    servers = env_ice_servers(
        env={"TURN_URLS": "turn:t.example.pe:3478?transport=udp, turns:t.example.pe:443", "STUN_URLS": "stun:t.pe"}
    )
    assert servers == [
        {"urls": ["stun:t.pe"]},
        {"urls": ["turn:t.example.pe:3478?transport=udp", "turns:t.example.pe:443"]},
    ]
    assert env_ice_servers(env={}) == []


def test_ice_servers_json():
    raw = '[{"urls": "stun:[2001:db8::1]:3478"}, {"urls": ["turn:10.0.0.1?transport=tcp"]}]'
    assert env_ice_servers(env={"ICE_SERVERS": raw}) == [
        {"urls": ["stun:[2001:db8::1]:3478"]},
        {"urls": ["turn:10.0.0.1?transport=tcp"]},
    ]


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ICE_SERVERS": "[{"}, "must be JSON"),
        ({"ICE_SERVERS": '{"urls": "stun:x"}'}, "JSON list"),
        ({"ICE_SERVERS": '[{"urls": "stun:x", "username": "u", "credential": "p"}]'}, "single key"),
        ({"ICE_SERVERS": '[{"urls": []}]'}, "non-empty list"),
        ({"ICE_SERVERS": '[{"urls": "http://x"}]'}, "not a stun:"),
        ({"ICE_SERVERS": '[{"urls": "stun:x"}]', "TURN_URLS": "turn:x"}, "not both"),
        ({"TURN_URLS": "stun:x"}, "only turn:"),
        ({"STUN_URLS": "stun:x?transport=udp"}, "no transport"),
        ({"TURN_URLS": "turn:x:70000"}, "port outside"),
        ({"TURN_URLS": "turn:x?transport=sctp"}, "not a stun:"),
    ],
)
def test_bad_ice_settings_fail_loudly(env, complaint):
    with pytest.raises(ConfigError, match=complaint):
        env_ice_servers(env=env)


def test_production_with_turn_needs_the_secret(tmp_path):
    from tests.teleconsult.test_startup import _production_env, _run

    env = _production_env(tmp_path) | {"TURN_URLS": "turns:turn.example.pe:443?transport=tcp"}
    refused = _run(["manage.py", "check"], env, drop=("TURN_SECRET", "TURN_SECRET_FILE"))
    assert refused.returncode != 0
    assert "TURN_SECRET" in refused.stderr
    (tmp_path / "turn_secret").write_text("a-long-enough-turn-secret-from-a-file\n")
    accepted = _run(["manage.py", "check"], env | {"TURN_SECRET_FILE": str(tmp_path / "turn_secret")})
    assert accepted.returncode == 0, accepted.stderr


def test_bad_ice_setting_stops_start_up_naming_it(tmp_path):
    from tests.teleconsult.test_startup import _run

    result = _run(["manage.py", "check"], {"TELECONSULT_VAR_DIR": str(tmp_path), "TURN_URLS": "turn:bad host"})
    assert result.returncode != 0
    assert "TURN_URLS" in result.stderr


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ICE_TRANSPORT_POLICY": "relay"}, "ICE_TRANSPORT_POLICY=relay needs a TURN server"),
        ({"ICE_TRANSPORT_POLICY": "sometimes", "TURN_URLS": "turn:turn.example.pe:3478"}, "ICE_TRANSPORT_POLICY"),
    ],
)
def test_relay_only_policy_needs_turn_and_a_known_value(tmp_path, env, complaint):
    from tests.teleconsult.test_startup import _run

    result = _run(["manage.py", "check"], {"TELECONSULT_VAR_DIR": str(tmp_path)} | env)
    assert result.returncode != 0
    assert complaint in result.stderr
    relay = {"TELECONSULT_VAR_DIR": str(tmp_path), "ICE_TRANSPORT_POLICY": "relay", "TURN_URLS": "turn:turn.example.pe"}
    assert _run(["manage.py", "check"], relay).returncode == 0
