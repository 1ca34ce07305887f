"""Patient registration: one patient per document, DNI check character, duplicates flagged not merged."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from records.models import DocumentType, PatientIdentifier, PossibleDuplicate, Sex
from records.selectors import patient_by_document, patients_by_name_prefix
from records.services import DocumentInput, DuplicateIdentifier, patient_register


def register(
    personas, *, documents, given="Rosa Elena", surname="Quispe", born=dt.date(1984, 3, 9), history_number=None
):
    return patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names=given,
        paternal_surname=surname,
        maternal_surname="Mamani",
        sex=Sex.FEMALE,
        birth_date=born,
        documents=documents,
        phone="+51 984 123 456",
        history_number=history_number,
    )


@pytest.mark.django_db
def test_register_with_dni_and_find_it_by_exact_search(personas):
    patient = register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410-2")])
    assert patient_by_document(DocumentType.DNI, "10117410") == patient
    assert patient_by_document(DocumentType.DNI, " 1011 7410 ") == patient
    assert PatientIdentifier.objects.get(patient=patient).value == "10117410"
    event = AuditEvent.objects.get(action="records.patient.registered")
    assert event.patient_id == patient.pk and event.actor_user_id == personas.coordinator.pk
    assert "10117410" not in str(event.details)


@pytest.mark.django_db
def test_wrong_dni_check_character_is_a_clear_error(personas):
    with pytest.raises(ValidationError) as raised:
        register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410-3")])
    assert raised.value.code == "dni_check"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("document", "code"),
    [
        (DocumentInput(DocumentType.DNI, "1234567"), "dni_format"),
        (DocumentInput("driving_licence", "X123"), "document_type"),
        (DocumentInput(DocumentType.PASSPORT, "AB123456", ""), "country"),
        (DocumentInput(DocumentType.FOREIGNER_CARD, "12"), "ce_format"),
    ],
)
def test_malformed_documents_are_refused(personas, document, code):
    with pytest.raises(ValidationError) as raised:
        register(personas, documents=[document])
    assert raised.value.code == code


@pytest.mark.django_db
def test_future_birth_date_is_refused(personas):
    with pytest.raises(ValidationError) as raised:
        register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")], born=dt.date(2999, 1, 1))
    assert raised.value.code == "future_birth_date"


@pytest.mark.django_db
def test_one_patient_per_document_enforced_by_the_database(personas):
    register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")])
    with pytest.raises(DuplicateIdentifier):
        register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")], given="Otra")
    assert PatientIdentifier.objects.count() == 1  # nothing partial was written


@pytest.mark.django_db
def test_passports_of_different_countries_do_not_collide(personas):
    a = register(personas, documents=[DocumentInput(DocumentType.PASSPORT, "X1234567", "CHL")])
    b = register(personas, documents=[DocumentInput(DocumentType.PASSPORT, "X1234567", "BOL")], given="Ana")
    assert a != b
    assert patient_by_document(DocumentType.PASSPORT, "x1234567", "bol") == b


@pytest.mark.django_db
def test_same_name_and_birth_date_is_flagged_never_merged(personas):
    first = register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")])
    second = register(personas, documents=[DocumentInput(DocumentType.FOREIGNER_CARD, "CE123456")], given="Rosa  Élena")
    assert first != second
    flag = PossibleDuplicate.objects.get()
    assert (flag.patient_id, flag.other_id) == (first.pk, second.pk)
    assert AuditEvent.objects.filter(action="records.duplicate.flagged").count() == 1


@pytest.mark.django_db
def test_name_prefix_search_ignores_accents_and_case(personas):
    patient = register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")], surname="Núñez")
    assert list(patients_by_name_prefix("nunez mam")) == [patient]
    assert list(patients_by_name_prefix("n")) == []  # too short to be a useful search


@pytest.mark.django_db
def test_history_number_is_unique_per_establishment(personas):
    register(personas, documents=[DocumentInput(DocumentType.DNI, "10117410")], history_number="HC-1")
    with pytest.raises(ValidationError) as raised:
        register(personas, documents=[DocumentInput(DocumentType.DNI, "20000001")], history_number="HC-1")
    assert raised.value.code == "history_number_taken"
    assert patient_by_document(DocumentType.DNI, "20000001") is None  # the whole registration rolled back
