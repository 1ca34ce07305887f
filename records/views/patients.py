"""Staff pages for patients: registration, search, profile, verbal consent, the chart entry and break-the-glass.

Thin views: parse → gate (records.access) → service → render. Document numbers are only ever posted, never
put in a URL (SEC-6); URLs carry ids only.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import AccessDenied, request_user, role_required
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records import selectors, services
from records.access import break_glass, chart_policy, demographics_for
from records.consent import OutdatedConsentVersion, Representative, consent_record, consent_states, current_document
from records.forms import (
    BreakGlassForm,
    DocumentSearchForm,
    DuplicateResolveForm,
    LegalRepresentativeForm,
    NameSearchForm,
    PatientRegistrationForm,
    VerbalConsentForm,
)
from records.models import (
    ConsentDocument,
    ConsentKind,
    ConsentMethod,
    Decision,
    DuplicateStatus,
    LegalRepresentative,
    Patient,
    PossibleDuplicate,
)

STAFF = (Role.COORDINATOR, Role.PRACTITIONER)
# Patients a practitioner registered in this session: the one page that shows them the new record without a
# care relationship (the summary right after registration) checks this list.
_REGISTERED_SESSION_KEY = "records_registered"
# Service errors that belong to one field of the registration form.
_REGISTRATION_ERROR_FIELDS = {"history_number_taken": "history_number", "future_birth_date": "birth_date"}

CONSENT_STATE_LABELS = {
    "granted": gettext_lazy("Vigente"),
    "missing": gettext_lazy("Sin registrar"),
    "revoked": gettext_lazy("Revocado"),
    "expired": gettext_lazy("Vencido"),
    "superseded": gettext_lazy("Versión anterior: pedir de nuevo"),
}


def _user(request: HttpRequest) -> User:
    return request_user(request)


def _establishments(user: User) -> QuerySet[Establishment]:
    return Establishment.objects.filter(memberships__user=user, is_active=True).distinct().order_by("name")


def _client(request: HttpRequest) -> tuple[str | None, str]:
    address = str(getattr(request, "client_address", "") or request.META.get("REMOTE_ADDR", "")) or None
    return address, str(request.META.get("HTTP_USER_AGENT", ""))[:300]


@role_required(*STAFF)
@require_http_methods(["GET", "POST"])
def patient_register(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = PatientRegistrationForm(
        request.POST if request.method == "POST" else None, establishments=_establishments(user)
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            patient = services.patient_register(
                registered_by=user,
                establishment=data["establishment"],
                given_names=data["given_names"],
                paternal_surname=data["paternal_surname"],
                maternal_surname=data["maternal_surname"],
                sex=data["sex"],
                birth_date=data["birth_date"],
                documents=form.documents,
                phone=data["phone"],
                email=data["email"],
                address=data["address"],
                history_number=data["history_number"],
                insurance=data["insurance"],
                insurance_number=data["insurance_number"],
                emergency_contact_name=data["emergency_contact_name"],
                emergency_contact_phone=data["emergency_contact_phone"],
            )
        except services.DuplicateIdentifier as error:
            form.add_error(form.field_for_document((error.params or {}).get("document_type", "")), error.messages[0])
        except ValidationError as error:
            field = _REGISTRATION_ERROR_FIELDS.get(str(error.code))
            form.add_error(field, error.messages[0] if field else error)
        else:
            messages.success(request, _("Paciente registrado."))
            if user.role == Role.COORDINATOR:
                return redirect("records:patient_profile", patient_id=patient.pk)
            registered = [*request.session.get(_REGISTERED_SESSION_KEY, [])][-20:]
            request.session[_REGISTERED_SESSION_KEY] = [*registered, patient.pk]
            return redirect("records:patient_registered", patient_id=patient.pk)
    return render(request, "records/patient_register.html", {"form": form}, status=400 if form.is_bound else 200)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET"])
def patient_registered(request: HttpRequest, patient_id: int) -> HttpResponse:
    """What a practitioner sees right after registering someone: the record exists, and whether it was
    flagged as a possible duplicate (resolved by coordination; the other record's details are not shown)."""
    if patient_id not in request.session.get(_REGISTERED_SESSION_KEY, []):
        raise AccessDenied
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        raise AccessDenied
    flags = PossibleDuplicate.objects.filter(Q(patient=patient) | Q(other=patient)).count()
    return render(request, "records/patient_registered.html", {"patient": patient, "duplicate_count": flags})


def _record_search(user: User, *, by: str, results: list[Patient]) -> None:
    audit.record(
        action=AuditAction.PATIENT_SEARCHED,
        purpose=Purpose.TREATMENT if user.role == Role.PRACTITIONER else Purpose.OPERATIONS,
        actor_user_id=user.pk,
        actor_role=user.role,
        # An exact document search names one patient; a name search touches several: ids in details.
        patient_id=results[0].pk if by == "document" and results else None,
        details={"by": by, "results": [p.pk for p in results][:50]},
    )


@role_required(*STAFF)
@require_http_methods(["GET", "POST"])
def patient_search(request: HttpRequest) -> HttpResponse:
    """Search by exact document or by name prefix. Always POST: the number or name typed never lands in a
    URL, a log line or the browser history; the results are rendered in the response."""
    user = _user(request)
    document_form = DocumentSearchForm(prefix="doc")
    name_form = NameSearchForm(prefix="name")
    results: list[Patient] | None = None
    by = ""
    status = 200
    if request.method == "POST":
        by = request.POST.get("by", "")
        if by == "document":
            document_form = DocumentSearchForm(request.POST, prefix="doc")
            if document_form.is_valid():
                data = document_form.cleaned_data
                country = data["issuing_country"] if data["document_type"] == "passport" else "PER"
                results = selectors.patient_search_by_document(
                    data["document_type"], data["number"], country, viewer=user
                )
        elif by == "name":
            name_form = NameSearchForm(request.POST, prefix="name")
            if name_form.is_valid():
                results = selectors.patient_search_by_name(name_form.cleaned_data["name"], viewer=user)
        if results is None:
            status = 400
        else:
            _record_search(user, by=by, results=results)
    context = {
        "document_form": document_form,
        "name_form": name_form,
        "results": results,
        "by": by,
        "is_practitioner": user.role == Role.PRACTITIONER,
    }
    return render(request, "records/patient_search.html", context, status=status)


def _profile_context(
    user: User, patient: Patient, representative_form: LegalRepresentativeForm | None = None
) -> dict[str, object]:
    profile = selectors.patient_profile(patient)
    states = consent_states(patient.pk, tuple(ConsentKind.values))
    consents = [
        {
            "kind": kind,
            "label": label,
            "state": states[kind],
            "state_label": CONSENT_STATE_LABELS.get(states[kind].reason, states[kind].reason),
        }
        for kind, label in ConsentKind.choices
    ]
    today = timezone.localdate()
    born = patient.birth_date
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return {
        "patient": patient,
        "age": age,
        "profile": profile,
        "consents": consents,
        "is_practitioner": user.role == Role.PRACTITIONER,
        "duplicate_form": DuplicateResolveForm(),
        "representatives": list(
            LegalRepresentative.objects.filter(patient=patient)
            .select_related("created_by")
            .order_by("-valid_from", "-pk")
        ),
        "representative_form": representative_form or LegalRepresentativeForm(),
        "today": today,
    }


@role_required(*STAFF)
@require_http_methods(["GET"])
def patient_profile(request: HttpRequest, patient_id: int) -> HttpResponse:
    user = _user(request)
    patient = demographics_for(user, patient_id)
    return render(request, "records/patient_profile.html", _profile_context(user, patient))


@role_required(*STAFF)
@require_POST
def possible_duplicate_resolve(request: HttpRequest, patient_id: int, flag_id: int) -> HttpResponse:
    user = _user(request)
    patient = demographics_for(user, patient_id)
    flag = PossibleDuplicate.objects.filter(Q(patient=patient) | Q(other=patient), pk=flag_id).first()
    if flag is None:
        raise AccessDenied
    form = DuplicateResolveForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Elija si son la misma persona o personas distintas."))
        return render(request, "records/patient_profile.html", _profile_context(user, patient), status=400)
    status = DuplicateStatus(form.cleaned_data["status"])
    services.possible_duplicate_resolve(flag=flag, status=status, by=user)
    if status == DuplicateStatus.SAME_PERSON:
        messages.success(
            request,
            _(
                "Anotado: es la misma persona. Los registros no se fusionan; "
                "protección de datos decidirá cómo corregirlos."
            ),
        )
    else:
        messages.success(request, _("Anotado: son personas distintas."))
    return redirect("records:patient_profile", patient_id=patient.pk)


@role_required(*STAFF)
@require_POST
def legal_representative_add(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Name a legal representative (PAT-2) from the profile page; errors re-render the profile with the form."""
    user = _user(request)
    patient = demographics_for(user, patient_id)
    form = LegalRepresentativeForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.legal_representative_add(
                patient=patient,
                name=data["name"],
                document_type=data["document_type"],
                document_number=data["document_number"],
                relationship=data["relationship"],
                phone=data["phone"],
                added_by=user,
            )
        except ValidationError as error:
            field = {"name_required": "name", "relationship": "relationship"}.get(str(error.code), "document_number")
            form.add_error(field, error.messages[0])
        else:
            messages.success(request, _("Representante legal registrado."))
            return redirect("records:patient_profile", patient_id=patient.pk)
    context = _profile_context(user, patient, representative_form=form)
    return render(request, "records/patient_profile.html", context)


def _consent_kind(kind: str) -> ConsentKind:
    if kind not in ConsentKind.values:
        raise Http404
    return ConsentKind(kind)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
def verbal_consent(request: HttpRequest, patient_id: int, kind: str) -> HttpResponse:
    """A practitioner records a consent the patient gave (or revoked) aloud, with a witness (CON-2). The text
    read is the current version in the patient's language; its hash travels with the form to prove it."""
    user = _user(request)
    consent_kind = _consent_kind(kind)
    patient = demographics_for(user, patient_id)
    document = current_document(consent_kind, patient.preferred_language)
    form = VerbalConsentForm(request.POST if request.method == "POST" else None)
    status = 200
    if document is not None and request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            shown = ConsentDocument.objects.filter(pk=data["document"], kind=consent_kind).first()
            address, agent = _client(request)
            try:
                if shown is None:
                    raise OutdatedConsentVersion(document)
                consent_record(
                    patient=patient,
                    document=shown,
                    decision=Decision(data["decision"]),
                    method=ConsentMethod.VERBAL_WITNESSED,
                    shown_sha256=data["shown_sha256"],
                    actor=user,
                    witness_name=data["witness_name"],
                    representative=Representative(data["representative_name"], data["representative_relationship"])
                    if data["representative_name"]
                    else None,
                    source_address=address,
                    user_agent=agent,
                )
            except OutdatedConsentVersion as error:
                # Show the new text: the patient must hear the current version before deciding.
                document = error.current
                form.add_error(None, error.messages[0])
            except ValidationError as error:
                target = {"witness_required": "witness_name", "representative_required": "representative_name"}
                form.add_error(target.get(str(error.code)), error.messages[0])
            else:
                messages.success(request, _("Consentimiento verbal registrado."))
                return redirect("records:patient_profile", patient_id=patient.pk)
    context = {"patient": patient, "kind": consent_kind, "document": document, "form": form}
    return render(request, "records/verbal_consent.html", context, status=status)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
def emergency_access(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Break-the-glass. The form says nothing about the patient, so it does not reveal whether the id exists."""
    user = _user(request)
    if request.method == "GET" and chart_policy(user, patient_id) is not None:
        return redirect("records:patient_chart", patient_id=patient_id)
    form = BreakGlassForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            break_glass(user=user, patient_id=patient_id, reason=form.cleaned_data["reason"])
        except ValidationError as error:
            form.add_error("reason", error.messages[0])
        else:
            messages.warning(request, _("Acceso de emergencia concedido por 4 horas. Auditoría ha sido notificada."))
            return redirect("records:patient_chart", patient_id=patient_id)
    context = {"form": form, "patient_id": patient_id}
    return render(request, "records/emergency_access.html", context, status=400 if form.is_bound else 200)
