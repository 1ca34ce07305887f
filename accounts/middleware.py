"""Session policy: idle sessions end (staff after STAFF_IDLE_TIMEOUT_SECONDS, patients after
PATIENT_IDLE_TIMEOUT_SECONDS), and staff without a verified second factor reach nothing but the sign-in pages."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts import services
from accounts.signin_state import LAST_ACTIVITY_KEY, idle_timeout_seconds, touch_activity

# Activity is written to the session at most this often, so an ordinary page view does not always cost a
# session write; the timeout is therefore exact to within this many seconds.
ACTIVITY_RESOLUTION_SECONDS = 30

# Where a signed-in staff member who has not passed the second factor may still go.
_UNVERIFIED_ALLOWED = frozenset(
    {"accounts:login", "accounts:otp", "accounts:otp_enrol", "accounts:logout", "set_language", "healthz", "readyz"}
)


class StaffSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        # In process_view (not __call__) so that the messages framework is ready and the URL is resolved.
        user = request.user
        if not user.is_authenticated:
            return None
        now = int(time.time())
        last = request.session.get(LAST_ACTIVITY_KEY)
        if isinstance(last, int) and now - last > idle_timeout_seconds(user):
            services.session_expired_record(user=user, idle_seconds=now - last)
            logout(request)
            messages.info(request, _("Su sesión se cerró por inactividad. Ingrese de nuevo para continuar."))
            login_url = reverse("accounts:login")
            if request.method == "GET":
                login_url = f"{login_url}?{urlencode({'next': request.path})}"
            return HttpResponseRedirect(login_url)
        if not isinstance(last, int) or now - last >= ACTIVITY_RESOLUTION_SECONDS:
            touch_activity(request)
        view_name = request.resolver_match.view_name if request.resolver_match else ""
        if user.is_staff_member and not user.is_verified() and view_name not in _UNVERIFIED_ALLOWED:
            otp_url = reverse("accounts:otp")
            if request.method == "GET":
                otp_url = f"{otp_url}?{urlencode({'next': request.get_full_path()})}"
            return HttpResponseRedirect(otp_url)
        return None
