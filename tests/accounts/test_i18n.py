"""Spanish (Peru) first, English on request; every accounts message has an English translation (UX-1)."""

from __future__ import annotations

import re
from pathlib import Path

from django.urls import reverse

from tests.accounts.helpers import LOGIN, post_password

PO_FILE = Path(__file__).resolve().parents[2] / "accounts" / "locale" / "en" / "LC_MESSAGES" / "django.po"


def test_sign_in_page_is_spanish_by_default(client, db):
    page = client.get(LOGIN).content.decode()
    assert '<html lang="es"' in page and "Ingresar" in page and "Correo electrónico" in page


def test_language_switch_to_english(client, personas):
    client.post(reverse("set_language"), {"language": "en", "next": LOGIN})
    page = client.get(LOGIN).content.decode()
    assert '<html lang="en"' in page and "Sign in" in page and "Email" in page
    failed = post_password(client, "paciente@example.test", "wrong-password-1").content.decode()
    assert "Incorrect email or password." in failed


def test_every_accounts_message_is_translated_to_english():
    text = PO_FILE.read_text(encoding="utf-8")
    entries = text.split("\n\n")[1:]
    # An empty msgstr not continued on the next line is an untranslated message.
    untranslated = [e for e in entries if re.search(r'^msgstr(\[\d\])? ""\n(?!")', e + "\n", re.MULTILINE)]
    assert not untranslated, untranslated[:3]
