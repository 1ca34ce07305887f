"""The words of the browser's call client (frontend/static/frontend/visit/call.js), translated here and rendered
into the page as JSON: the script itself holds no text. Placeholders in braces are filled by the script."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

CALL_STRINGS = {
    "connecting": _("Conectando con la sala…"),
    "reconnecting": _("Se perdió la conexión. Reconectando…"),
    "waiting": _("Esperando a que el profesional lo admita."),
    "in_call": _("En la teleconsulta."),
    "call_heading": _("Teleconsulta"),
    "role_patient": _("Paciente"),
    "role_practitioner": _("Profesional"),
    "role_consulted": _("Especialista consultado"),
    "role_interpreter": _("Intérprete"),
    "role_participant": _("Participante"),
    "you": _("Usted"),
    "video_of": _("Video de: {role}"),
    "waiting_someone": _("{role} en la sala de espera"),
    "admit": _("Admitir"),
    "decline": _("No admitir"),
    "mute": _("Silenciar micrófono"),
    "unmute": _("Activar micrófono"),
    "camera_off": _("Apagar cámara"),
    "camera_on": _("Encender cámara"),
    "screen": _("Compartir pantalla"),
    "screen_stop": _("Dejar de compartir pantalla"),
    "audio_only": _("Solo audio"),
    "video_resume": _("Volver al video"),
    "audio_only_auto": _("La conexión es débil: la consulta sigue solo con audio."),
    "audio_only_host": _("La consulta sigue solo con audio."),
    "video_back": _("El video se reanudó."),
    "no_camera": _("No se pudo usar la cámara: la consulta sigue solo con audio."),
    "no_media": _("No se pudo usar la cámara ni el micrófono. Puede escribir en el chat."),
    "no_other_camera": _("No se encontró otra cámara."),
    "no_camera_on": _("No se pudo encender la cámara."),
    # A browser without WebRTC: the visit goes on by chat (docs/signalling.md, "Chat only")
    "chat_only_waiting": _(
        "Este navegador no permite videollamadas. Puede seguir esperando: cuando lo admitan, la teleconsulta será "
        "por chat. Para verse y escucharse, abra el enlace de su cita en Chrome (Android) o Safari (iPhone) "
        "actualizados."
    ),
    "chat_only": _(
        "Este navegador no permite videollamadas: la teleconsulta sigue por chat. Escriba sus mensajes abajo."
    ),
    "peer_chat_only": _("(solo chat: su navegador no permite videollamadas)"),
    # The waiting room's self-view
    "preview_starting": _("Abriendo su cámara y micrófono…"),
    "preview_ready": _("Así lo verán y escucharán. Nadie lo ve ni lo escucha hasta que el profesional lo admita."),
    "preview_camera_off": _("Cámara apagada: entrará a la teleconsulta sin video."),
    "preview_audio_advised": _(
        "Su conexión funciona mejor solo con audio: entrará con el micrófono. Puede encender la cámara si lo desea."
    ),
    "preview_denied": _(
        "El navegador no tiene permiso para usar su cámara ni su micrófono. Puede seguir esperando y entrar a la "
        "teleconsulta; para que lo vean y escuchen, permita el acceso en la configuración del navegador y pulse "
        "«Intentar de nuevo»."
    ),
    "preview_camera_denied": _(
        "El navegador no tiene permiso para usar su cámara: entrará solo con audio. Puede permitirlo en la "
        "configuración del navegador y pulsar «Intentar de nuevo»."
    ),
    "preview_no_camera": _("No se pudo usar la cámara: entrará solo con audio."),
    "preview_no_devices": _(
        "No se encontró cámara ni micrófono. Puede seguir esperando y, en la teleconsulta, escribir en el chat."
    ),
    "preview_caption": _("Usted (vista previa)"),
    "no_screen": _("Este navegador no permite compartir la pantalla."),
    "peer_connecting": _("(conectando…)"),
    "peer_reconnecting": _("(reconectando…)"),
    "peer_audio_only": _("(solo audio)"),
    "peer_no_video": _("(cámara apagada)"),
    "peer_muted": _("(micrófono silenciado)"),
    "quality_good": _("Conexión buena"),
    "quality_fair": _("Conexión regular"),
    "quality_poor": _("Conexión débil"),
    "closed_left": _("Salió de la teleconsulta."),
    "closed_ended": _("La teleconsulta terminó. Gracias."),
    "closed_declined": _("El profesional no pudo admitirlo en esta teleconsulta."),
    "closed_signed_out": _("Su sesión terminó. Vuelva a abrir el enlace de la cita o inicie sesión."),
    "closed_not_yours": _("Esta teleconsulta no es suya."),
    "closed_unknown": _("Esta cita ya no está vigente (cancelada, reprogramada o vencida)."),
    "closed_window": _("La sala no está abierta en este momento."),
    "closed_replaced": _("La teleconsulta se abrió en otra pestaña o dispositivo."),
    "closed_consent": _("Falta su consentimiento para la teleconsulta."),
    "closed_full": _("La teleconsulta está completa."),
    "error_forbidden": _("No puede hacer eso en esta teleconsulta."),
    "error_waiting": _("Espere a que lo admitan."),
    "error_unknown_participant": _("Esa persona ya no está en la teleconsulta."),
    "error_not_waiting": _("Esa persona ya no está esperando."),
    "error_not_started": _("La teleconsulta aún no empezó."),
    "error_ended": _("La teleconsulta terminó."),
    "error_no_practitioner": _("No hay un profesional en la teleconsulta."),
    "error_refused": _("No se pudo iniciar la atención en la historia clínica."),
    "error_generic": _("No se pudo realizar la acción."),
    # Recording (VID-8)
    "recording_on_video": _("Grabando (video y audio)"),
    "recording_on_audio": _("Grabando (solo audio)"),
    "recording_kind_video": _("video y audio"),
    "recording_kind_audio": _("solo audio"),
    "recording_asked": _("Se pidió grabar ({kind}): esperando que los demás profesionales acepten."),
    "recording_prompt": _("{role} propone grabar esta teleconsulta ({kind}). ¿Acepta?"),
    "recording_refused": _("No se grabará: un participante no aceptó."),
    "recording_stopped_host": _("La grabación se detuvo."),
    "recording_stopped_consent_revoked": _("La grabación se detuvo: se retiró un consentimiento."),
    "recording_stopped_participant_without_consent": _(
        "La grabación se detuvo: ingresó un participante que no dio su consentimiento."
    ),
    "recording_stopped_host_left": _("La grabación se detuvo: el profesional que la inició salió."),
    "recording_stopped_visit_ended": _("La grabación se detuvo: la teleconsulta terminó."),
    "recording_stopped_recorder_failed": _("No se pudo iniciar la grabación por un problema del servidor."),
    "recording_stopped_recorder_lost": _(
        "La grabación se interrumpió por un problema del servidor y no se pudo guardar."
    ),
    "recording_incomplete": _("{role} se unió después de iniciada la grabación y no está en ella."),
    "error_no_recording_consent": _("El paciente no dio su consentimiento para este tipo de grabación."),
    "error_recording_active": _("Ya hay una grabación en curso o pendiente."),
    "error_no_recording": _("Esa grabación ya no está en curso."),
    "error_recording_late": _("Su imagen y su voz no se pudieron agregar a la grabación en curso."),
    "error_bad_recording_offer": _("No se pudo conectar con el grabador."),
}


def call_strings() -> dict[str, str]:
    """The catalog in the request's language, ready for json_script."""
    return {key: str(text) for key, text in CALL_STRINGS.items()}
