"""Why a scheduling action was refused: each refusal has its own code and a message a person can act on."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise


class SchedulingError(ValidationError):
    default_message = _("No se pudo completar la operación de agenda.")
    default_code = "scheduling_error"

    def __init__(self, message: _StrOrPromise | None = None, code: str | None = None) -> None:
        super().__init__(message or self.default_message, code=code or self.default_code)


class SlotTaken(SchedulingError):
    """Somebody else took the time first (the database's exclusion constraint said so)."""

    default_message = _("Ese horario acaba de ser tomado. Elija otro, por favor.")
    default_code = "slot_taken"


class ParticipantBusy(SlotTaken):
    default_message = _("Uno de los participantes ya tiene otra cita a esa hora.")
    default_code = "participant_busy"


class SlotInPast(SchedulingError):
    default_message = _("Ese horario ya pasó. Elija uno futuro.")
    default_code = "slot_in_past"


class OutsideAvailability(SchedulingError):
    default_message = _("El profesional no atiende en ese horario.")
    default_code = "outside_availability"


class HoldExpired(SchedulingError):
    default_message = _("La reserva temporal de ese horario venció. Elija el horario otra vez.")
    default_code = "hold_expired"


class InvalidRange(SchedulingError):
    default_message = _("La hora de fin debe ser posterior a la de inicio.")
    default_code = "invalid_range"


class OverlappingRule(SchedulingError):
    default_message = _("Ese horario se superpone con otro horario semanal del mismo profesional.")
    default_code = "overlapping_rule"


class NotChangeable(SchedulingError):
    default_message = _("Esta cita ya no se puede modificar.")
    default_code = "not_changeable"


class LinkInvalid(SchedulingError):
    default_message = _("Este enlace no es válido o fue reemplazado. Pida uno nuevo a su establecimiento.")
    default_code = "link_invalid"


class LinkNotOpenYet(SchedulingError):
    default_message = _("La sala de su cita todavía no está abierta.")
    default_code = "link_not_open_yet"

    def __init__(self, opens_at: dt.datetime | None = None) -> None:
        super().__init__()
        self.opens_at = opens_at


class LinkClosed(SchedulingError):
    default_message = _("El horario de esta cita ya terminó; el enlace está cerrado.")
    default_code = "link_closed"


class VerificationFailed(SchedulingError):
    default_message = _("Los datos no coinciden. Revise su fecha de nacimiento y los dígitos de su documento.")
    default_code = "verification_failed"


class LinkLocked(SchedulingError):
    default_message = _("Este enlace se bloqueó por demasiados intentos. Pida uno nuevo a su establecimiento.")
    default_code = "link_locked"
