"""Access gates for identities and roles: the one place role checks live (views, API and consumers use these)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts import selectors
from accounts.models import Role, User

REAUTH_SESSION_KEY = "teleconsult_reauth_at"


class AccessDenied(Http404):
    """Raised for "missing" and "forbidden" alike, so a denial never reveals that something exists."""


def request_user(request: HttpRequest) -> User:
    """The request's user, typed as our User, for views behind login_required or role_required. An anonymous
    user here means a view lost its decorator: refused like any other denial rather than served."""
    user = request.user
    if not isinstance(user, User):
        raise AccessDenied
    return user


def has_role(user: Any, *roles: Role) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and getattr(user, "role", None) in roles


def require_role(user: Any, *roles: Role) -> User:
    """The signed-in user if they hold one of `roles` (and, for staff, passed the second factor)."""
    if not has_role(user, *roles):
        raise AccessDenied
    if user.is_staff_member and not user.is_verified():
        raise AccessDenied
    return user


def role_required(*roles: Role) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: anonymous users go to sign-in; staff without a verified second factor go to it;
    signed-in users of another role get the same 404 as a missing page."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if user.is_staff_member and not user.is_verified():
                return redirect_to_login(request.get_full_path(), login_url=reverse("accounts:otp"))
            require_role(user, *roles)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def reauthenticated_recently(request: HttpRequest) -> bool:
    stamp = request.session.get(REAUTH_SESSION_KEY)
    return isinstance(stamp, (int, float)) and time.time() - stamp <= settings.REAUTH_VALID_SECONDS


def mark_reauthenticated(request: HttpRequest) -> None:
    request.session[REAUTH_SESSION_KEY] = time.time()


def reauth_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For sensitive actions (signing, exports): the user must have re-entered their second factor
    (password for patients without one) within REAUTH_VALID_SECONDS, else they are sent to do so."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not reauthenticated_recently(request):
            return HttpResponseRedirect(f"{reverse('accounts:reauth')}?{urlencode({'next': request.get_full_path()})}")
        return view(request, *args, **kwargs)

    return wrapped


def staff_member_for(admin: Any, user_id: int) -> User:
    """A staff member whom this clinic admin manages (shares an establishment with them). Missing, a patient,
    or at another clinic all raise the same AccessDenied."""
    require_role(admin, Role.CLINIC_ADMIN)
    member = selectors.staff_managed_by(admin).filter(pk=user_id).first()
    if member is None:
        raise AccessDenied
    return member
