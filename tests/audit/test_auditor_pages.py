"""The auditor's trail pages: who may see them, filtering by every field, sorting, paging, CSV export (AUD-3)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import threading
import time
import zoneinfo
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from django.urls import reverse

from accounts.access import REAUTH_SESSION_KEY
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from audit.models import AuditEvent, AuditSeal
from audit.selectors import SORTS, _ordered

pytestmark = pytest.mark.django_db

EVENTS = reverse("audit:events")
EXPORT = reverse("audit:export")


def _ids(response) -> list[int]:
    return [row["id"] for row in response.context["rows"]]


@pytest.fixture
def trail(personas):
    """A small varied trail: one event per interesting combination, written by different people."""
    p = personas
    events = {
        "signin": audit.record(
            action=AuditAction.SIGNIN_SUCCEEDED,
            actor_user_id=p.practitioner.pk,
            actor_role="practitioner",
            actor_establishment_id=p.establishment.pk,
            source_address="192.0.2.10",
            request_id="req-signin-0001",
        ),
        "failed": audit.record(
            action=AuditAction.SIGNIN_FAILED,
            outcome=Outcome.FAILURE,
            actor_user_id=p.outsider.pk,
            actor_role="practitioner",
            actor_establishment_id=p.other_establishment.pk,
            source_address="198.51.100.20",
            request_id="req-failed-0002",
        ),
        "role": audit.record(
            action=AuditAction.ROLE_CHANGED,
            actor_user_id=p.admin.pk,
            actor_role="clinic_admin",
            actor_establishment_id=p.establishment.pk,
            object_type="user",
            object_id=p.coordinator.pk,
            details={"from": "coordinator", "to": "auditor"},
            source_address="192.0.2.77",
            request_id="req-role-0003",
        ),
        "chart": audit.record(
            action=AuditAction.TRAIL_VERIFIED,
            purpose=Purpose.EMERGENCY,
            outcome=Outcome.DENIED,
            actor_user_id=p.coordinator.pk,
            actor_role="coordinator",
            patient_id=4321,
            object_type="chart",
            object_id="4321",
            source_address="2001:db8::5",
            request_id="req-chart-0004",
            user_agent="=HYPERLINK(evil)",
        ),
        "system": audit.record(action=AuditAction.USER_CREATED, actor_role="system", object_type="user", object_id=9),
    }
    return events


@pytest.fixture
def auditor_client(personas, login_as):
    return login_as(personas.auditor)


def _filtered(client, **data):
    response = client.post(EVENTS, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return client.get(response["Location"]), response["Location"]


# --- Who may see the trail ---


@pytest.mark.parametrize("persona", ["patient", "practitioner", "coordinator", "admin", "outsider"])
@pytest.mark.parametrize("url", [EVENTS, EXPORT])
def test_every_other_role_is_denied(personas, login_as, persona, url):
    client = login_as(getattr(personas, persona))
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    assert client.get(url).status_code == 404
    assert client.post(EVENTS, {"action": ""}).status_code == 404
    assert not AuditEvent.objects.filter(action__in=["audit.trail.viewed", "audit.trail.exported"]).exists()


@pytest.mark.parametrize("url", [EVENTS, EXPORT])
def test_anonymous_visitors_are_sent_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


# --- Viewing ---


def test_the_auditor_sees_who_did_what_and_the_view_is_audited(auditor_client, personas, trail):
    response = auditor_client.get(EVENTS)
    assert response.status_code == 200
    page = response.content.decode()
    assert personas.practitioner.full_name in page and personas.practitioner.email in page
    assert "accounts.role.changed" in page and "Centro de Salud Belén" in page
    viewed = AuditEvent.objects.get(action="audit.trail.viewed")
    assert (viewed.actor_user_id, viewed.actor_role) == (personas.auditor.pk, "auditor")
    assert viewed.actor_establishment_id == personas.establishment.pk
    assert viewed.details == {"filters": [], "sort": "occurred_at"}
    # Newest first by default, the auditor's own view included.
    assert _ids(response)[:2] == [viewed.pk, trail["system"].pk]


def test_the_list_costs_a_fixed_number_of_queries(auditor_client, trail, django_assert_num_queries):
    for number in range(30):
        audit.record(action=AuditAction.SIGNOUT, actor_user_id=number + 1000, actor_role="patient")
    auditor_client.get(EVENTS)  # the first request after sign-in also stamps the session's activity
    # Session, user, second-factor device; establishments; auditor's membership; the TRAIL_VIEWED insert;
    # the page; the actors' names; the sealing status.
    with django_assert_num_queries(9):
        response = auditor_client.get(EVENTS)
    assert len(response.context["rows"]) == 37
    with django_assert_num_queries(10):  # one more: the cursor row's sort value
        auditor_client.get(f"{EVENTS}?sort=action&dir=asc&after={trail['role'].pk}")


def test_the_sealing_status_is_shown(auditor_client, trail):
    AuditSeal.objects.create(
        seq=1,
        sealed_at=dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
        txid_from=0,
        txid_to=1,
        event_ids=[1],
        row_macs=bytes(32),
        seal_mac=bytes(32),
    )
    response = auditor_client.get(EVENTS)
    status = response.context["status"]
    assert status.last_seal_seq == 1
    # Everything written in this (test) transaction is above that seal's range: all pending.
    assert status.pending_events == AuditEvent.objects.count()
    assert "2026-11-22 12:00:00 UTC" in response.content.decode()


# --- Filtering by every field ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"action": "accounts.signin.failed"}, ["failed"]),
        ({"action_prefix": "accounts.signin."}, ["signin", "failed"]),
        ({"outcome": "denied"}, ["chart"]),
        ({"actor_role": "clinic_admin"}, ["role"]),
        ({"actor_role": "system"}, ["system"]),
        ({"patient_id": "4321"}, ["chart"]),
        ({"object_type": "chart", "object_id": "4321"}, ["chart"]),
        ({"purpose": "emergency"}, ["chart"]),
        ({"source_address": "192.0.2.77"}, ["role"]),
        ({"source_address": "192.0.2.0/24"}, ["signin", "role"]),
        ({"source_address": "2001:db8::/32"}, ["chart"]),
        ({"request_id": "req-failed-0002"}, ["failed"]),
    ],
)
def test_filter_by_field(auditor_client, trail, data, expected):
    response, _ = _filtered(auditor_client, **data)
    shown = set(_ids(response))
    assert {trail[name].pk for name in expected} == shown - set(
        AuditEvent.objects.filter(action="audit.trail.viewed").values_list("pk", flat=True)
    )
    viewed = AuditEvent.objects.filter(action="audit.trail.viewed").latest("id")
    assert viewed.details["filters"] == sorted(data)


def test_filter_by_actor_id_email_and_establishment(auditor_client, personas, trail):
    by_id, _ = _filtered(auditor_client, actor_user_id=str(personas.admin.pk))
    assert _ids(by_id) == [trail["role"].pk]
    by_email, _ = _filtered(auditor_client, actor_email="AJENO@example.test")
    assert _ids(by_email) == [trail["failed"].pk]
    by_place, _ = _filtered(auditor_client, establishment=str(personas.other_establishment.pk))
    assert _ids(by_place) == [trail["failed"].pk]


def test_filter_values_stay_out_of_the_url_and_the_trail(auditor_client, trail):
    response, location = _filtered(auditor_client, actor_email="ajeno@example.test", source_address="198.51.100.20")
    assert set(parse_qs(urlsplit(location).query)) == {"f"}
    assert "ajeno" not in location and "198.51" not in location
    for link in [response.context["next_url"], response.context["export_url"]] + [
        column["url"] for column in response.context["columns"]
    ]:
        assert link is None or ("ajeno" not in link and "198.51" not in link)
    viewed = AuditEvent.objects.filter(action="audit.trail.viewed").latest("id")
    assert viewed.details == {"filters": ["actor_email", "source_address"], "sort": "occurred_at"}


def test_filter_by_period_in_the_chosen_zone(auditor_client, trail):
    lima = zoneinfo.ZoneInfo("America/Lima")
    now = dt.datetime.now(lima)
    window = {
        "occurred_from": (now - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "occurred_to": (now + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
    }
    in_lima, _ = _filtered(auditor_client, zone="America/Lima", **window)
    assert trail["signin"].pk in _ids(in_lima)
    # The same wall-clock times read as UTC are five hours off: nothing of ours in them.
    in_utc, _ = _filtered(auditor_client, zone="UTC", **window)
    assert trail["signin"].pk not in _ids(in_utc)


def test_the_end_of_the_period_includes_its_minute(auditor_client, trail):
    event = AuditEvent.objects.get(pk=trail["signin"].pk)
    minute = event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
    response, _ = _filtered(auditor_client, zone="UTC", occurred_from=minute, occurred_to=minute)
    assert event.pk in _ids(response)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"occurred_from": "yesterday"}, "occurred_from"),
        ({"occurred_from": "2026-02-30T10:00"}, "occurred_from"),
        ({"occurred_from": "2026-11-22T10:00", "occurred_to": "2026-11-21T10:00"}, "occurred_to"),
        # 02:30 on 8 March 2026 does not exist in New York (clocks jump from 02:00 to 03:00).
        ({"zone": "America/New_York", "occurred_from": "2026-03-08T02:30"}, "zone"),
        ({"zone": "Mars/Olympus"}, "zone"),
        ({"action": "accounts.made.up"}, "action"),
        ({"action_prefix": "DROP TABLE;"}, "action_prefix"),
        ({"outcome": "maybe"}, "outcome"),
        ({"actor_user_id": "abc"}, "actor_user_id"),
        ({"actor_user_id": "-3"}, "actor_user_id"),
        ({"actor_email": "nobody@example.test"}, "actor_email"),
        ({"actor_email": "not-an-email"}, "actor_email"),
        ({"establishment": "999999"}, "establishment"),
        ({"patient_id": "1e9"}, "patient_id"),
        ({"source_address": "999.1.1.1"}, "source_address"),
        ({"request_id": "<script>"}, "request_id"),
    ],
)
def test_invalid_filters_are_form_errors_not_server_errors(auditor_client, personas, trail, data, field):
    response = auditor_client.post(EVENTS, data)
    assert response.status_code == 400
    form = response.context["form"]
    # The zone case: the time is judged in the zone, so the error lands on the time field.
    assert field in form.errors or (field == "zone" and form.errors)


def test_an_email_and_a_different_user_id_together_are_refused(auditor_client, personas, trail):
    response = auditor_client.post(EVENTS, {"actor_user_id": personas.admin.pk, "actor_email": personas.outsider.email})
    assert response.status_code == 400 and "actor_email" in response.context["form"].errors


@pytest.mark.parametrize(
    "query",
    ["sort=password", "sort=action&dir=sideways", "after=abc", "after=99999999", "before=-1", "f=expired-token"],
)
def test_malformed_query_parameters_are_ignored_with_a_message(auditor_client, trail, query):
    response = auditor_client.get(f"{EVENTS}?{query}")
    assert response.status_code == 200
    assert [m.level_tag for m in response.context["messages"]] == ["warning"]
    assert response.context["rows"]


# --- Sorting and paging ---


def _expected_order(column: str, descending: bool) -> list[int]:
    rows = list(AuditEvent.objects.values_list("id", column))
    # NULLs first when ascending; ids break ties in the same direction.
    rows.sort(key=lambda row: (row[1] is not None, row[1] if row[1] is not None else 0, row[0]))
    ordered = [row[0] for row in rows]
    return ordered[::-1] if descending else ordered


@pytest.mark.parametrize("sort", sorted(SORTS))
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sort_by_every_column(auditor_client, trail, sort, direction):
    response = auditor_client.get(f"{EVENTS}?sort={sort}&dir={direction}")
    assert response.status_code == 200
    column = SORTS[sort]
    if column in ("source_address",):
        # PostgreSQL orders addresses numerically (IPv4 before IPv6); compare with what it says.
        expected = list(
            AuditEvent.objects.order_by(
                *(("-" if direction == "desc" else "") + f for f in (column, "id"))
            ).values_list("id", flat=True)
        )
        nulls = list(AuditEvent.objects.filter(source_address__isnull=True).order_by("id").values_list("id", flat=True))
        rest = [i for i in expected if i not in nulls]
        expected = (rest + nulls[::-1]) if direction == "desc" else (nulls + rest)
    else:
        expected = _expected_order(column, direction == "desc")
    # The page was read before its own TRAIL_VIEWED event: compare without it.
    viewed = AuditEvent.objects.filter(action="audit.trail.viewed").latest("id").pk
    assert [i for i in _ids(response) if i != viewed] == [i for i in expected if i != viewed]
    header = next(c for c in response.context["columns"] if c["key"] == sort)
    assert header["aria_sort"] == ("descending" if direction == "desc" else "ascending")


@pytest.mark.parametrize(
    ("sort", "direction"), [("occurred_at", "desc"), ("patient", "asc"), ("source_address", "desc")]
)
def test_keyset_pages_cover_every_row_once_in_order(auditor_client, trail, sort, direction):
    for number in range(120):
        audit.record(
            action=AuditAction.SIGNOUT,
            actor_user_id=number,
            patient_id=None if number % 7 == 0 else number % 11,
            source_address=None if number % 5 == 0 else f"10.0.{number % 3}.{number % 4}",
        )
    seen: list[int] = []
    pages = []
    url = f"?sort={sort}&dir={direction}"
    while url:
        response = auditor_client.get(EVENTS + url)
        pages.append(_ids(response))
        seen.extend(_ids(response))
        url = response.context["next_url"]
    viewed = set(AuditEvent.objects.filter(action="audit.trail.viewed").values_list("pk", flat=True))
    expected = [
        pk
        for pk in _ordered(AuditEvent.objects.all(), SORTS[sort], direction == "desc").values_list("pk", flat=True)
        if pk not in viewed
    ]
    # Every event exactly once, in the order one query over the whole trail gives.
    assert [pk for pk in seen if pk not in viewed] == expected
    assert len(expected) == 125 and len(pages) == 3
    # "Previous" from the last page gives the middle page back.
    response = auditor_client.get(f"{EVENTS}?sort={sort}&dir={direction}&before={pages[2][0]}")
    assert _ids(response) == pages[1]
    assert response.context["next_url"] and response.context["previous_url"]


# --- CSV export ---


def _reauthenticate(client) -> None:
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()


def test_export_asks_for_re_authentication_first(auditor_client, trail):
    response = auditor_client.get(f"{EXPORT}?sort=action&dir=asc")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:reauth"))
    assert "next=" in response["Location"]
    assert not AuditEvent.objects.filter(action="audit.trail.exported").exists()


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def test_export_streams_every_filtered_row_not_just_a_page(auditor_client, personas, trail):
    for _ in range(70):
        audit.record(action=AuditAction.SIGNIN_FAILED, outcome=Outcome.FAILURE, actor_user_id=personas.patient.pk)
    _, location = _filtered(auditor_client, action_prefix="accounts.signin.")
    _reauthenticate(auditor_client)
    response = auditor_client.get(EXPORT + "?" + urlsplit(location).query + "&sort=id&dir=asc")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    rows = _csv(response)
    assert rows[0][:3] == ["id", "occurred_at_utc", "action"]
    ids = [int(row[0]) for row in rows[1:]]
    expected = list(
        AuditEvent.objects.filter(action__startswith="accounts.signin.").order_by("id").values_list("pk", flat=True)
    )
    assert ids == expected and len(ids) == 72
    patient_row = next(row for row in rows[1:] if row[4] == str(personas.patient.pk))
    assert patient_row[5] == f"{personas.patient.full_name} <{personas.patient.email}>"
    exported = AuditEvent.objects.get(action="audit.trail.exported")
    assert exported.details == {"filters": ["action_prefix"], "sort": "id"}
    assert exported.actor_user_id == personas.auditor.pk


def test_export_defuses_spreadsheet_formulas(auditor_client, trail):
    _reauthenticate(auditor_client)
    rows = _csv(auditor_client.get(EXPORT))
    chart = next(row for row in rows if row[0] == str(trail["chart"].pk))
    assert chart[13] == "'=HYPERLINK(evil)"
    assert chart[1].endswith("Z")


def test_export_with_an_expired_filter_goes_back_to_the_list(auditor_client, trail):
    _reauthenticate(auditor_client)
    response = auditor_client.get(f"{EXPORT}?f=gone")
    assert response.status_code == 302 and response["Location"] == EVENTS
    assert not AuditEvent.objects.filter(action="audit.trail.exported").exists()


# --- Language ---


def test_the_page_is_in_spanish_and_english(auditor_client, trail):
    assert "Registro de auditoría" in auditor_client.get(EVENTS).content.decode()
    auditor_client.cookies["django_language"] = "en"
    page = auditor_client.get(EVENTS).content.decode()
    assert "Audit trail" in page and "Export CSV" in page and "Registro de auditoría" not in page


@pytest.mark.django_db(transaction=True)
def test_export_streams_under_asgi(personas, login_as):
    # daphne serves ASGI: a synchronous iterator would be read whole into memory before the first byte.
    for _ in range(1200):
        audit.record(action=AuditAction.SIGNOUT, actor_user_id=personas.patient.pk)
    client = login_as(personas.auditor)
    _reauthenticate(client)

    async def export() -> tuple[Any, list[bytes]]:
        asgi_client = AsyncClient()
        asgi_client.cookies = client.cookies
        try:
            response: Any = await asgi_client.get(EXPORT)
            return response, [chunk async for chunk in response.streaming_content]
        finally:
            # The view ran on asgiref's sync thread; the test client keeps Django from closing its connection.
            await sync_to_async(connections.close_all)()

    # In a thread of its own: the session's Playwright browser may already run an event loop in this one.
    outcome: list[tuple[Any, list[bytes]]] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(export())))
    runner.start()
    runner.join(120)
    response, chunks = outcome[0]
    assert response.status_code == 200
    assert response.is_async
    assert len(chunks) > 2  # sent chunk by chunk as the cursor is read
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    # The header, the sign-outs and the export's own event (written before the rows are read).
    assert len(rows) == 1 + 1200 + 1
