"""UX-1 for records: Spanish (Peru) first, English on request, and every string of records/ translated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from tests.records.pages_support import build_world


@pytest.fixture
def world(personas):
    return build_world(personas)


PO_FILE = Path(__file__).resolve().parents[2] / "records" / "locale" / "en" / "LC_MESSAGES" / "django.po"


def test_every_records_message_is_translated_to_english():
    text = PO_FILE.read_text(encoding="utf-8")
    entries = text.split("\n\n")[1:]
    untranslated = [e for e in entries if re.search(r'^msgstr(\[\d\])? ""\n(?!")', e + "\n", re.MULTILINE)]
    assert not untranslated, untranslated[:3]
    assert "#, fuzzy" not in text


def test_profile_in_spanish_then_english(world, login_as):
    client = login_as(world.personas.coordinator)
    url = reverse("records:patient_profile", args=[world.patient.pk])
    page = client.get(url).content.decode()
    assert "Posibles duplicados" in page and "Consentimiento informado para telemedicina" in page
    client.post(reverse("set_language"), {"language": "en", "next": url})
    page = client.get(url).content.decode()
    assert "Possible duplicates" in page and "Informed consent for telemedicine" in page
    assert "Contact and insurance" in page
