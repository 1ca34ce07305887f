"""Signing a draft and amending a signed note (both after a fresh second factor), and the signed PDF."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import reauth_required, reauthenticated_recently, role_required
from accounts.models import Role
from records.access import note_for
from records.models import (
    ClinicalNote,
    NoteStatus,
)
from records.notes import (
    missing_sections_for_signing,
    note_content,
)
from records.signing import amendment_add, note_sign
from records.views.clinical._common import errors_of, first_message, header_context, render_in_zone, user_of
from records.views.clinical.editor import alert_views


def _sign_context(request: HttpRequest, note: ClinicalNote) -> dict[str, Any]:
    content = note_content(note)
    return {
        "note": note,
        "patient": note.patient,
        "encounter": note.encounter,
        "missing": missing_sections_for_signing(content),
        "pending_alerts": [v for v in alert_views(note, content) if not v.acknowledged],
        **header_context(note.patient),
    }


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
@reauth_required
def note_sign_view(request: HttpRequest, note_id: int) -> HttpResponse:
    """Sign the draft: after a fresh second factor; what is missing and the unacknowledged alerts are listed."""
    user = user_of(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status == NoteStatus.SIGNED or note.author_id != user.pk:
        messages.error(request, _("La nota ya está firmada."))
        return redirect("records:note", note_id=note.pk)
    context = _sign_context(request, note)
    status = 200
    if request.method == "POST":
        try:
            note_sign(note=note, signer=user, reauthenticated=reauthenticated_recently(request))
        except ValidationError as error:
            context["sign_error"] = first_message(error)
            status = 400
        else:
            messages.success(request, _("Nota firmada."))
            return redirect("records:note", note_id=note.pk)
    return render_in_zone(request, "records/note_sign.html", context, status=status)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
@reauth_required
def note_amend(request: HttpRequest, note_id: int) -> HttpResponse:
    """A signed correction of a signed note, after a fresh second factor; the original stays as signed."""
    user = user_of(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status != NoteStatus.SIGNED:
        return redirect("records:note", note_id=note.pk)
    context: dict[str, Any] = {
        "note": note,
        "patient": note.patient,
        "encounter": note.encounter,
        "values": {},
        "errors": {},
        **header_context(note.patient),
    }
    status = 200
    if request.method == "POST":
        context["values"] = {"reason": request.POST.get("reason", ""), "text": request.POST.get("text", "")}
        try:
            amendment_add(
                note=note,
                author=user,
                reason=context["values"]["reason"],
                text=context["values"]["text"],
                reauthenticated=reauthenticated_recently(request),
            )
        except ValidationError as error:
            context["errors"], context["form_error"] = errors_of(error)
            status = 400
        else:
            messages.success(request, _("Enmienda firmada y registrada."))
            return redirect("records:note", note_id=note.pk)
    return render_in_zone(request, "records/note_amend.html", context, status=status)


@role_required(Role.PRACTITIONER)
@require_GET
def note_pdf(request: HttpRequest, note_id: int) -> HttpResponse:
    """The signed PDF of a signed note (audited by the service). The file name carries the note's number and
    date, never the patient's name."""
    # Imported here: pyHanko and fpdf take most of a second to load, paid by the first download rather than by
    # every process start (a restarted server is back sooner).
    from records.printable import encounter_pdf_for_download

    content = encounter_pdf_for_download(user=user_of(request), note_id=note_id)
    note_date = ClinicalNote.objects.filter(pk=note_id).values_list("signed_at", flat=True).first()
    day = timezone.localdate(note_date) if note_date else timezone.localdate()
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="atencion-{note_id}-{day:%Y%m%d}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
