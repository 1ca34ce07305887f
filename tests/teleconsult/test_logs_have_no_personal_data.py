"""SEC-6 end to end: a full sign-in flow through the real forms leaves no personal data in any log record.

Every record emitted while it runs (at DEBUG, from every logger, including those that do not propagate)
is checked three ways: its message with arguments, every attribute it carries, and the line our JSON
formatter renders from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Role
from teleconsult.logging import JsonFormatter, RequestIdFilter
from tests.factories import DEMO_PASSWORD, UserFactory, current_totp_token

pytestmark = pytest.mark.django_db

PATIENT_NAME = "Rosa Quispe Mamani"
PATIENT_DNI = "45678912"  # DNI-shaped, also part of the e-mail below
PATIENT_EMAIL = f"rosa.quispe.{PATIENT_DNI}@example.test"
OTHER_PATIENT_NAME = "Teodoro Ccahuana Huillca"
OTHER_PATIENT_EMAIL = "teodoro.ccahuana@example.test"
UNKNOWN_EMAIL = "nadie.87654321@example.test"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    # The root and every configured logger that does not pass records up (django.request) get the handler.
    targets = [root] + [
        logging.getLogger(name)
        for name, config in settings.LOGGING.get("loggers", {}).items()
        if config.get("propagate", True) is False
    ]
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    for logger in targets:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in targets:
            logger.removeHandler(handler)
        root.setLevel(previous_level)


def _json_formatter() -> JsonFormatter:
    arguments = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
    return JsonFormatter(**arguments)


def _texts(record: logging.LogRecord, formatter: JsonFormatter) -> dict[str, str]:
    return {
        "message": record.getMessage(),
        "args": repr(record.args),
        "attributes": repr({k: v for k, v in vars(record).items() if k not in ("msg", "args", "message")}),
        "json": formatter.format(record),
    }


def _sign_in_flow(client, practitioner, device: TOTPDevice) -> None:
    login, otp, home = reverse("accounts:login"), reverse("accounts:otp"), reverse("frontend:home")
    # A patient: the sign-in page, a failed attempt with their e-mail, then the real sign-in (password only).
    assert client.get(f"{login}?next=/&email={PATIENT_EMAIL}").status_code == 200
    failed = client.post(login, {"email": PATIENT_EMAIL, "password": "not-the-password-1"})
    assert failed.status_code == 200
    assert client.post(login, {"email": UNKNOWN_EMAIL, "password": "not-the-password-1"}).status_code == 200
    signed_in = client.post(login, {"email": PATIENT_EMAIL, "password": DEMO_PASSWORD})
    assert signed_in.status_code == 302
    assert client.get(home).status_code == 200
    assert client.get(reverse("accounts:security")).status_code == 200
    client.post(reverse("accounts:logout"))

    # A practitioner: password, then the code from their authenticator app.
    assert client.post(login, {"email": practitioner.email, "password": DEMO_PASSWORD}).url.startswith(otp)
    wrong_code = client.post(otp, {"otp_token": "000000"})
    assert wrong_code.status_code == 200
    # django-otp delays the next try after a wrong code; the person waits, the test moves the clock.
    device.refresh_from_db()
    device.throttle_reset(commit=False)
    device.save()
    assert client.post(otp, {"otp_token": current_totp_token(device)}).status_code == 302
    assert client.get(home).status_code == 200
    assert client.get(reverse("accounts:security")).status_code == 200
    # A page that does not exist, with personal data in its path, and the readiness probe.
    assert client.get(f"/records/{PATIENT_EMAIL}/").status_code == 404
    client.get("/readyz")
    client.post(reverse("accounts:logout"))


def test_sign_in_flow_logs_no_personal_data(client, personas):
    patient = UserFactory(email=PATIENT_EMAIL, full_name=f"{PATIENT_NAME} {PATIENT_DNI}", role=Role.PATIENT)
    UserFactory(email=OTHER_PATIENT_EMAIL, full_name=OTHER_PATIENT_NAME, role=Role.PATIENT)
    practitioner = personas.practitioner
    device = TOTPDevice.objects.get(user=practitioner, confirmed=True)
    with _captured() as captured:
        _sign_in_flow(client, practitioner, device)

    needles = {
        PATIENT_NAME,
        "Quispe",
        PATIENT_DNI,
        PATIENT_EMAIL,
        PATIENT_EMAIL.split("@")[0],
        OTHER_PATIENT_NAME,
        OTHER_PATIENT_EMAIL,
        UNKNOWN_EMAIL,
        UNKNOWN_EMAIL.split("@")[0],
        practitioner.email,
        practitioner.full_name,
        patient.full_name,
    }
    formatter = _json_formatter()
    access = [r for r in captured.records if r.name == "teleconsult.access"]
    # The flow was really logged: one access line per request, with route patterns and request ids.
    assert len(access) >= 14, [r.getMessage() for r in access]
    assert {"/accounts/login/", "/accounts/otp/", "/", "-"} <= {r.route for r in access}
    assert all(len(r.request_id) >= 8 for r in access)
    for record in captured.records:
        for where, text in _texts(record, formatter).items():
            for needle in needles:
                assert needle.lower() not in text.lower(), f"{needle!r} in the {where} of {record.name}: {text}"
        json.loads(formatter.format(record))
