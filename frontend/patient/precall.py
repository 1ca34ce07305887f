"""The pre-call check (VID-5, UX-2): a page that tests the camera, the microphone and the connection before a
visit. Patients reach it from the lobby (optional: the lobby's "enter" stays one tap); any signed-in person
from the home page. The network half talks to video's /visit/network-test/offer endpoint."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from frontend.patient.common import user_agent
from frontend.patient.visit import _audit_view, _lobby_context, _private, _viewer, in_app_platform


def _catalog() -> dict[str, str]:
    """The words precall.js shows, translated here so the script needs no catalogue of its own. Placeholders
    in braces are filled in by the script."""
    return {
        "insecure": _(
            "La cámara solo funciona en una página segura (https). Abra el enlace tal como lo recibió, "
            "que empieza con https://."
        ),
        "unsupported": _(
            "Este navegador no permite usar la cámara. Use Chrome (Android) o Safari (iPhone) actualizados."
        ),
        "no_calls": _(
            "Este navegador no permite videollamadas: la teleconsulta sería solo por chat. Para verse y escucharse, "
            "abra el enlace de su cita en Chrome (Android) o Safari (iPhone) actualizados."
        ),
        "starting": _("Pidiendo permiso para usar la cámara y el micrófono…"),
        "not_allowed": _(
            "No dio permiso para usar la cámara y el micrófono. Toque el candado junto a la dirección de la "
            "página, permita la cámara y el micrófono, y vuelva a probar."
        ),
        "not_found": _("No encontramos una cámara ni un micrófono en este equipo."),
        "no_camera": _(
            "No encontramos una cámara: el micrófono funciona y puede tener la teleconsulta solo con audio."
        ),
        "not_readable": _(
            "Otra aplicación está usando la cámara o el micrófono. Ciérrela (por ejemplo WhatsApp o Zoom) "
            "y vuelva a probar."
        ),
        "device_error": _("No se pudo abrir la cámara o el micrófono. Vuelva a probar o reinicie el navegador."),
        "devices_ok": _("Su cámara y su micrófono funcionan. Hable: la barra del micrófono debe moverse."),
        "camera_default": _("Cámara {n}"),
        "microphone_default": _("Micrófono {n}"),
        "network_running": _("Probando su conexión. Esto toma unos 5 segundos…"),
        "network_failed": _(
            "No pudimos conectar con el servidor de prueba. Revise su conexión a internet y vuelva a probar."
        ),
        "network_forbidden": _("Su sesión expiró. Vuelva a abrir el enlace de su cita."),
        "network_error": _("La prueba de conexión no funcionó. Vuelva a probar en un momento."),
        "rtt": _("{ms} ms"),
        "loss": _("{pct} %"),
        "bitrate": _("{kbps} kbit/s"),
        "recommend_video": _("Su conexión es buena para una teleconsulta con video."),
        "recommend_audio": _(
            "Su conexión es débil para video: le recomendamos la teleconsulta solo con audio. Acérquese al "
            "router o use datos móviles si puede."
        ),
        "recommend_video_short": _("Video"),
        "recommend_audio_short": _("Solo audio"),
    }


def _render(request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
    context = {
        "catalog": _catalog(),
        # The check's own peer gathers host candidates only; a page may pass ICE servers here later.
        "ice_servers": [],
        "network_test_url": reverse("video:network_test_offer"),
        **context,
    }
    response = render(request, "frontend/visit/precall.html", context)
    # The page itself asks for the camera and microphone; nothing embedded in it may.
    response["Permissions-Policy"] = "camera=(self), microphone=(self)"
    return response


@_private
@require_GET
def visit_check(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The check for one visit, from its lobby: the same gate as the lobby; unverified links verify first."""
    viewer = _viewer(request, public_id)
    if viewer.needs_verification:
        return redirect("frontend:visit", public_id=public_id)
    context = _lobby_context(request, viewer)
    _audit_view(request, viewer)
    ready = (context["consent_ready"] or not context["is_patient"]) and not (
        context["not_open_yet"] or context["closed"]
    )
    if ready:
        context["continue_url"] = reverse("frontend:visit_waiting", args=[public_id])
        context["continue_label"] = _("Continuar a la sala de espera")
    else:
        context["continue_url"] = reverse("frontend:visit", args=[public_id])
        context["continue_label"] = _("Volver a los datos de la cita")
    return _render(request, context)


@login_required
@require_GET
def check(request: HttpRequest) -> HttpResponse:
    """The check for anyone signed in, before any particular visit (nothing personal is read or shown)."""
    context = {
        "in_app": in_app_platform(user_agent(request)),
        "copy_url": request.build_absolute_uri(reverse("frontend:check")),
        "continue_url": reverse("frontend:home"),
        "continue_label": _("Volver al inicio"),
    }
    return _render(request, context)
