"""My account: change the password, see the second factor, regenerate backup codes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.access import request_user
from accounts.forms import PasswordChangeForm
from accounts.services.signin import Status
from accounts.views._common import client_address, end_locked


@never_cache
@login_required
@sensitive_post_parameters("current_password", "new_password", "new_password_again")
@require_http_methods(["GET", "POST"])
def security_view(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    form = PasswordChangeForm(request.POST if request.method == "POST" else None, user=user)
    status = 200
    if form.is_valid():
        services.user_change_password(user=user, new_password=form.cleaned_data["new_password"])
        # Keeps this session signed in; every other session of the user ends (their hash no longer matches).
        update_session_auth_hash(request, user)
        messages.success(request, _("Contraseña cambiada."))
        return redirect("accounts:security")
    if form.is_bound:
        status = 400
        if form.has_error("current_password", code="wrong_password"):
            refused = services.password_change_refused(user=user, address=client_address(request))
            if refused == Status.LOCKED:
                return end_locked(request)
    context = {
        "form": form,
        "authenticators": selectors.authenticators_of(user),
        "backup_codes_remaining": selectors.backup_codes_remaining(user),
    }
    return render(request, "accounts/security.html", context, status=status)
