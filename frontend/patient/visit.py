"""Join links and the visit lobby (SCH-7, UX-2, UX-4): /j/<token> trades the token for a session bound to one
participant and leaves for a clean URL; the lobby verifies a patient without an account, gathers the two visit
consents and leads to the waiting state. In-app browsers (WhatsApp, Facebook…) get told how to leave them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import AccessDenied
from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction
from frontend.patient.appointments import appointment_times
from frontend.patient.common import content_language, is_minor, source_address, user_agent
from frontend.patient.consents import _add_service_error, _representative, _representative_initial, _shown_document
from frontend.patient.forms import VisitConsentForm
from records.consent import VISIT_KINDS, OutdatedConsentVersion, consent_record, current_document, may_start_visit
from records.models import ConsentKind, ConsentMethod, Decision, DocumentType
from scheduling.errors import LinkClosed, LinkInvalid, LinkLocked, LinkNotOpenYet, VerificationFailed
from scheduling.joinlinks import (
    LINK_SESSION_KEY,
    join_link_open,
    join_link_recover,
    join_link_verify,
    join_link_window,
    link_session_binding,
    participant_from_link_session,
    token_digest,
)
from scheduling.models import AppointmentParticipant, JoinLink, ParticipantRole
from video.call_strings import call_strings

# What the session holds after a link was opened: ids and a flag, never the token or personal data.
SESSION_KEY = LINK_SESSION_KEY
OUTCOME_KEY = "join_outcome"

# In-app browsers that cannot be trusted with the camera and microphone, by the marks they put in their
# user agent: Facebook and Messenger (FBAN/FBAV/FB_IAB), Instagram, WhatsApp, LINE, WeChat, TikTok, Snapchat,
# X/Twitter, and Android's bare WebView ("; wv)"), which most other apps embed.
IN_APP_BROWSER = re.compile(
    r"FBAN|FBAV|FB_IAB|FBIOS|Messenger|Instagram|WhatsApp|\bLine/|MicroMessenger|musical_ly|TikTok|"
    r"BytedanceWebview|Snapchat|Twitter|; wv\)",
    re.IGNORECASE,
)


def in_app_platform(agent: str) -> str | None:
    """ "android", "ios" or "other" when the user agent is an in-app browser; None for a real browser."""
    if not IN_APP_BROWSER.search(agent or ""):
        return None
    if "Android" in agent:
        return "android"
    if re.search(r"iPhone|iPad|iPod", agent):
        return "ios"
    return "other"


def _private(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Pages of a link: never cached anywhere, never sending a referrer (the token or the visit's address)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        add_never_cache_headers(response)
        return response

    return wrapped


@dataclass(frozen=True)
class Binding:
    """The link a browser session opened: whose place in which appointment, and whether it was verified."""

    participant_id: int
    appointment: str
    link_id: int
    verified: bool


def _binding(request: HttpRequest) -> Binding | None:
    data = link_session_binding(request.session)
    if data is None:
        return None
    return Binding(data["participant"], data["appointment"], data["link"], data["verified"])


def _bind(request: HttpRequest, link: JoinLink, *, verified: bool) -> None:
    # A new session key whenever the session gains a binding or is verified: no fixation of a planted key.
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "participant": link.participant_id,
        "appointment": str(link.participant.appointment.public_id),
        "link": link.pk,
        "verified": verified,
    }


def _is_own(participant: AppointmentParticipant, user: Any) -> bool:
    """Is the signed-in user this participant (their own login, or the login linked to the patient)?"""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff_member and not user.is_verified():
        return False
    if participant.user_id is not None and participant.user_id == user.pk:
        return True
    return participant.patient is not None and participant.patient.user_id == user.pk


def visit_participant_from_session(request: HttpRequest) -> AppointmentParticipant | None:
    """The participant a verified link session speaks for, while their link is still live; else None
    (the same reading the visit's websocket consumer makes of its scope's session)."""
    return participant_from_link_session(request.session)


@dataclass
class Viewer:
    participant: AppointmentParticipant
    # True when the person still has to prove who they are (a link session of a patient, not yet verified).
    needs_verification: bool
    # The link the session opened (for the in-app browser's "copy link"); None for a signed-in participant.
    link: JoinLink | None


def _viewer(request: HttpRequest, public_id: UUID) -> Viewer:
    """The gate of every lobby page: a signed-in participant of this appointment, or this browser's link
    session for it. Everyone else gets the same 404 whether or not the appointment exists."""
    participants = AppointmentParticipant.objects.select_related("appointment__establishment", "patient", "user")
    user = request.user
    if getattr(user, "is_authenticated", False):
        own = participants.filter(appointment__public_id=public_id, active=True).filter(
            Q(user_id=user.pk) | Q(role=ParticipantRole.PATIENT, patient__user_id=user.pk)
        )
        participant = next((p for p in own if _is_own(p, user)), None)
        if participant is not None:
            return Viewer(participant, False, None)
    binding = _binding(request)
    if binding is None or binding.appointment != str(public_id):
        raise AccessDenied
    link = (
        JoinLink.objects.select_related("participant__appointment__establishment", "participant__patient")
        .filter(pk=binding.link_id, participant_id=binding.participant_id, revoked_at__isnull=True)
        .filter(participant__active=True)
        .first()
    )
    if link is None:
        request.session.pop(SESSION_KEY, None)
        raise AccessDenied
    return Viewer(link.participant, not binding.verified, link)


def _audit_view(request: HttpRequest, viewer: Viewer) -> None:
    appointment = viewer.participant.appointment
    signed_in = viewer.link is None
    audit.record(
        action=AuditAction.APPOINTMENT_VIEWED,
        actor_user_id=request.user.pk if signed_in else None,
        actor_role=getattr(request.user, "role", "") if signed_in else "link",
        patient_id=appointment.patient_id,
        object_type="appointment",
        object_id=appointment.pk,
        details={"participant": viewer.participant.pk, "via": "link" if viewer.link else "session"},
    )


# --- /j/<token> ---


OUTCOME_WORDS = {
    "unknown": (
        gettext_lazy("Enlace no encontrado"),
        gettext_lazy("Este enlace no existe. Revise que lo copió completo, o pida uno nuevo."),
    ),
    "gone": (
        gettext_lazy("Este enlace ya no es válido"),
        gettext_lazy(
            "Fue reemplazado por uno nuevo, o su cita se canceló o cambió de horario. Use el último enlace "
            "que recibió o pida uno nuevo."
        ),
    ),
    "not_open_yet": (
        gettext_lazy("La sala todavía no está abierta"),
        gettext_lazy("Puede entrar desde unos minutos antes de su cita."),
    ),
    "closed": (
        gettext_lazy("La sala ya cerró"),
        gettext_lazy(
            "El horario de esta cita terminó. Si la perdió, comuníquese con su establecimiento para reprogramarla."
        ),
    ),
}
OUTCOME_STATUS = {"unknown": 404, "gone": 410, "not_open_yet": 403, "closed": 403}


@_private
@require_GET
def join(request: HttpRequest, token: str) -> HttpResponse:
    """Trade the token for a session and leave at once: whatever happens, the token's URL is never the one
    a page is shown at (history, screenshots, shared screens)."""
    try:
        link = join_link_open(token=token)
    except LinkInvalid as refused:
        outcome: dict[str, str] = {"code": "gone" if getattr(refused, "gone", False) else "unknown"}
    except LinkNotOpenYet as early:
        # The establishment's zone, to say the opening time as the patient's clinic does (not personal data).
        zone = (
            JoinLink.objects.filter(token_sha256=token_digest(token))
            .values_list("participant__appointment__establishment__time_zone", flat=True)
            .first()
        )
        outcome = {
            "code": "not_open_yet",
            "opens_at": early.opens_at.isoformat() if early.opens_at else "",
            "zone": zone or "America/Lima",
        }
    except LinkClosed:
        outcome = {"code": "closed"}
    else:
        participant = link.participant
        _bind(request, link, verified=_is_own(participant, request.user))
        return redirect("frontend:visit", public_id=participant.appointment.public_id)
    request.session[OUTCOME_KEY] = outcome
    return redirect("frontend:join_status")


@_private
@require_GET
def join_status(request: HttpRequest) -> HttpResponse:
    """Why a link did not lead to a visit (read once from the session; a bare visit says "not found")."""
    outcome = request.session.pop(OUTCOME_KEY, None)
    code = outcome.get("code") if isinstance(outcome, dict) else None
    if code not in OUTCOME_WORDS:
        code = "unknown"
    opens_at = None
    if code == "not_open_yet" and outcome.get("opens_at"):
        try:
            opens_at = dt.datetime.fromisoformat(outcome["opens_at"])
        except ValueError:
            opens_at = None
    title, text = OUTCOME_WORDS[code]
    zone = str(outcome.get("zone") or "America/Lima") if isinstance(outcome, dict) else "America/Lima"
    context = {"code": code, "title": title, "text": text, "opens_at": opens_at, "zone": zone}
    return render(request, "frontend/visit/join_status.html", context, status=OUTCOME_STATUS[code])


# --- the lobby ---


class VerifyForm(forms.Form):
    birth_date = forms.DateField(
        label=gettext_lazy("Fecha de nacimiento del paciente"),
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
    )
    document_last_digits = forms.CharField(
        label=gettext_lazy("Últimos 4 dígitos de su documento (DNI, carné o pasaporte)"),
        min_length=4,
        max_length=4,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
    )


def _lobby_context(request: HttpRequest, viewer: Viewer, **extra: Any) -> dict[str, Any]:
    participant = viewer.participant
    appointment = participant.appointment
    opens_at, closes_at = join_link_window(appointment)
    now = timezone.now()
    practitioner = (
        appointment.participants.filter(role=ParticipantRole.PRACTITIONER, active=True).select_related("user").first()
    )
    gate = may_start_visit(appointment.patient_id)
    copy_url = (
        request.build_absolute_uri(reverse("frontend:join", args=[viewer.link.token]))
        if viewer.link is not None
        else request.build_absolute_uri(reverse("frontend:visit", args=[appointment.public_id]))
    )
    return {
        "appointment": appointment,
        "participant": participant,
        "is_patient": participant.role == ParticipantRole.PATIENT,
        "practitioner_name": practitioner.user.full_name if practitioner and practitioner.user else "",
        "times": appointment_times(appointment, request.user),
        "opens_at": opens_at,
        "not_open_yet": now < opens_at,
        "closed": now > closes_at,
        "consent_ready": gate.allowed,
        "in_app": in_app_platform(user_agent(request)),
        "copy_url": copy_url,
        **extra,
    }


@_private
@require_GET
def visit(request: HttpRequest, public_id: UUID) -> HttpResponse:
    viewer = _viewer(request, public_id)
    if viewer.needs_verification:
        if viewer.participant.role != ParticipantRole.PATIENT:
            # Staff links only lead to the sign-in page; the session keeps where to go back to.
            return redirect_to_login(reverse("frontend:visit", args=[public_id]))
        return _verify_page(request, viewer, VerifyForm())
    _audit_view(request, viewer)
    return render(request, "frontend/visit/lobby.html", _lobby_context(request, viewer))


def _verify_page(
    request: HttpRequest, viewer: Viewer, form: VerifyForm, status: int = 200, **extra: Any
) -> HttpResponse:
    # Nothing about the appointment is shown before verification: not the name, not the practitioner.
    context = {
        "form": form,
        "public_id": viewer.participant.appointment.public_id,
        "in_app": in_app_platform(user_agent(request)),
        "copy_url": request.build_absolute_uri(reverse("frontend:join", args=[viewer.link.token]))
        if viewer.link
        else "",
        **extra,
    }
    return render(request, "frontend/visit/verify.html", context, status=status)


@_private
@require_POST
def verify(request: HttpRequest, public_id: UUID) -> HttpResponse:
    viewer = _viewer(request, public_id)
    if not viewer.needs_verification or viewer.link is None:
        return redirect("frontend:visit", public_id=public_id)
    form = VerifyForm(request.POST)
    if not form.is_valid():
        return _verify_page(request, viewer, form, status=400)
    try:
        join_link_verify(
            link=viewer.link,
            birth_date=form.cleaned_data["birth_date"],
            document_last_digits=form.cleaned_data["document_last_digits"],
        )
    except LinkLocked as locked:
        return _verify_page(request, viewer, VerifyForm(), status=403, locked=True, locked_message=locked.messages[0])
    except (VerificationFailed, LinkInvalid) as failed:
        form.add_error(None, failed.messages)
        return _verify_page(request, viewer, form, status=400)
    _bind(request, viewer.link, verified=True)
    return redirect("frontend:visit", public_id=public_id)


def _verified_patient_viewer(request: HttpRequest, public_id: UUID) -> Viewer:
    viewer = _viewer(request, public_id)
    if viewer.needs_verification or viewer.participant.role != ParticipantRole.PATIENT:
        raise AccessDenied
    return viewer


@_private
@require_http_methods(["GET", "POST"])
def consents(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The two visit consents, given from the lobby: the same form and checks as "my consents", open to a
    patient without an account because the verified link session identifies them."""
    viewer = _verified_patient_viewer(request, public_id)
    patient = viewer.participant.patient
    assert patient is not None
    lobby = reverse("frontend:visit", args=[public_id])
    language = content_language(request)
    documents = {kind: current_document(kind, language) for kind in VISIT_KINDS}
    tele, data_doc = documents[ConsentKind.TELEMEDICINE], documents[ConsentKind.DATA_PROCESSING]
    if tele is None or data_doc is None:
        raise AccessDenied
    if may_start_visit(patient.pk).allowed:
        return redirect(lobby)
    minor = is_minor(patient)
    initial = {
        "telemedicine_version": tele.version,
        "telemedicine_sha256": tele.text_sha256,
        "data_processing_version": data_doc.version,
        "data_processing_sha256": data_doc.text_sha256,
    }
    context = {"telemedicine": tele, "data_processing": data_doc, "public_id": public_id}
    if request.method == "GET":
        form = VisitConsentForm(initial={**initial, **_representative_initial(patient, minor)}, minor=minor)
        return render(request, "frontend/visit/consents.html", {**context, "form": form})
    form = VisitConsentForm(request.POST, minor=minor)
    if form.is_valid():
        data = form.cleaned_data
        user = request.user
        actor = user if isinstance(user, User) and _is_own(viewer.participant, user) else None
        try:
            with transaction.atomic():
                for kind, doc in ((ConsentKind.TELEMEDICINE, tele), (ConsentKind.DATA_PROCESSING, data_doc)):
                    shown = _shown_document(kind, data[f"{kind.value}_version"], doc.language)
                    if shown is None:
                        raise OutdatedConsentVersion(doc)
                    consent_record(
                        patient=patient,
                        document=shown,
                        decision=Decision.GRANT,
                        method=ConsentMethod.TYPED_NAME,
                        shown_sha256=data[f"{kind.value}_sha256"],
                        actor=actor,
                        typed_name=data["typed_name"],
                        representative=_representative(form),
                        source_address=source_address(request),
                        user_agent=user_agent(request),
                    )
        except OutdatedConsentVersion:
            fresh = VisitConsentForm(initial={**initial, "typed_name": data["typed_name"]}, minor=minor)
            return render(
                request, "frontend/visit/consents.html", {**context, "form": fresh, "outdated": True}, status=409
            )
        except ValidationError as error:
            _add_service_error(form, error)
        else:
            messages.success(request, _("Consentimientos otorgados. Ya puede entrar a la sala de espera."))
            return redirect(lobby)
    return render(request, "frontend/visit/consents.html", {**context, "form": form}, status=400)


@_private
@require_GET
def waiting(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The waiting room, and the call once the practitioner admits the patient: the page opens the visit's
    websocket (frontend/static/frontend/visit/call.js) and switches to the call on "admitted"."""
    viewer = _viewer(request, public_id)
    if viewer.needs_verification:
        return redirect("frontend:visit", public_id=public_id)
    context = _lobby_context(request, viewer)
    if context["is_patient"] and not context["consent_ready"]:
        return redirect("frontend:visit", public_id=public_id)
    if context["not_open_yet"] or context["closed"]:
        return redirect("frontend:visit", public_id=public_id)
    _audit_view(request, viewer)
    return render(request, "frontend/visit/waiting.html", {**context, "call_strings": call_strings()})


# --- a lost link ---


class RecoverForm(forms.Form):
    document_type = forms.ChoiceField(label=gettext_lazy("Tipo de documento"), choices=DocumentType.choices)
    number = forms.CharField(
        label=gettext_lazy("Número de documento"), max_length=20, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    birth_date = forms.DateField(
        label=gettext_lazy("Fecha de nacimiento"),
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
    )


@_private
@require_http_methods(["GET", "POST"])
def recover(request: HttpRequest) -> HttpResponse:
    """Ask for a new link. The answer never says whether the data matched anyone."""
    if request.method == "GET":
        return render(request, "frontend/visit/recover.html", {"form": RecoverForm()})
    form = RecoverForm(request.POST)
    if form.is_valid():
        try:
            join_link_recover(
                document_type=form.cleaned_data["document_type"],
                number=form.cleaned_data["number"],
                birth_date=form.cleaned_data["birth_date"],
                source_address=source_address(request),
            )
        except ValidationError as error:
            form.add_error("number", error.messages)
        else:
            return render(request, "frontend/visit/recover.html", {"sent": True})
    return render(request, "frontend/visit/recover.html", {"form": form}, status=400)
