"""The auditor's pages: the audit trail filtered by any field, sorted by any column, paged, and exported to CSV.

Auditors only. Filter values (an e-mail, an address) never go in URLs (SEC-6): the form is posted, kept in
the session under a random token, and the URL carries the token, the sort key and event ids only.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import secrets
import zoneinfo
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from accounts.access import reauth_required, request_user, role_required
from accounts.models import Establishment, Role, User
from audit import selectors
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose

app_name = "audit"

_SESSION_FILTERS = "audit_filters"
# How many recent filters a session keeps (each is a small dict); older tokens expire.
_KEPT_FILTERS = 10
_DATETIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")

OUTCOME_LABELS = {
    Outcome.SUCCESS.value: gettext_lazy("Éxito"),
    Outcome.FAILURE.value: gettext_lazy("Fallo"),
    Outcome.DENIED.value: gettext_lazy("Denegado"),
}
PURPOSE_LABELS = {
    Purpose.TREATMENT.value: gettext_lazy("Tratamiento"),
    Purpose.EMERGENCY.value: gettext_lazy("Emergencia"),
    Purpose.PATIENT_REQUEST.value: gettext_lazy("Solicitud del paciente"),
    Purpose.OPERATIONS.value: gettext_lazy("Operaciones"),
}
SYSTEM_ROLE = "system"

# Column headings in display order: (sort key, heading). Every column sorts; details do not (free-form).
COLUMNS = (
    ("id", gettext_lazy("N.º")),
    ("occurred_at", gettext_lazy("Fecha y hora")),
    ("action", gettext_lazy("Acción")),
    ("outcome", gettext_lazy("Resultado")),
    ("actor", gettext_lazy("Usuario")),
    ("role", gettext_lazy("Rol")),
    ("establishment", gettext_lazy("Establecimiento")),
    ("patient", gettext_lazy("Paciente")),
    ("object_type", gettext_lazy("Tipo de objeto")),
    ("object_id", gettext_lazy("Id. de objeto")),
    ("purpose", gettext_lazy("Finalidad")),
    ("source_address", gettext_lazy("Dirección de origen")),
    ("request_id", gettext_lazy("Id. de solicitud")),
)


@dataclass(frozen=True)
class EstablishmentOption:
    pk: int
    name: str
    renipress_code: str
    time_zone: str


def _establishments() -> list[EstablishmentOption]:
    # One query serves the establishment filter, the zone choices and the names shown in the table.
    return [
        EstablishmentOption(*row)
        for row in Establishment.objects.order_by("name").values_list("pk", "name", "renipress_code", "time_zone")
    ]


class LocalDateTimeField(forms.DateTimeField):
    """A wall-clock date and time without a zone: the form applies the zone the auditor chose."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "60"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()[:32]
        for fmt in _DATETIME_FORMATS:
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid")


class EventFilterForm(forms.Form):
    occurred_from = LocalDateTimeField(label=gettext_lazy("Desde"), required=False)
    occurred_to = LocalDateTimeField(
        label=gettext_lazy("Hasta"), required=False, help_text=gettext_lazy("Incluye el minuto indicado.")
    )
    zone = forms.ChoiceField(label=gettext_lazy("Zona horaria"), required=False)
    action = forms.ChoiceField(label=gettext_lazy("Acción"), required=False)
    action_prefix = forms.CharField(
        label=gettext_lazy("Acciones que empiezan por"),
        required=False,
        max_length=100,
        help_text=gettext_lazy("Por ejemplo «accounts.» para todas las de cuentas."),
        validators=[RegexValidator(r"^[a-z0-9_.]+$", gettext_lazy("Solo minúsculas, cifras, «_» y «.»."))],
    )
    outcome = forms.ChoiceField(label=gettext_lazy("Resultado"), required=False)
    actor_user_id = forms.IntegerField(label=gettext_lazy("Id. de usuario"), required=False, min_value=1)
    actor_email = forms.EmailField(label=gettext_lazy("Correo del usuario"), required=False)
    actor_role = forms.ChoiceField(label=gettext_lazy("Rol"), required=False)
    establishment = forms.TypedChoiceField(
        label=gettext_lazy("Establecimiento"), required=False, coerce=int, empty_value=None
    )
    patient_id = forms.IntegerField(label=gettext_lazy("Id. de paciente"), required=False, min_value=1)
    object_type = forms.CharField(label=gettext_lazy("Tipo de objeto"), required=False, max_length=64)
    object_id = forms.CharField(label=gettext_lazy("Id. de objeto"), required=False, max_length=64)
    purpose = forms.ChoiceField(label=gettext_lazy("Finalidad"), required=False)
    source_address = forms.CharField(
        label=gettext_lazy("Dirección de origen"),
        required=False,
        max_length=49,
        help_text=gettext_lazy("Una dirección IP o una red, p. ej. 192.0.2.0/24."),
    )
    request_id = forms.CharField(
        label=gettext_lazy("Id. de solicitud"),
        required=False,
        max_length=64,
        validators=[RegexValidator(r"^[A-Za-z0-9._-]+$", gettext_lazy("Id. de solicitud no válido."))],
    )

    def __init__(self, *args: Any, establishments: list[EstablishmentOption], **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        anything: list[tuple[Any, Any]] = [("", _("Cualquiera"))]
        zones = sorted({settings.DEFAULT_ESTABLISHMENT_TIME_ZONE, *(e.time_zone for e in establishments)})
        choices: dict[str, list[tuple[Any, Any]]] = {
            "zone": [("UTC", "UTC"), *((zone, zone) for zone in zones)],
            "action": anything + [(action.value, action.value) for action in AuditAction],
            "outcome": anything + list(OUTCOME_LABELS.items()),
            "actor_role": anything + list(Role.choices) + [(SYSTEM_ROLE, _("Sistema"))],
            "establishment": anything + [(e.pk, f"{e.name} ({e.renipress_code})") for e in establishments],
            "purpose": anything + list(PURPOSE_LABELS.items()),
        }
        for name, options in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = options

    def clean_source_address(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        value = self.cleaned_data["source_address"].strip()
        if not value:
            return None
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise forms.ValidationError(_("Escriba una dirección IP o una red válida."), code="invalid") from None

    def clean_actor_email(self) -> int | None:
        email = self.cleaned_data["actor_email"]
        if not email:
            return None
        user_id = User.objects.filter(email__iexact=email).values_list("pk", flat=True).first()
        if user_id is None:
            raise forms.ValidationError(_("No hay ningún usuario con ese correo."), code="unknown")
        return user_id

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        zone = zoneinfo.ZoneInfo(data.get("zone") or "UTC")
        for name in ("occurred_from", "occurred_to"):
            local = data.get(name)
            if local is None:
                continue
            aware = local.replace(tzinfo=zone)
            # A wall-clock time skipped by a daylight-saving change does not exist in that zone.
            if aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != local:
                self.add_error(name, _("Esa hora no existe en la zona elegida (cambio de horario)."))
                data[name] = None
            else:
                data[name] = aware
        start, end = data.get("occurred_from"), data.get("occurred_to")
        if start is not None and end is not None and end < start:
            self.add_error("occurred_to", _("El final del periodo es anterior a su inicio."))
        by_id, by_email = data.get("actor_user_id"), data.get("actor_email")
        if by_id is not None and by_email is not None and by_id != by_email:
            self.add_error("actor_email", _("Ese correo es de otro usuario que el del id. indicado."))
        return data

    def to_filter(self) -> selectors.EventFilter:
        data = self.cleaned_data
        end = data["occurred_to"]
        if end is not None:
            # "Until 10:30" includes the minute 10:30 (or the second, if seconds were given).
            step = dt.timedelta(seconds=1) if end.second else dt.timedelta(minutes=1)
            end = end + step
        return selectors.EventFilter(
            occurred_from=data["occurred_from"].astimezone(dt.UTC) if data["occurred_from"] else None,
            occurred_before=end.astimezone(dt.UTC) if end else None,
            action=data["action"],
            action_prefix=data["action_prefix"],
            outcome=data["outcome"],
            actor_user_id=data["actor_user_id"] if data["actor_user_id"] is not None else data["actor_email"],
            actor_role=data["actor_role"],
            establishment_id=data["establishment"],
            patient_id=data["patient_id"],
            object_type=data["object_type"].strip(),
            object_id=data["object_id"].strip(),
            purpose=data["purpose"],
            source_network=data["source_address"],
            request_id=data["request_id"],
        )

    def used_fields(self) -> list[str]:
        """The form fields filled in (names only), for the audit event."""
        return sorted(name for name, value in self.data.items() if name in self.fields and value and name != "zone")


@dataclass(frozen=True)
class _Listing:
    token: str
    form: EventFilterForm
    event_filter: selectors.EventFilter
    sort: str
    descending: bool
    zone: zoneinfo.ZoneInfo


def _auditor(request: HttpRequest) -> User:
    return request_user(request)


def _store_filter(request: HttpRequest, data: dict[str, str]) -> str:
    kept: dict[str, dict[str, str]] = dict(request.session.get(_SESSION_FILTERS) or {})
    token = secrets.token_urlsafe(9)
    kept[token] = data
    request.session[_SESSION_FILTERS] = dict(list(kept.items())[-_KEPT_FILTERS:])
    return token


def _listing(request: HttpRequest, establishments: list[EstablishmentOption]) -> _Listing:
    """Filter, sort and zone from the query string; anything malformed is ignored with a message, never a 500."""
    token = request.GET.get("f", "")[:32]
    stored = (request.session.get(_SESSION_FILTERS) or {}).get(token) if token else None
    if token and stored is None:
        messages.warning(request, _("Ese filtro ya no está disponible; se muestran todos los eventos."))
        token = ""
    # Times show in the establishments' zone (SCH-6) unless the auditor picks another.
    initial = {"zone": settings.DEFAULT_ESTABLISHMENT_TIME_ZONE}
    form = EventFilterForm(stored or None, initial=initial, establishments=establishments)
    event_filter = selectors.EventFilter()
    zone_name = initial["zone"]
    if stored is not None:
        if form.is_valid():
            event_filter = form.to_filter()
            zone_name = form.cleaned_data["zone"] or "UTC"
        else:
            messages.warning(request, _("Ese filtro ya no es válido; se muestran todos los eventos."))
            token = ""
    sort = request.GET.get("sort", selectors.DEFAULT_SORT)
    direction = request.GET.get("dir", "desc")
    if sort not in selectors.SORTS or direction not in ("asc", "desc"):
        messages.warning(request, _("No se puede ordenar así; se ordena por fecha, lo más reciente primero."))
        sort, direction = selectors.DEFAULT_SORT, "desc"
    return _Listing(token, form, event_filter, sort, direction == "desc", zoneinfo.ZoneInfo(zone_name))


def _cursor(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name)
    if value is None:
        return None
    if value.isascii() and value.isdigit() and 0 < len(value) < 19:
        return int(value)
    messages.warning(request, _("El enlace de página no es válido; se muestra la primera página."))
    return None


def _query(listing: _Listing, **extra: object) -> str:
    params: dict[str, object] = {"f": listing.token} if listing.token else {}
    params.update(sort=listing.sort, dir="desc" if listing.descending else "asc")
    params.update(extra)
    return "?" + urlencode(params)


def actor_people(user_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Name and e-mail of each actor, in one query (auditors see who did what)."""
    ids = set(user_ids)
    if not ids:
        return {}
    found = User.objects.filter(pk__in=ids).values_list("pk", "full_name", "email")
    return {pk: (name, email) for pk, name, email in found}


def _actor_labels(user_ids: Iterable[int]) -> Mapping[int, str]:
    return {pk: f"{name} <{email}>" for pk, (name, email) in actor_people(user_ids).items()}


def _record(request: HttpRequest, action: AuditAction, listing: _Listing) -> None:
    auditor = _auditor(request)
    memberships = list(auditor.memberships.values_list("establishment_id", flat=True)[:2])
    audit.record(
        action=action,
        actor_user_id=auditor.pk,
        actor_role=auditor.role,
        # The establishment the auditor acted for, when it is unambiguous.
        actor_establishment_id=memberships[0] if len(memberships) == 1 else None,
        # Field names only: the values (an e-mail, an address) could be personal data.
        details={"filters": listing.form.used_fields() if listing.token else [], "sort": listing.sort},
    )


@role_required(Role.AUDITOR)
@require_http_methods(["GET", "POST"])
def events(request: HttpRequest) -> HttpResponse:
    establishments = _establishments()
    if request.method == "POST":
        form = EventFilterForm(request.POST, establishments=establishments)
        if form.is_valid():
            data = {name: str(request.POST.get(name, ""))[:200] for name in form.fields if request.POST.get(name)}
            query = {"f": _store_filter(request, data)}
            if request.POST.get("sort") in selectors.SORTS and request.POST.get("dir") in ("asc", "desc"):
                query.update(sort=request.POST["sort"], dir=request.POST["dir"])
            return redirect(f"{reverse('audit:events')}?{urlencode(query)}")
        messages.error(request, _("Revise el filtro: hay datos no válidos."))
        return render(
            request,
            "frontend/audit/events.html",
            {"form": form, "status": selectors.trail_status(), "page": None},
            status=400,
        )
    listing = _listing(request, establishments)
    after, before = _cursor(request, "after"), _cursor(request, "before")
    _record(request, AuditAction.TRAIL_VIEWED, listing)
    try:
        page = selectors.events_page(
            listing.event_filter, sort=listing.sort, descending=listing.descending, after=after, before=before
        )
    except selectors.UnknownCursor:
        messages.warning(request, _("El enlace de página no es válido; se muestra la primera página."))
        page = selectors.events_page(listing.event_filter, sort=listing.sort, descending=listing.descending)
    people = actor_people(row["actor_user_id"] for row in page.rows if row["actor_user_id"] is not None)
    names = {e.pk: e.name for e in establishments}
    rows = [
        {
            **row,
            "actor": people.get(row["actor_user_id"]),
            "establishment": names.get(row["actor_establishment_id"]),
            "outcome_label": OUTCOME_LABELS.get(row["outcome"], row["outcome"]),
            "purpose_label": PURPOSE_LABELS.get(row["purpose"], row["purpose"]),
        }
        for row in page.rows
    ]
    columns = []
    for key, label in COLUMNS:
        current = key == listing.sort
        toggled = "asc" if current and listing.descending else "desc"
        columns.append(
            {
                "key": key,
                "label": label,
                "url": _query(listing, sort=key, dir=toggled if current else "asc"),
                "aria_sort": ("descending" if listing.descending else "ascending") if current else None,
            }
        )
    context = {
        "form": listing.form,
        "listing": listing,
        "page": page,
        "rows": rows,
        "columns": columns,
        "zone_name": str(listing.zone),
        "status": selectors.trail_status(),
        "next_url": _query(listing, after=page.last_id) if page.has_next and page.last_id else None,
        "previous_url": _query(listing, before=page.first_id) if page.has_previous and page.first_id else None,
        "first_url": _query(listing) if after is not None or before is not None else None,
        "export_url": reverse("audit:export") + _query(listing),
    }
    return render(request, "frontend/audit/events.html", context)


class _Echo:
    """csv.writer needs a file; this one hands each line back so it can be streamed."""

    def write(self, value: str) -> str:
        return value


# Rows per chunk sent: big enough to keep the number of writes (and, under ASGI, thread hops) low.
_CSV_CHUNK_ROWS = 500


def _csv_chunks(listing: _Listing) -> Iterator[str]:
    writer = csv.writer(_Echo())
    # A byte-order mark, so spreadsheet programs read the accents of Spanish names correctly.
    lines = ["\ufeff" + writer.writerow(selectors.CSV_COLUMNS)]
    for row in selectors.export_rows(
        listing.event_filter, sort=listing.sort, descending=listing.descending, actor_labels=_actor_labels
    ):
        lines.append(writer.writerow(row))
        if len(lines) >= _CSV_CHUNK_ROWS:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Under ASGI (daphne) Django would read a synchronous iterator to the end into memory before sending
    # anything; pulled one chunk at a time on the request's sync thread (where its database connection
    # and server-side cursor live), the export streams with flat memory.
    def pull() -> str | None:
        return next(chunks, None)

    next_chunk = sync_to_async(pull, thread_sensitive=True)
    while (chunk := await next_chunk()) is not None:
        yield chunk


@role_required(Role.AUDITOR)
@reauth_required  # type: ignore[arg-type]  # typed for HttpResponse; a streaming response is a sibling class
@require_http_methods(["GET"])
def export(request: HttpRequest) -> HttpResponseBase:
    """Every event of the filtered period as CSV (not just one page), streamed; needs a recent re-authentication."""
    listing = _listing(request, _establishments())
    if request.GET.get("f") and not listing.token:
        # The filter expired: exporting the whole trail instead would surprise; go back to the list.
        return redirect("audit:events")
    _record(request, AuditAction.TRAIL_EXPORTED, listing)
    chunks = _csv_chunks(listing)
    response = StreamingHttpResponse(
        _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks, content_type="text/csv; charset=utf-8"
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("", events, name="events"),
    path("export.csv", export, name="export"),
]
