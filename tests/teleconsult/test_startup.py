"""Start-up: malformed settings stop manage.py and daphne with one clear line; production settings pass
`check --deploy`; the first development run writes its secrets and TLS key readable by the owner only."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
SECRET_MARKER = "hunter2-do-not-print"


def _run(args: list[str], env_overrides: dict[str, str], *, drop: tuple[str, ...] = (), timeout: int = 60):
    # Only our variables change; DJANGO_ALLOW_ASYNC_UNSAFE (set by the browser fixture) never reaches a
    # production check, where Django rightly flags it.
    env = {key: value for key, value in os.environ.items() if key not in (*drop, "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _production_env(var_dir: Path) -> dict[str, str]:
    return {
        "TELECONSULT_ENV": "production",
        "TELECONSULT_VAR_DIR": str(var_dir),
        "SECRET_KEY": secrets.token_urlsafe(60),
        "TELECONSULT_KEK": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELECONSULT_AUDIT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELECONSULT_INDEX_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "teleconsult.example.pe",
        "DATABASE_URL": "postgres://teleconsult:db-password@db.internal:5432/teleconsult",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "EMAIL_URL": "smtp://mailer:mail-password@smtp.example.pe:587",
        "LOG_FORMAT": "json",
        "DEBUG": "false",
    }


BAD_SETTINGS = [
    pytest.param({"LOGIN_LOCKOUT_SECONDS": "abc"}, "LOGIN_LOCKOUT_SECONDS", "abc", id="int"),
    pytest.param({"DATABASE_URL": f"mysql://app:{SECRET_MARKER}@db/x"}, "DATABASE_URL", SECRET_MARKER, id="db-scheme"),
    pytest.param({"TELECONSULT_KEK": f"{SECRET_MARKER}!!"}, "TELECONSULT_KEK", SECRET_MARKER, id="kek-base64"),
    pytest.param({"DEBUG": "maybe"}, "DEBUG", "maybe", id="bool"),
    pytest.param({"REDIS_URL": f"http://:{SECRET_MARKER}@cache:6379"}, "REDIS_URL", SECRET_MARKER, id="redis-scheme"),
    pytest.param({"TELECONSULT_ENV": "staging"}, "TELECONSULT_ENV", "staging", id="env-choice"),
]


@pytest.mark.parametrize(("overrides", "variable", "value"), BAD_SETTINGS)
def test_bad_setting_stops_manage_py_with_one_line(tmp_path, overrides, variable, value):
    result = _run(["manage.py", "check"], {"TELECONSULT_VAR_DIR": str(tmp_path), **overrides})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Configuration error: ")
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if value not in variable:
        assert value not in result.stderr


def test_production_without_secret_key_is_refused(tmp_path):
    env = _production_env(tmp_path)
    result = _run(["manage.py", "check"], {k: v for k, v in env.items() if k != "SECRET_KEY"}, drop=("SECRET_KEY",))
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    for name in ("TELECONSULT_KEK", "TELECONSULT_AUDIT_KEY", "TELECONSULT_INDEX_KEY"):
        assert env[name] not in result.stderr


def test_bad_setting_stops_daphne_the_same_way(tmp_path):
    result = _run(
        ["-m", "teleconsult.daphne_main", "-p", "0", "teleconsult.asgi:application"],
        {"TELECONSULT_VAR_DIR": str(tmp_path), "LOGIN_LOCKOUT_SECONDS": "abc"},
    )
    assert result.returncode == 2
    assert "Configuration error: LOGIN_LOCKOUT_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_settings_pass_check_deploy(tmp_path):
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], _production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_secrets_can_come_from_files(tmp_path):
    env = _production_env(tmp_path)
    secret_file = tmp_path / "database_url"
    secret_file.write_text(env.pop("DATABASE_URL") + "\n")
    key_file = tmp_path / "secret_key"
    key_file.write_text(env.pop("SECRET_KEY"))
    env |= {"DATABASE_URL_FILE": str(secret_file), "SECRET_KEY_FILE": str(key_file)}
    result = _run(["manage.py", "check", "--deploy"], env, drop=("DATABASE_URL", "SECRET_KEY"))
    assert result.returncode == 0, result.stderr


def test_unreadable_secret_file_is_named(tmp_path):
    env = _production_env(tmp_path) | {"DATABASE_URL_FILE": str(tmp_path / "missing")}
    result = _run(["manage.py", "check"], env)
    assert result.returncode == 2
    assert "DATABASE_URL_FILE" in result.stderr


def test_first_development_run_writes_private_secrets_and_tls_key(tmp_path):
    from teleconsult.localvar import development_secrets, self_signed_certificate

    values = development_secrets(tmp_path)
    assert set(values) >= {
        "SECRET_KEY",
        "TELECONSULT_KEK",
        "TELECONSULT_AUDIT_KEY",
        "TELECONSULT_INDEX_KEY",
        "TELECONSULT_TURN_SECRET",
    }
    assert development_secrets(tmp_path) == values  # read back, not regenerated
    cert, key = self_signed_certificate(tmp_path)
    for private in (tmp_path / "secrets.json", key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert b"BEGIN CERTIFICATE" in cert.read_bytes()
    assert self_signed_certificate(tmp_path) == (cert, key)
