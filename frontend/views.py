"""Entry pages: the home page sends each role to where its work is."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = request.user.role  # type: ignore[union-attr]
    if role == "auditor":
        return redirect("audit:events")
    if role == "clinic_admin":
        return redirect("accounts:staff_list")
    return render(request, "frontend/home.html")
