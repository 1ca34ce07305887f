"""Consent documents for clinic admins (CON-1): the current version of each kind, publishing a new version in
Spanish and English, and reading old versions. Published texts are never editable (the database refuses)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts.access import request_user, role_required
from accounts.models import Role
from records.consent import consent_document_publish
from records.forms import ConsentPublishForm
from records.models import ConsentDocument, ConsentKind

_LIST_FIELDS = ("pk", "kind", "version", "language", "title", "validity_days", "published_at")


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def consent_documents(request: HttpRequest) -> HttpResponse:
    # One query; the newest version of each kind is the first seen (ordering kind, -version, language).
    documents = list(ConsentDocument.objects.only(*_LIST_FIELDS).order_by("kind", "-version", "language"))
    kinds = []
    for kind, label in ConsentKind.choices:
        of_kind = [d for d in documents if d.kind == kind]
        current = [d for d in of_kind if d.version == of_kind[0].version] if of_kind else []
        kinds.append({"kind": kind, "label": label, "current": current, "versions": len({d.version for d in of_kind})})
    return render(request, "records/consent_documents.html", {"kinds": kinds})


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def consent_document_new(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    initial_kind = request.GET.get("kind") if request.GET.get("kind") in ConsentKind.values else None
    form = ConsentPublishForm(
        request.POST if request.method == "POST" else None, initial={"kind": initial_kind} if initial_kind else None
    )
    if form.is_bound and form.is_valid():
        kind = ConsentKind(form.cleaned_data["kind"])
        try:
            published = consent_document_publish(
                kind=kind, texts=form.texts(), validity_days=form.cleaned_data["validity_days"], published_by=user
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                _("Versión %(version)s publicada. Los pacientes deberán aceptarla de nuevo.")
                % {"version": published[0].version},
            )
            return redirect("records:consent_kind", kind=kind.value)
    return render(request, "records/consent_publish.html", {"form": form}, status=400 if form.is_bound else 200)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def consent_kind(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in ConsentKind.values:
        raise Http404
    documents = list(
        ConsentDocument.objects.filter(kind=kind)
        .select_related("published_by")
        .only(*_LIST_FIELDS, "published_by__full_name")
        .order_by("-version", "language")
    )
    return render(
        request,
        "records/consent_kind.html",
        {"kind": kind, "label": ConsentKind(kind).label, "documents": documents},
    )


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def consent_document(request: HttpRequest, document_id: int) -> HttpResponse:
    document = ConsentDocument.objects.select_related("published_by").filter(pk=document_id).first()
    if document is None:
        raise Http404
    newest = ConsentDocument.objects.filter(kind=document.kind).order_by("-version").values_list("version", flat=True)
    context = {"document": document, "is_current": document.version == newest.first()}
    return render(request, "records/consent_document.html", context)
