"""Join link pages (SCH-7): /j/<token> leaves at once for a clean URL with private headers, refusals get their
own pages, a patient without an account verifies then consents in the lobby, and nobody else gets in."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.consent import may_start_visit
from records.models import ConsentDecision
from scheduling.joinlinks import VERIFICATION_LIMIT
from scheduling.models import Appointment, AppointmentStatus, JoinLink, ParticipantRole
from tests.frontend.conftest import register
from tests.scheduling.test_joinlinks import BIRTH, issue, make_appointment

CHROME = "Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
WHATSAPP_ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; SM-A145M; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
    "Chrome/120.0 Mobile Safari/537.36 WhatsApp/2.23"
)
FACEBOOK_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.34.111;FBBV/540000000]"
)


@pytest.fixture
def walk_in(personas):
    return register(personas)


@pytest.fixture
def appointment(personas, walk_in):
    return make_appointment(personas, walk_in)


def visit_url(appointment, suffix=""):
    return f"/visit/{appointment.public_id}/{suffix}"


def opened(client, appointment, **headers):
    token = issue(appointment)
    response = client.get(f"/j/{token}", **headers)
    return token, response


def verified(client, appointment, digits="7410"):
    token, _ = opened(client, appointment)
    response = client.post(
        visit_url(appointment, "verify/"), {"birth_date": BIRTH.isoformat(), "document_last_digits": digits}
    )
    assert response.status_code == 302
    return token


def test_join_redirects_to_a_clean_url_with_private_headers(client, appointment, caplog):
    with caplog.at_level(logging.DEBUG):
        token, response = opened(client, appointment)
        assert response.status_code == 302 and response["Location"] == visit_url(appointment)
        assert response["Referrer-Policy"] == "no-referrer" and "no-store" in response["Cache-Control"]
        page = client.get(response["Location"])
    assert page.status_code == 200 and page["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page["Cache-Control"]
    # Nothing about the appointment before verification: just the two questions.
    assert "Confirme que es usted" in page.text and "Consulta de medicina general" not in page.text
    session = client.session["visit_link"]
    assert token not in str(dict(client.session)) and session["verified"] is False
    assert set(session) == {"participant", "appointment", "link", "verified"}
    records = [record.getMessage() + str(record.__dict__) for record in caplog.records]
    assert records and not any(token in text for text in records)
    assert any("/j/<str:token>" in text for text in records)
    assert not AuditEvent.objects.filter(details__icontains=token).exists()


@pytest.mark.parametrize("variant", ["unknown", "revoked", "cancelled"])
def test_refused_links_have_their_own_page(client, appointment, variant):
    token = issue(appointment)
    if variant == "unknown":
        token = "A" * 43
    elif variant == "revoked":
        issue(appointment)
    else:
        Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)
    response = client.get(f"/j/{token}")
    assert response.status_code == 302 and response["Location"] == "/j/"
    page = client.get("/j/")
    if variant == "unknown":
        assert page.status_code == 404 and "Enlace no encontrado" in page.text
    else:
        assert page.status_code == 410 and "Este enlace ya no es válido" in page.text
    assert "Pedir un enlace nuevo" in page.text and token not in page.text
    assert "visit_link" not in client.session
    assert AuditEvent.objects.filter(action=AuditAction.JOIN_LINK_REFUSED).count() == 1
    # The outcome is read once; the bare page says "not found".
    assert client.get("/j/").status_code == 404


def test_outside_the_window(client, personas, walk_in, settings):
    settings.JOIN_LINK_OPENS_MINUTES_BEFORE = 30
    later = make_appointment(personas, walk_in, start=timezone.now() + dt.timedelta(days=1, hours=2))
    client.get(f"/j/{issue(later)}")
    page = client.get("/j/")
    assert page.status_code == 403 and "La sala todavía no está abierta" in page.text
    assert "La sala abre el" in page.text and "America/Lima" in page.text

    earlier = make_appointment(personas, walk_in, start=timezone.now() - dt.timedelta(days=1))
    client.get(f"/j/{issue(earlier)}")
    page = client.get("/j/")
    assert page.status_code == 403 and "La sala ya cerró" in page.text


def test_verification_then_consent_then_waiting(client, appointment, documents):
    opened(client, appointment)
    wrong = client.post(visit_url(appointment, "verify/"), {"birth_date": "1984-03-10", "document_last_digits": "7410"})
    assert wrong.status_code == 400 and "Los datos no coinciden" in wrong.text
    bad_shape = client.post(visit_url(appointment, "verify/"), {"birth_date": "ayer", "document_last_digits": "12"})
    assert bad_shape.status_code == 400
    assert client.get(visit_url(appointment, "consents/")).status_code == 404
    assert client.get(visit_url(appointment, "waiting/")).status_code == 302

    right = client.post(visit_url(appointment, "verify/"), {"birth_date": "1984-03-09", "document_last_digits": "7410"})
    assert right.status_code == 302 and right["Location"] == visit_url(appointment)
    assert client.session["visit_link"]["verified"] is True
    lobby = client.get(visit_url(appointment))
    assert "Consulta de medicina general" in lobby.text and personas_name(appointment) in lobby.text
    assert "Dar mis consentimientos" in lobby.text and "Entrar a la sala de espera" not in lobby.text
    assert client.get(visit_url(appointment, "waiting/")).status_code == 302  # consent first

    form = client.get(visit_url(appointment, "consents/"))
    assert form.status_code == 200
    context = form.context["form"].initial
    response = client.post(
        visit_url(appointment, "consents/"),
        {
            **context,
            "accept_telemedicine": "on",
            "accept_data_processing": "on",
            "typed_name": "Rosa Quispe",
        },
        HTTP_USER_AGENT=CHROME,
        REMOTE_ADDR="198.51.100.20",
    )
    assert response.status_code == 302 and response["Location"] == visit_url(appointment)
    assert may_start_visit(appointment.patient_id).allowed
    decisions = ConsentDecision.objects.filter(patient_id=appointment.patient_id)
    assert decisions.count() == 2
    assert all(d.recorded_by is None and "Android" in d.user_agent and d.source_address for d in decisions)
    lobby = client.get(visit_url(appointment))
    assert "Entrar a la sala de espera" in lobby.text
    waiting = client.get(visit_url(appointment, "waiting/"))
    assert waiting.status_code == 200 and "Esperando a que el profesional" in waiting.text
    assert AuditEvent.objects.filter(
        action=AuditAction.APPOINTMENT_VIEWED, patient_id=appointment.patient_id, actor_role="link"
    ).exists()


def personas_name(appointment):
    return appointment.participants.get(role=ParticipantRole.PRACTITIONER).user.full_name


def test_consent_form_errors_record_nothing(client, appointment, documents):
    verified(client, appointment)
    initial = client.get(visit_url(appointment, "consents/")).context["form"].initial
    response = client.post(visit_url(appointment, "consents/"), {**initial, "accept_telemedicine": "on"})
    assert response.status_code == 400 and not ConsentDecision.objects.exists()


def test_lock_after_five_failures(client, appointment):
    opened(client, appointment)
    for _ in range(VERIFICATION_LIMIT - 1):
        client.post(visit_url(appointment, "verify/"), {"birth_date": "2000-01-01", "document_last_digits": "0000"})
    locked = client.post(
        visit_url(appointment, "verify/"), {"birth_date": "2000-01-01", "document_last_digits": "0000"}
    )
    assert locked.status_code == 403 and "se bloqueó" in locked.text and "Pedir un enlace nuevo" in locked.text
    right = client.post(visit_url(appointment, "verify/"), {"birth_date": "1984-03-09", "document_last_digits": "7410"})
    assert right.status_code == 403 and client.session["visit_link"]["verified"] is False


def test_a_revoked_link_ends_the_session_binding(client, appointment):
    verified(client, appointment)
    assert client.get(visit_url(appointment)).status_code == 200
    issue(appointment)  # reissued (resent): the old session no longer speaks for the participant
    assert client.get(visit_url(appointment)).status_code == 404
    assert "visit_link" not in client.session


def test_signed_in_patient_needs_no_verification(client, personas, login_as):
    own = register(personas, user=personas.patient)
    appointment = make_appointment(personas, own)
    login_as(personas.patient)
    opened(client, appointment)
    assert client.session["visit_link"]["verified"] is True
    lobby = client.get(visit_url(appointment))
    assert lobby.status_code == 200 and "Consulta de medicina general" in lobby.text
    # Without any link too: their own appointment.
    client.session.pop("visit_link", None)
    assert client.get(visit_url(appointment)).status_code == 200


def test_practitioner_link(client, personas, appointment, login_as):
    token = issue(appointment, role=ParticipantRole.PRACTITIONER)
    response = client.get(f"/j/{token}")
    assert response["Location"] == visit_url(appointment)
    to_login = client.get(visit_url(appointment))
    assert to_login.status_code == 302 and "/accounts/login/" in to_login["Location"]
    login_as(personas.practitioner)
    client.get(f"/j/{token}")
    lobby = client.get(visit_url(appointment))
    assert lobby.status_code == 200 and "El paciente todavía no dio su consentimiento" in lobby.text


@pytest.mark.parametrize("who", ["anonymous", "other_patient", "outsider", "coordinator"])
def test_others_are_denied_the_lobby(client, personas, appointment, login_as, who):
    if who == "other_patient":
        from tests.factories import UserFactory

        user = UserFactory(role="patient")
        register(personas, given="Luz", surname="Mamani", dni="44556677", user=user)
        login_as(user)
    elif who != "anonymous":
        login_as(getattr(personas, who))
    for suffix in ("", "consents/", "waiting/"):
        assert client.get(visit_url(appointment, suffix)).status_code == 404
    assert client.post(visit_url(appointment, "verify/"), {}).status_code == 404


def test_another_patients_link_session_does_not_open_this_appointment(client, personas, appointment):
    luz = register(personas, given="Luz", surname="Mamani", dni="44556677")
    other = make_appointment(personas, luz, start=timezone.now() - dt.timedelta(minutes=15))
    verified(client, other, digits="6677")
    assert client.get(visit_url(other)).status_code == 200
    assert client.get(visit_url(appointment)).status_code == 404


@pytest.mark.parametrize(
    ("agent", "steps"), [(WHATSAPP_ANDROID, "Abrir en Chrome"), (FACEBOOK_IPHONE, "Abrir en Safari")]
)
def test_in_app_browsers_get_instructions(client, appointment, agent, steps):
    token, _ = opened(client, appointment, HTTP_USER_AGENT=agent)
    page = client.get(visit_url(appointment), HTTP_USER_AGENT=agent)
    assert "Abra este enlace en el navegador de su teléfono" in page.text and steps in page.text
    assert f"/j/{token}" in page.text  # the copy button copies the link itself
    plain = client.get(visit_url(appointment), HTTP_USER_AGENT=CHROME)
    section = plain.text.split("data-in-app-help", 1)[1].split(">", 1)[0]
    assert "hidden" in section


def test_recover_page_answers_alike(client, appointment):
    issue(appointment)
    assert client.get("/j/recover/").status_code == 200
    answers = []
    for number, birth in (("10117410", "1984-03-09"), ("10117410", "1984-03-10"), ("44556677", "1990-01-01")):
        response = client.post("/j/recover/", {"document_type": "dni", "number": number, "birth_date": birth})
        assert response.status_code == 200 and response["Referrer-Policy"] == "no-referrer"
        answers.append(response.text.split('<main id="main"', 1)[1].split("</main>", 1)[0])
    assert answers[0] == answers[1] == answers[2]
    assert JoinLink.objects.filter(revoked_at__isnull=True).count() == 1
    assert JoinLink.objects.count() == 2
    bad = client.post("/j/recover/", {"document_type": "dni", "number": "12", "birth_date": "1984-03-09"})
    assert bad.status_code == 400 and "DNI" in bad.text


def test_visit_participant_from_session(client, appointment, rf):
    from frontend.patient.visit import visit_participant_from_session

    def current():
        request = rf.get("/")
        request.session = client.session
        return visit_participant_from_session(request)

    assert current() is None
    opened(client, appointment)
    assert current() is None  # bound, not verified yet
    client.post(visit_url(appointment, "verify/"), {"birth_date": "1984-03-09", "document_last_digits": "7410"})
    assert current() == appointment.participants.get(role=ParticipantRole.PATIENT)
    issue(appointment)  # the link was replaced: the session no longer speaks for anyone
    assert current() is None


def test_pages_in_english(client, appointment, documents):
    client.get("/j/" + "A" * 43)
    assert "Link not found" in client.get("/j/", HTTP_ACCEPT_LANGUAGE="en").text
    opened(client, appointment)
    page = client.get(visit_url(appointment), HTTP_ACCEPT_LANGUAGE="en", HTTP_USER_AGENT=WHATSAPP_ANDROID)
    assert "Confirm it is you" in page.text and "Open in Chrome" in page.text
