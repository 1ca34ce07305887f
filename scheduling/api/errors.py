"""How the API answers a refusal: one JSON shape, `{"code", "detail", "errors"?}`, and the right status.

A slot somebody else took is 409 (the client should pick another); any other refusal of the scheduling
services or of the input is 400 with a code a client can branch on; a gate's denial is 404, the same as a
missing appointment. Nothing a client sends may end in a 500.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from scheduling.errors import SlotTaken


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "slot_taken"


def _field_errors(detail: Any) -> dict[str, list[dict[str, str]]]:
    """DRF's nested error details flattened to `{field: [{"message", "code"}]}` ("a.b" for nested fields)."""
    flat: dict[str, list[dict[str, str]]] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, list):
            for item in node:
                walk(prefix, item)
        else:
            flat.setdefault(prefix or "non_field_errors", []).append(
                {"message": str(node), "code": getattr(node, "code", "invalid") or "invalid"}
            )

    walk("", detail)
    return flat


def _details(errors: list[DjangoValidationError]) -> list[exceptions.ErrorDetail]:
    return [exceptions.ErrorDetail(str(m), code=e.code or "invalid") for e in errors for m in e.messages]


def _from_django_validation(exc: DjangoValidationError) -> exceptions.APIException:
    if isinstance(exc, SlotTaken):
        return Conflict(detail=exc.messages[0], code=exc.code)
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError({field: _details(errors) for field, errors in exc.error_dict.items()})
    return exceptions.ValidationError({"non_field_errors": _details(exc.error_list)})


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = _from_django_validation(exc)
    elif isinstance(exc, Http404):
        # AccessDenied is an Http404: a denial reads exactly like a missing appointment.
        exc = exceptions.NotFound(_("No encontrado."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    body: dict[str, Any]
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        first = next(iter(errors.values()))[0] if errors else {"code": "invalid", "message": ""}
        # A refusal of the request as a whole (a service's) puts its own code on top; field errors read
        # "invalid" on top, with each field's own codes under `errors`.
        only_general = set(errors) == {"non_field_errors"}
        body = {
            "code": first["code"] if only_general else "invalid",
            "detail": first["message"] if only_general else _("Revise los datos enviados."),
            "errors": errors,
        }
    else:
        detail = exc.detail
        codes = exc.get_codes()
        body = {"code": codes if isinstance(codes, str) else exc.default_code, "detail": str(detail)}
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)
