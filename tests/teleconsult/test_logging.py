"""Structured logs (OPS-3) that never carry personal data (SEC-6): formatters, access log, real config."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings

from teleconsult import request_context
from teleconsult.logging import JsonFormatter, RequestIdFilter, TextFormatter, redact, safe_traceback


def _json_formatter() -> JsonFormatter:
    # Built from the very arguments settings.LOGGING gives it (python-json-logger 4's keyword names).
    arguments = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
    assert settings.LOGGING["formatters"]["json"]["()"] == "teleconsult.logging.JsonFormatter"
    return JsonFormatter(**arguments)


def _record(message: str, *args: object, exc_info=None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("teleconsult.test", logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    RequestIdFilter().filter(record)
    return record


def test_json_line_has_time_level_logger_message_and_request_id():
    token = request_context.activate(request_context.RequestContext(request_id="req-0123456789"))
    try:
        line = _json_formatter().format(_record("signed %s", "in", route="/accounts/login/", status=302))
    finally:
        request_context.deactivate(token)
    data = json.loads(line)
    assert data["request_id"] == "req-0123456789"
    assert data["level"] == "WARNING"
    assert data["logger"] == "teleconsult.test"
    assert data["message"] == "signed in"
    assert data["route"] == "/accounts/login/"
    assert data["status"] == 302
    assert "time" in data


def test_json_output_drops_unknown_extra_fields():
    # Django's request logger attaches the request, whose repr includes the query string.
    line = _json_formatter().format(
        _record(
            "boom",
            email="ana@example.pe",
            full_name="Ana Flores",
            request="<ASGIRequest: GET '/x?dni=1'>",
            patient_id=42,
            duration_ms=3.5,
        )
    )
    data = json.loads(line)
    assert "email" not in data and "full_name" not in data and "request" not in data
    assert data["patient_id"] == 42
    assert data["duration_ms"] == 3.5


def test_messages_are_redacted_as_a_last_line_of_defence():
    assert redact("login for ana.flores+x@example.pe failed") == "login for [email] failed"
    assert redact("dni 45678912, ok") == "dni [dni?], ok"
    # Longer numbers, decimals and hex request ids are left alone.
    assert redact("id 123456789 took 12.12345678 ab12345678cd") == "id 123456789 took 12.12345678 ab12345678cd"
    line = _json_formatter().format(_record("user %s", "ana@example.pe"))
    assert "ana@example.pe" not in line
    text = TextFormatter("%(message)s").format(_record("user %s dni %s", "ana@example.pe", "45678912"))
    assert text == "user [email] dni [dni?]"


EMAIL, DNI = "ana@example.pe", "45678912"


def _raise_with_data(email: str, dni: str):
    # As a database error would: the values come from data, not from the source line.
    try:
        raise KeyError(dni)
    except KeyError as inner:
        raise ValueError(f"Key (email)=({email}) already exists.") from inner


def test_tracebacks_keep_frames_but_withhold_exception_messages():
    try:
        _raise_with_data(EMAIL, DNI)
    except ValueError:
        exc_info = sys.exc_info()
    rendered = safe_traceback(exc_info)
    assert "_raise_with_data" in rendered
    assert "builtins.ValueError: (message withheld)" in rendered
    assert "builtins.KeyError: (message withheld)" in rendered
    assert "direct cause" in rendered
    assert "ana@example.pe" not in rendered and "45678912" not in rendered
    for formatter in (_json_formatter(), TextFormatter("%(message)s")):
        output = formatter.format(_record("failed", exc_info=exc_info))
        assert "ana@example.pe" not in output and "45678912" not in output
        assert "ValueError" in output


@pytest.mark.django_db
def test_access_log_line_has_the_route_pattern_not_the_path(client, caplog):
    with caplog.at_level(logging.INFO, logger="teleconsult.access"):
        response = client.get("/accounts/login/?email=ana%40example.pe&dni=45678912")
        client.get("/no/such/page/ana@example.pe")
    first, second = [r for r in caplog.records if r.name == "teleconsult.access"]
    assert first.route == "/accounts/login/"
    assert first.method == "GET"
    assert first.status == response.status_code
    assert first.request_id == response["X-Request-ID"]
    assert isinstance(first.duration_ms, float)
    assert second.route == "-" and second.status == 404
    for record in (first, second):
        assert "ana" not in record.getMessage() and "45678912" not in record.getMessage()


@pytest.mark.django_db
def test_probes_are_logged_at_debug(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="teleconsult.access"):
        client.get("/healthz")
    (record,) = [r for r in caplog.records if r.name == "teleconsult.access"]
    assert record.levelno == logging.DEBUG
    assert record.route == "/healthz"


@pytest.mark.django_db
def test_json_logging_configuration_works_end_to_end(tmp_path):
    # The real dictConfig in a fresh process: one JSON object per line on stderr, with the request id.
    code = (
        "import logging; from django.test import Client; "
        "logging.getLogger('teleconsult.check').warning('hello %s', 'ana@example.pe'); "
        "Client().get('/accounts/login/?email=ana@example.pe')"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env=os.environ | {"LOG_FORMAT": "json", "TELECONSULT_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    hello = next(line for line in lines if line["logger"] == "teleconsult.check")
    assert hello["message"] == "hello [email]"
    assert hello["request_id"] == "-"
    access = next(line for line in lines if line["logger"] == "teleconsult.access")
    assert access["route"] == "/accounts/login/"
    assert len(access["request_id"]) >= 8
    assert "ana" not in result.stderr
