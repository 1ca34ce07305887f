"""SCH-4 through real HTTP: patients racing for one slot, each from their own signed-in session, against the
live server. Exactly one gets 201; every other gets 409 "slot_taken"; one appointment holds the slot.

The paired test that shows the race is visible without the exclusion constraint is at the service level
(tests/scheduling/test_double_booking_race.py); this one shows the protection holds end to end.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
from django.test import Client
from django.utils.crypto import get_random_string

from accounts.models import Role
from audit.actions import AuditAction
from audit.models import AuditEvent
from scheduling.models import ACTIVE_STATUSES, Appointment, AppointmentParticipant
from tests.factories import UserFactory
from tests.scheduling.api_support import API, iso, make_clinic, patient_record

RACERS = 12


def signed_in_cookies(user) -> tuple[str, str]:
    """A real session for `user` in the database (as after signing in) and a CSRF secret: the Cookie header
    a browser would send, and the token its page would put in X-CSRFToken."""
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = get_random_string(CSRF_SECRET_LENGTH, allowed_chars=CSRF_ALLOWED_CHARS)
    return f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}", csrf


def http_post(url: str, body: dict, cookie: str, csrf: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 (the live test server's own http:// URL)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Cookie": cookie, "X-CSRFToken": csrf},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_concurrent_http_bookings_of_one_slot_yield_one_appointment(personas, live_server):
    clinic = make_clinic(personas)
    slot = clinic.free_slots(count=1)[0]
    racers = []
    for i in range(RACERS):
        user = UserFactory(email=f"carrera{i}@example.test", role=Role.PATIENT)
        patient_record(user, "Paciente", f"Carrera{i}")
        racers.append(signed_in_cookies(user))
    body = {"visit_type": clinic.general.pk, "practitioner": personas.practitioner.pk, "start": iso(slot.start)}
    url = f"{live_server.url}{API}/appointments"

    barrier = threading.Barrier(RACERS)
    answers: list[tuple[int, dict]] = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def attempt(cookie: str, csrf: str) -> None:
        barrier.wait(timeout=30)
        sent = time.monotonic()
        try:
            answer = http_post(url, body, cookie, csrf)
        except Exception as error:  # a dropped connection must fail the test, not hang it
            answer = (0, {"error": repr(error)})
        with lock:
            answers.append(answer)
            spans.append((sent, time.monotonic()))

    threads = [threading.Thread(target=attempt, args=racer) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    # The requests really raced: several were in flight before the first answer came back.
    first_answer = min(done for _, done in spans)
    assert sum(sent < first_answer for sent, _ in spans) >= 2
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * (RACERS - 1), answers
    assert all(answer["code"] == "slot_taken" and answer["detail"] for status, answer in answers if status == 409)
    winner = next(answer for status, answer in answers if status == 201)

    assert Appointment.objects.filter(status__in=ACTIVE_STATUSES).count() == 1
    assert str(Appointment.objects.get(status__in=ACTIVE_STATUSES).public_id) == winner["public_id"]
    assert AppointmentParticipant.objects.filter(calendar=f"user:{personas.practitioner.pk}", active=True).count() == 1
    # Every losing attempt is on the audit trail.
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_BOOKING_REFUSED).count() == RACERS - 1
