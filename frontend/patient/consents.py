"""My consents (CON-1..3): each kind's standing in plain words, capture by typed name or drawn signature,
the fast two-consent screen before a visit, and revocation with a confirmation step."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.access import request_user
from frontend.patient.common import content_language, is_minor, patient_page, safe_next, source_address, user_agent
from frontend.patient.forms import ConsentForm, RevokeForm, VisitConsentForm
from records.consent import (
    VISIT_KINDS,
    OutdatedConsentVersion,
    Representative,
    consent_record,
    consent_states,
    current_document,
)
from records.models import ConsentDocument, ConsentKind, ConsentMethod, Decision, Patient
from records.services import legal_representatives_current

# The patient's words for each kind: a short name and one sentence on what it allows.
KIND_WORDS = {
    ConsentKind.TELEMEDICINE: (
        gettext_lazy("Atención por telemedicina"),
        gettext_lazy("Permite que un profesional de salud lo atienda por video, audio o chat."),
    ),
    ConsentKind.DATA_PROCESSING: (
        gettext_lazy("Uso de sus datos personales"),
        gettext_lazy("Permite usar sus datos para atenderlo, como manda la Ley 29733."),
    ),
    ConsentKind.RECORDING_VIDEO: (
        gettext_lazy("Grabación de video"),
        gettext_lazy("Permite grabar el video de sus consultas."),
    ),
    ConsentKind.RECORDING_AUDIO: (
        gettext_lazy("Grabación de audio"),
        gettext_lazy("Permite grabar el audio de sus consultas."),
    ),
    ConsentKind.RECORDING_IMAGES: (
        gettext_lazy("Captura de imágenes"),
        gettext_lazy("Permite guardar fotos tomadas durante sus consultas."),
    ),
    ConsentKind.SHARING: (
        gettext_lazy("Compartir su historia clínica"),
        gettext_lazy("Permite enviar su historia a otros establecimientos y al registro nacional."),
    ),
}
STATE_WORDS = {
    "granted": gettext_lazy("Otorgado"),
    "missing": gettext_lazy("No otorgado"),
    "revoked": gettext_lazy("Revocado"),
    "expired": gettext_lazy("Vencido: otórguelo de nuevo si está de acuerdo"),
    "superseded": gettext_lazy("El texto cambió: léalo y otórguelo de nuevo si está de acuerdo"),
}
# A revocation only makes sense over a standing grant (even an expired or superseded one).
REVOCABLE = ("granted", "expired", "superseded")
RELATIONSHIP_CODES = ("mother", "father", "guardian", "other")


@dataclass(frozen=True)
class KindRow:
    kind: str
    name: str
    summary: str
    state: str
    state_words: str
    valid: bool
    version: int | None
    available: bool
    revocable: bool


def _kind_or_404(kind: str) -> ConsentKind:
    if kind not in ConsentKind.values:
        raise Http404
    return ConsentKind(kind)


def _representative(form: ConsentForm | VisitConsentForm | RevokeForm) -> Representative | None:
    if not form.minor:
        return None
    return Representative(
        name=form.cleaned_data["representative_name"], relationship=form.cleaned_data["representative_relationship"]
    )


def _representative_initial(patient: Patient, minor: bool) -> dict[str, str]:
    """For a minor, the patient's current legal representative (PAT-2) pre-fills the form; the person can change it."""
    if not minor:
        return {}
    current = legal_representatives_current(patient)
    if not current:
        return {}
    representative = current[0]
    initial = {"representative_name": representative.name}
    if representative.relationship in RELATIONSHIP_CODES:
        initial["representative_relationship"] = representative.relationship
    return initial


def _shown_document(kind: str, version: int, language: str) -> ConsentDocument | None:
    return ConsentDocument.objects.filter(kind=kind, version=version, language=language).first()


def _add_service_error(form: ConsentForm | VisitConsentForm | RevokeForm, error: ValidationError) -> None:
    """Put the service's message beside the field it concerns (signature errors go to the form summary)."""
    field = {"typed_name_required": "typed_name", "representative_required": "representative_name"}.get(str(error.code))
    form.add_error(field if field in form.fields else None, error.messages)


@never_cache
@patient_page
def consent_list(request: HttpRequest, patient: Patient) -> HttpResponse:
    kinds = tuple(ConsentKind)
    states = consent_states(patient.pk, kinds)
    available = set(ConsentDocument.objects.values("kind").annotate(v=Max("version")).values_list("kind", flat=True))
    rows = [
        KindRow(
            kind=kind.value,
            name=str(KIND_WORDS[kind][0]),
            summary=str(KIND_WORDS[kind][1]),
            state=states[kind.value].reason,
            state_words=str(STATE_WORDS[states[kind.value].reason]),
            valid=states[kind.value].valid,
            version=states[kind.value].version,
            available=kind.value in available,
            revocable=states[kind.value].reason in REVOCABLE,
        )
        for kind in kinds
    ]
    visit_ready = all(states[k.value].valid for k in VISIT_KINDS)
    visit_available = all(k.value in available for k in VISIT_KINDS)
    return render(
        request,
        "frontend/patient/consent_list.html",
        {"rows": rows, "visit_ready": visit_ready, "visit_available": visit_available},
    )


def _capture_context(request: HttpRequest, kind: ConsentKind, document: ConsentDocument, form, **extra) -> dict:
    return {
        "kind": kind.value,
        "kind_name": KIND_WORDS[kind][0],
        "document": document,
        "form": form,
        "next": safe_next(request, request.POST.get("next") or request.GET.get("next")) or "",
        **extra,
    }


@never_cache
@patient_page
@require_http_methods(["GET", "POST"])
def consent_capture(request: HttpRequest, patient: Patient, kind: str) -> HttpResponse:
    consent_kind = _kind_or_404(kind)
    language = content_language(request)
    document = current_document(consent_kind, language)
    if document is None:
        raise Http404
    minor = is_minor(patient)
    initial = {"version": document.version, "shown_sha256": document.text_sha256}
    if request.method == "GET":
        form = ConsentForm(initial={**initial, **_representative_initial(patient, minor)}, minor=minor)
        return render(
            request, "frontend/patient/consent_capture.html", _capture_context(request, consent_kind, document, form)
        )
    form = ConsentForm(request.POST, minor=minor)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        shown = _shown_document(consent_kind, data["version"], document.language)
        try:
            if shown is None:
                raise OutdatedConsentVersion(document)
            drawn = data["method"] == ConsentMethod.DRAWN_SIGNATURE
            consent_record(
                patient=patient,
                document=shown,
                decision=Decision.GRANT,
                method=ConsentMethod(data["method"]),
                shown_sha256=data["shown_sha256"],
                actor=request_user(request),
                typed_name="" if drawn else data["typed_name"],
                signature_data_url=data["signature"] if drawn else "",
                representative=_representative(form),
                source_address=source_address(request),
                user_agent=user_agent(request),
            )
        except OutdatedConsentVersion as outdated:
            # Show the text now in force, with fresh hidden fields; nothing was recorded.
            fresh = ConsentForm(
                initial={
                    "version": outdated.current.version,
                    "shown_sha256": outdated.current.text_sha256,
                    "typed_name": data["typed_name"],
                    "method": data["method"],
                },
                minor=minor,
            )
            context = _capture_context(request, consent_kind, outdated.current, fresh, outdated=True)
            return render(request, "frontend/patient/consent_capture.html", context, status=409)
        except ValidationError as error:
            _add_service_error(form, error)
        else:
            messages.success(request, _("Consentimiento otorgado. Gracias."))
            return redirect(safe_next(request, request.POST.get("next")) or "mine:consents")
    context = _capture_context(request, consent_kind, document, form)
    return render(request, "frontend/patient/consent_capture.html", context, status=status)


@never_cache
@patient_page
@require_http_methods(["GET", "POST"])
def visit_consents(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Both consents a visit needs on one screen: two ticks, one name, one button (UX-2)."""
    language = content_language(request)
    documents = {kind: current_document(kind, language) for kind in VISIT_KINDS}
    if any(doc is None for doc in documents.values()):
        raise Http404
    tele, data_doc = documents[ConsentKind.TELEMEDICINE], documents[ConsentKind.DATA_PROCESSING]
    assert tele is not None and data_doc is not None
    minor = is_minor(patient)
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    initial = {
        "telemedicine_version": tele.version,
        "telemedicine_sha256": tele.text_sha256,
        "data_processing_version": data_doc.version,
        "data_processing_sha256": data_doc.text_sha256,
    }
    states = consent_states(patient.pk, VISIT_KINDS)
    if request.method == "GET" and all(s.valid for s in states.values()) and next_url:
        return redirect(next_url)  # already given: straight on to where the patient was going
    context = {"telemedicine": tele, "data_processing": data_doc, "next": next_url or "", "states": states}
    if request.method == "GET":
        form = VisitConsentForm(initial={**initial, **_representative_initial(patient, minor)}, minor=minor)
        return render(request, "frontend/patient/visit_consents.html", {**context, "form": form})
    form = VisitConsentForm(request.POST, minor=minor)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            # Both or neither: a changed text for one of them must not leave the other half-given.
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
                        actor=request_user(request),
                        typed_name=data["typed_name"],
                        representative=_representative(form),
                        source_address=source_address(request),
                        user_agent=user_agent(request),
                    )
        except OutdatedConsentVersion:
            fresh = VisitConsentForm(initial={**initial, "typed_name": data["typed_name"]}, minor=minor)
            return render(
                request,
                "frontend/patient/visit_consents.html",
                {**context, "form": fresh, "outdated": True},
                status=409,
            )
        except ValidationError as error:
            _add_service_error(form, error)
        else:
            messages.success(request, _("Consentimientos otorgados. Ya puede unirse a su teleconsulta."))
            return redirect(next_url or "mine:consents")
    return render(request, "frontend/patient/visit_consents.html", {**context, "form": form}, status=status)


@never_cache
@patient_page
@require_http_methods(["GET", "POST"])
def consent_revoke(request: HttpRequest, patient: Patient, kind: str) -> HttpResponse:
    consent_kind = _kind_or_404(kind)
    document = current_document(consent_kind, content_language(request))
    state = consent_states(patient.pk, (consent_kind,))[consent_kind.value]
    if document is None or state.reason not in REVOCABLE:
        messages.info(request, _("No hay un consentimiento otorgado que revocar."))
        return redirect("mine:consents")
    minor = is_minor(patient)
    name, summary = KIND_WORDS[consent_kind]
    context = {"kind": consent_kind.value, "kind_name": name, "kind_summary": summary, "document": document}
    context["visit_kind"] = consent_kind in VISIT_KINDS
    if request.method == "GET":
        form = RevokeForm(initial=_representative_initial(patient, minor), minor=minor)
        return render(request, "frontend/patient/consent_revoke.html", {**context, "form": form})
    form = RevokeForm(request.POST, minor=minor)
    if form.is_valid():
        data = form.cleaned_data
        try:
            # A revocation is recorded against the text in force, whatever version the person once granted:
            # refusing it because a text changed would keep a consent alive against the person's will.
            consent_record(
                patient=patient,
                document=document,
                decision=Decision.REVOKE,
                method=ConsentMethod.TYPED_NAME,
                shown_sha256=document.text_sha256,
                actor=request_user(request),
                typed_name=data["typed_name"],
                representative=_representative(form),
                source_address=source_address(request),
                user_agent=user_agent(request),
            )
        except ValidationError as error:
            _add_service_error(form, error)
        else:
            messages.success(request, _("Consentimiento revocado. Puede otorgarlo de nuevo cuando quiera."))
            return redirect("mine:consents")
    return render(request, "frontend/patient/consent_revoke.html", {**context, "form": form}, status=400)
