"""Entry pages: the home page sends each role to where its work is."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.access import request_user
from records.consent import may_start_visit
from records.models import Patient


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    role = user.role
    if role == "auditor":
        return redirect("audit:events")
    if role == "clinic_admin":
        return redirect("accounts:staff_list")
    context = {}
    if role == "patient":
        # A patient login linked to a patient record gets the links to their own pages.
        patient_id = Patient.objects.filter(user=user).values_list("pk", flat=True).first()
        if patient_id is not None:
            context = {"patient_linked": True, "visit_ready": may_start_visit(patient_id).allowed}
    return render(request, "frontend/home.html", context)
