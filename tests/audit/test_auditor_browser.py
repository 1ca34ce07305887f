"""The auditor's trail page in a real browser: filter, sort by keyboard, accessible in both themes and on a
phone, and the CSV download."""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.conf import settings

from accounts.access import REAUTH_SESSION_KEY
from audit import services as audit
from audit.actions import AuditAction, Outcome
from tests.browser_checks import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_in(page, live_server, login_as, user) -> None:
    """The auditor's session (second factor verified, recently re-authenticated) as a browser cookie."""
    client = login_as(user)
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])


def test_auditor_filters_sorts_and_downloads_the_trail(page, live_server, personas, login_as):
    for number in range(3):
        audit.record(
            action=AuditAction.SIGNIN_FAILED,
            outcome=Outcome.FAILURE,
            actor_user_id=personas.practitioner.pk,
            actor_role="practitioner",
            object_type="user",
            object_id=f"u{number}",
            source_address="192.0.2.1",
        )
    audit.record(action=AuditAction.ROLE_CHANGED, actor_user_id=personas.admin.pk, actor_role="clinic_admin")
    _sign_in(page, live_server, login_as, personas.auditor)

    page.goto("/audit/")
    assert page.get_by_role("heading", name="Registro de auditoría", level=1).is_visible()
    assert_accessible(page, context="trail, light theme")

    page.get_by_label("Acción", exact=True).select_option("accounts.signin.failed")
    page.get_by_label("Correo del usuario").fill(personas.practitioner.email)
    page.get_by_role("button", name="Aplicar filtro").click()
    page.wait_for_url("**/audit/?f=*")
    assert personas.practitioner.email not in page.url
    rows = page.locator("table.audit-table tbody tr")
    assert rows.count() == 3
    assert rows.first.get_by_text(personas.practitioner.full_name).is_visible()

    # Sort by object id with the keyboard: the header link is focusable and Enter follows it.
    page.get_by_role("link", name="Id. de objeto").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=object_id**")
    header = page.get_by_role("columnheader", name="Id. de objeto")
    assert header.get_attribute("aria-sort") == "ascending"
    assert [rows.nth(i).locator("td").nth(9).inner_text() for i in range(3)] == ["u0", "u1", "u2"]
    page.get_by_role("link", name="Id. de objeto").click()
    page.wait_for_url("**dir=desc**")
    assert [rows.nth(i).locator("td").nth(9).inner_text() for i in range(3)] == ["u2", "u1", "u0"]

    page.emulate_media(color_scheme="dark")
    assert_accessible(page, context="trail, dark theme")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Exportar CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("audit-trail-") and download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8-sig") as exported:
        rows_exported = list(csv.reader(io.StringIO(exported.read())))
    assert rows_exported[0][0] == "id"
    assert [row[10] for row in rows_exported[1:]] == ["u2", "u1", "u0"]


def test_the_trail_page_fits_a_phone(page, live_server, personas, login_as):
    audit.record(action=AuditAction.SIGNOUT, actor_user_id=personas.patient.pk, user_agent="x" * 250)
    _sign_in(page, live_server, login_as, personas.auditor)
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto("/audit/")
    # The wide table scrolls inside its own region; the page itself does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert_accessible(page, context="trail on a phone")
