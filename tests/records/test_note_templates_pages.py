"""Note templates per specialty for clinic admins: list, create, edit, deactivate; bad input refused and nothing
saved; every other role gets a 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from records.models import NoteTemplate
from records.notes import template_create

pytestmark = pytest.mark.django_db

LIST = reverse("records:note_templates")
NEW = reverse("records:note_template_new")


def _form(**overrides):
    data = {
        "specialty": "Pediatría",
        "name": "Control de niño sano",
        "section__reason": "Control de crecimiento y desarrollo.",
        "section__anamnesis__story": "Madre refiere que el niño ",
        "section__examination__text": "Peso y talla tomados en casa.",
        "section__indications": "Lactancia materna exclusiva.",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def template(personas):
    return template_create(
        specialty="Medicina general",
        name="Infección respiratoria",
        content={"reason": "Tos y fiebre.", "examination": {"vital_signs": {"spo2": 97}}},
        by=personas.admin,
    )


def test_the_admin_creates_a_template(personas, login_as):
    client = login_as(personas.admin)

    assert client.get(NEW).status_code == 200
    response = client.post(NEW, _form())

    assert response.status_code == 302 and response["Location"] == LIST
    template = NoteTemplate.objects.get()
    assert (template.specialty, template.name, template.is_active) == ("Pediatría", "Control de niño sano", True)
    assert template.content["reason"] == "Control de crecimiento y desarrollo."
    assert template.content["anamnesis"]["story"] == "Madre refiere que el niño "  # kept as typed
    assert template.content["examination"]["text"] == "Peso y talla tomados en casa."
    assert template.content["diagnoses"] == [] and template.content["prescriptions"] == []
    event = AuditEvent.objects.get(action="records.note_template.created")
    assert event.actor_user_id == personas.admin.pk and event.object_id == str(template.pk)
    body = client.get(LIST).content.decode()
    assert "Pediatría" in body and "Control de niño sano" in body and "Plantilla «Control de niño sano» creada." in body


def test_the_list_groups_by_specialty(personas, template, login_as):
    template_create(specialty="Pediatría", name="Fiebre", content={}, by=personas.admin)
    client = login_as(personas.admin)

    response = client.get(LIST)

    assert [group["specialty"] for group in response.context["specialties"]] == ["Medicina general", "Pediatría"]
    assert reverse("records:note_template_edit", kwargs={"template_id": template.pk}) in response.content.decode()


def test_the_admin_edits_a_template_keeping_what_the_form_does_not_show(personas, template, login_as):
    client = login_as(personas.admin)
    url = reverse("records:note_template_edit", kwargs={"template_id": template.pk})

    page = client.get(url)
    assert page.status_code == 200 and "Tos y fiebre." in page.content.decode()
    response = client.post(
        url, _form(specialty="Medicina general", name="Infección respiratoria alta", section__reason="Tos.")
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert template.name == "Infección respiratoria alta"
    assert template.content["reason"] == "Tos."
    assert template.content["examination"]["vital_signs"]["spo2"] == 97
    event = AuditEvent.objects.get(action="records.note_template.updated")
    assert set(event.details["fields"]) == {"name", "content"}


def test_the_admin_deactivates_and_reactivates(personas, template, login_as):
    client = login_as(personas.admin)

    response = client.post(reverse("records:note_template_deactivate", kwargs={"template_id": template.pk}))

    assert response.status_code == 302
    template.refresh_from_db()
    assert not template.is_active
    assert "Desactivada" in client.get(LIST).content.decode()
    client.post(reverse("records:note_template_reactivate", kwargs={"template_id": template.pk}))
    template.refresh_from_db()
    assert template.is_active
    assert AuditEvent.objects.filter(action="records.note_template.updated").count() == 2
    # Deactivating is a POST only.
    deactivate = reverse("records:note_template_deactivate", kwargs={"template_id": template.pk})
    assert client.get(deactivate).status_code == 405


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "Indique el nombre de la plantilla."),
        ({"name": "   "}, "Indique el nombre de la plantilla."),
        ({"specialty": ""}, "Indique la especialidad."),
        ({"name": "x" * 121}, "«Nombre de la plantilla» admite hasta 120 caracteres."),
        ({"section__reason": "x" * 2001}, "«Motivo de consulta» admite hasta 2000 caracteres."),
        ({"section__next_appointment": "x" * 201}, "«Próxima cita» admite hasta 200 caracteres."),
        ({"section__diagnoses": "J06.9"}, "Sección desconocida: diagnoses."),
        ({"section__anamnesis__mood": "bien"}, "Sección desconocida: anamnesis.mood."),
        ({"section__reason": "tos\x00"}, "Los caracteres nulos no están permitidos."),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_saved(personas, login_as, overrides, message):
    client = login_as(personas.admin)

    response = client.post(NEW, _form(**overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not NoteTemplate.objects.exists()
    assert not AuditEvent.objects.filter(action="records.note_template.created").exists()


def test_a_duplicate_name_in_the_specialty_is_refused(personas, template, login_as):
    client = login_as(personas.admin)

    response = client.post(NEW, _form(specialty="Medicina general", name="Infección respiratoria"))

    assert response.status_code == 400
    assert "Ya existe una plantilla con ese nombre para la especialidad." in response.content.decode()
    assert NoteTemplate.objects.count() == 1


def test_bad_input_on_edit_changes_nothing(personas, template, login_as):
    client = login_as(personas.admin)
    url = reverse("records:note_template_edit", kwargs={"template_id": template.pk})

    response = client.post(url, _form(name="", section__reason="Cambiado"))

    assert response.status_code == 400
    template.refresh_from_db()
    assert template.name == "Infección respiratoria" and template.content["reason"] == "Tos y fiebre."


def test_messages_in_english(personas, login_as):
    client = login_as(personas.admin)

    response = client.post(NEW, _form(name="", section__reason="x" * 2001), HTTP_ACCEPT_LANGUAGE="en")

    body = response.content.decode()
    assert response.status_code == 400
    assert "Note templates" in body or "note template" in body.lower()
    assert "Give the template a name." in body
    assert "«Reason for consultation» allows at most 2000 characters." in body


@pytest.mark.parametrize("persona", ["patient", "practitioner", "coordinator", "auditor", "outsider"])
def test_every_other_role_gets_404_and_changes_nothing(personas, template, login_as, persona):
    client = login_as(getattr(personas, persona))
    edit = reverse("records:note_template_edit", kwargs={"template_id": template.pk})

    assert client.get(LIST).status_code == 404
    assert client.get(NEW).status_code == 404
    assert client.post(NEW, _form()).status_code == 404
    assert client.get(edit).status_code == 404
    assert client.post(edit, _form()).status_code == 404
    assert (
        client.post(reverse("records:note_template_deactivate", kwargs={"template_id": template.pk})).status_code == 404
    )
    template.refresh_from_db()
    assert template.is_active and template.name == "Infección respiratoria"
    assert NoteTemplate.objects.count() == 1


def test_a_missing_template_is_a_404(personas, login_as):
    client = login_as(personas.admin)

    assert client.get(f"/records/note-templates/{'9' * 18}/").status_code == 404
    assert client.get(reverse("records:note_template_edit", kwargs={"template_id": 999})).status_code == 404
    assert client.post(reverse("records:note_template_deactivate", kwargs={"template_id": 999})).status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(LIST)

    assert response.status_code == 302
