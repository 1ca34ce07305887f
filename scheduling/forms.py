"""Forms of the staff scheduling pages: calendar filters, booking, cancelling, availability and visit types.

Every field has a length limit no honest input reaches, so oversized input is a form error, never a 500.
Times typed by staff are wall-clock times of the establishment (or of the zone chosen on the form) and become
aware datetimes here; services receive and store UTC.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.forms import model_choice
from accounts.models import Establishment, User
from scheduling.models import CancelReason, ExceptionKind, Modality, ServiceType, VisitType, Weekday

MAX_RANGE_DAYS = 62
DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y"]
INVALID_DATE = _("Escriba una fecha válida (día, mes y año).")
INVALID_TIME = _("Escriba una hora válida (HH:MM).")
END_BEFORE_START = _("La hora de fin debe ser posterior a la de inicio.")
UNKNOWN_ZONE = _("Zona horaria desconocida.")


class _Form(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class PractitionerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.full_name


class VisitTypeChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: VisitType) -> str:
        return f"{obj.name} · {obj.specialty} ({obj.duration_minutes} min)"


class VisitTypesChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: VisitType) -> str:
        return f"{obj.name} ({obj.duration_minutes} min)"


def _short(value: Any, limit: int = 40) -> Any:
    # A "date" thousands of characters long is not a date: refuse before parsing it.
    if isinstance(value, str) and len(value) > limit:
        raise ValidationError(INVALID_DATE, code="invalid")
    return value


class DateField(forms.DateField):
    widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", DATE_FORMATS)
        kwargs.setdefault("error_messages", {"invalid": INVALID_DATE, "required": _("Indique la fecha.")})
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dt.date | None:
        return super().to_python(_short(value))


class TimeField(forms.TimeField):
    widget = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", ["%H:%M", "%H:%M:%S"])
        kwargs.setdefault("error_messages", {"invalid": INVALID_TIME, "required": _("Indique la hora.")})
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dt.time | None:
        return super().to_python(_short(value))


class LocalDateTimeField(forms.Field):
    """A wall-clock date and time (a `datetime-local` input), returned naive: the form decides its zone."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    default_error_messages = {"invalid": _("Escriba una fecha y hora válidas.")}

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None)
        text = str(value).strip()
        if len(text) > 32:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"):
            try:
                return dt.datetime.strptime(text, pattern)
            except ValueError:
                continue
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class UtcInstantField(forms.CharField):
    """A slot's start as the page rendered it (ISO 8601 with offset); a hidden field of the slot picker."""

    default_error_messages = {"invalid": _("Elija un horario de la lista.")}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("error_messages", {"required": _("Elija un horario de la lista.")})
        super().__init__(**kwargs)

    def clean(self, value: Any) -> dt.datetime | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        if parsed.tzinfo is None:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed.astimezone(dt.UTC)


def zone_or_error(name: str) -> zoneinfo.ZoneInfo:
    try:
        if name not in zoneinfo.available_timezones():
            raise KeyError(name)
        return zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError):
        raise ValidationError(UNKNOWN_ZONE, code="unknown_time_zone") from None


def _visit_type_label(visit_type: VisitType) -> str:
    return f"{visit_type.name} · {visit_type.specialty} ({visit_type.duration_minutes} min)"


def _choice_error(message: Any) -> dict[str, Any]:
    return {"invalid_choice": message, "required": message}


class CalendarForm(_Form):
    """Which calendar to show: read from the query string (ids and a date only, never personal data)."""

    VIEWS = [("day", _("Día")), ("week", _("Semana"))]

    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"),
        queryset=Establishment.objects.none(),
        required=False,
        empty_label=None,
        error_messages=_choice_error(_("Elija uno de sus establecimientos.")),
    )
    practitioner = PractitionerChoiceField(
        label=_("Profesional"),
        queryset=User.objects.none(),
        required=False,
        empty_label=_("Todos los profesionales"),
        error_messages={"invalid_choice": _("Elija un profesional de la lista.")},
    )
    view = forms.ChoiceField(label=_("Vista"), choices=VIEWS, required=False)
    date = DateField(label=_("Fecha"), required=False)

    def __init__(
        self, *args: Any, establishments: QuerySet[Establishment], practitioners: QuerySet[User], **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        model_choice(self, "establishment").queryset = establishments
        model_choice(self, "practitioner").queryset = practitioners


class DayForm(_Form):
    date = DateField(label=_("Fecha"), required=False)


class EstablishmentChoiceForm(_Form):
    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"),
        queryset=Establishment.objects.none(),
        required=False,
        empty_label=None,
        error_messages=_choice_error(_("Elija uno de sus establecimientos.")),
    )

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], **kwargs: Any):
        super().__init__(*args, **kwargs)
        model_choice(self, "establishment").queryset = establishments


def _practitioner_field(label: Any, *, required: bool = True) -> PractitionerChoiceField:
    return PractitionerChoiceField(
        label=label,
        queryset=User.objects.none(),
        required=required,
        empty_label=_("— Elija —") if required else _("— Ninguno —"),
        error_messages=_choice_error(_("Elija un profesional de la lista.")),
    )


class _RangeMixin:
    def _check_range(self, data: dict[str, Any]) -> None:
        start, end = data.get("date_from"), data.get("date_until")
        if start and end:
            if end < start:
                self.add_error("date_until", _("La fecha final no puede ser anterior a la inicial."))  # type: ignore[attr-defined]
            elif (end - start).days > MAX_RANGE_DAYS:
                self.add_error(  # type: ignore[attr-defined]
                    "date_until", _("Busque en un periodo de hasta %(days)s días.") % {"days": MAX_RANGE_DAYS}
                )


class SlotSearchForm(_RangeMixin, _Form):
    """Step two of booking: what and with whom, and over which days to look for free times."""

    visit_type = VisitTypeChoiceField(
        label=_("Tipo de cita"),
        queryset=VisitType.objects.none(),
        empty_label=_("— Elija —"),
        error_messages=_choice_error(_("Elija un tipo de cita de la lista.")),
    )
    practitioner = _practitioner_field(_("Profesional"), required=False)
    date_from = DateField(label=_("Desde"))
    date_until = DateField(label=_("Hasta"))

    def __init__(self, *args: Any, visit_types: QuerySet[VisitType], practitioners: QuerySet[User], **kwargs: Any):
        super().__init__(*args, **kwargs)
        model_choice(self, "visit_type").queryset = visit_types
        practitioner = model_choice(self, "practitioner")
        practitioner.queryset = practitioners
        practitioner.empty_label = _("Cualquier profesional de la especialidad")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._check_range(data)
        return data


class SlotChoiceForm(_Form):
    """Step three: the slot picked from the list (its practitioner travels with it)."""

    start = UtcInstantField(widget=forms.HiddenInput)
    slot_practitioner = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=2**31 - 1)


class InterconsultationSearchForm(_RangeMixin, _Form):
    visit_type = VisitTypeChoiceField(
        label=_("Tipo de cita"),
        queryset=VisitType.objects.none(),
        empty_label=_("— Elija —"),
        error_messages=_choice_error(_("Elija un tipo de cita de la lista.")),
    )
    requesting = _practitioner_field(_("Profesional que solicita"))
    requesting_establishment = forms.ModelChoiceField(
        label=_("Establecimiento de origen"),
        queryset=Establishment.objects.none(),
        empty_label=_("— Elija —"),
        error_messages=_choice_error(_("Elija uno de sus establecimientos.")),
    )
    consulted = _practitioner_field(_("Especialista consultado"))
    consulted_establishment = forms.ModelChoiceField(
        label=_("Establecimiento del especialista"),
        queryset=Establishment.objects.none(),
        empty_label=_("— Elija —"),
        error_messages=_choice_error(_("Elija un establecimiento de la lista.")),
    )
    interpreter = _practitioner_field(_("Intérprete (opcional)"), required=False)
    date_from = DateField(label=_("Desde"))
    date_until = DateField(label=_("Hasta"))

    def __init__(
        self,
        *args: Any,
        visit_types: QuerySet[VisitType],
        own_establishments: QuerySet[Establishment],
        all_establishments: QuerySet[Establishment],
        practitioners: QuerySet[User],
        staff: QuerySet[User],
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        model_choice(self, "visit_type").queryset = visit_types
        model_choice(self, "requesting_establishment").queryset = own_establishments
        model_choice(self, "consulted_establishment").queryset = all_establishments
        model_choice(self, "requesting").queryset = practitioners
        model_choice(self, "consulted").queryset = practitioners
        model_choice(self, "interpreter").queryset = staff

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._check_range(data)
        requesting, consulted = data.get("requesting"), data.get("consulted")
        if requesting and consulted and requesting == consulted:
            self.add_error("consulted", _("El especialista consultado debe ser otra persona."))
        if data.get("requesting_establishment") and data.get("requesting_establishment") == data.get(
            "consulted_establishment"
        ):
            self.add_error("consulted_establishment", _("La teleinterconsulta es con otro establecimiento."))
        interpreter = data.get("interpreter")
        if interpreter and interpreter in (requesting, consulted):
            self.add_error("interpreter", _("El intérprete debe ser otra persona."))
        # Membership: each practitioner must work at the establishment they take part from.
        for person, place, field in (
            (requesting, data.get("requesting_establishment"), "requesting"),
            (consulted, data.get("consulted_establishment"), "consulted"),
        ):
            if person and place and not person.memberships.filter(establishment=place).exists():
                self.add_error(field, _("Esa persona no trabaja en el establecimiento elegido."))
        return data


class InterconsultationChoiceForm(_Form):
    start = UtcInstantField(widget=forms.HiddenInput)


class CancelForm(_Form):
    reason = forms.ChoiceField(
        label=_("Motivo de la cancelación"),
        choices=[("", _("— Elija —")), *CancelReason.choices],
        error_messages=_choice_error(_("Elija el motivo de la cancelación.")),
    )
    note = forms.CharField(
        label=_("Nota (opcional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Solo la ve el personal. No escriba datos clínicos."),
    )


class RescheduleSearchForm(_RangeMixin, _Form):
    date_from = DateField(label=_("Desde"))
    date_until = DateField(label=_("Hasta"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._check_range(data)
        return data


class RescheduleChoiceForm(_Form):
    start = UtcInstantField(widget=forms.HiddenInput)


class AvailabilityRuleForm(_Form):
    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"),
        queryset=Establishment.objects.none(),
        empty_label=None,
        error_messages=_choice_error(_("Elija un establecimiento de la lista.")),
    )
    weekday = forms.TypedChoiceField(
        label=_("Día de la semana"),
        choices=Weekday.choices,
        coerce=int,
        error_messages=_choice_error(_("Elija un día de la semana.")),
    )
    start_time = TimeField(label=_("Desde (hora)"))
    end_time = TimeField(label=_("Hasta (hora)"))
    valid_from = DateField(label=_("Vigente desde"))
    valid_until = DateField(label=_("Vigente hasta (opcional)"), required=False)
    visit_types = VisitTypesChoiceField(
        label=_("Tipos de cita"),
        queryset=VisitType.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": _("Marque al menos un tipo de cita."),
            "invalid_choice": _("Elija tipos de cita de la lista."),
            "invalid_pk_value": _("Elija tipos de cita de la lista."),
        },
    )

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], visit_types: QuerySet[VisitType], **kwargs):
        super().__init__(*args, **kwargs)
        model_choice(self, "establishment").queryset = establishments
        model_choice(self, "visit_types").queryset = visit_types

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start_time"), data.get("end_time")
        if start and end and end <= start:
            self.add_error("end_time", END_BEFORE_START)
        since, until = data.get("valid_from"), data.get("valid_until")
        if since and until and until < since:
            self.add_error("valid_until", _("La vigencia no puede terminar antes de empezar."))
        place = data.get("establishment")
        kinds = data.get("visit_types")
        if place and kinds and any(vt.establishment_id != place.pk for vt in kinds):
            self.add_error("visit_types", _("Elija tipos de cita del establecimiento elegido."))
        return data


class AvailabilityExceptionForm(_Form):
    kind = forms.ChoiceField(
        label=_("Tipo de excepción"),
        choices=ExceptionKind.choices,
        error_messages=_choice_error(_("Elija el tipo de excepción.")),
    )
    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"),
        queryset=Establishment.objects.none(),
        required=False,
        empty_label=_("Todos (solo licencias)"),
        error_messages={"invalid_choice": _("Elija un establecimiento de la lista.")},
    )
    start = LocalDateTimeField(label=_("Desde"))
    end = LocalDateTimeField(label=_("Hasta"))
    time_zone = forms.CharField(
        label=_("Zona horaria de estas horas"),
        max_length=64,
        help_text=_("Por ejemplo America/Lima. Vacío: la del establecimiento."),
        required=False,
    )
    label = forms.CharField(
        label=_("Motivo (administrativo)"),
        max_length=120,
        required=False,
        help_text=_("Por ejemplo «Congreso» o «Vacaciones»; nunca datos clínicos."),
    )

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], **kwargs: Any):
        super().__init__(*args, **kwargs)
        model_choice(self, "establishment").queryset = establishments
        self.establishments = establishments

    def clean_time_zone(self) -> str:
        name = self.cleaned_data.get("time_zone", "").strip()
        if name:
            zone_or_error(name)
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, place = data.get("kind"), data.get("establishment")
        if kind and kind != ExceptionKind.LEAVE and place is None and "establishment" not in self.errors:
            self.add_error("establishment", _("Un bloqueo o una sesión adicional es en un establecimiento."))
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            self.add_error("end", END_BEFORE_START)
        if "time_zone" in self.errors or not (start and end) or self.errors:
            return data
        name = data.get("time_zone") or (place or self.establishments.first() or Establishment()).time_zone
        zone = zone_or_error(name or "America/Lima")
        data["start_utc"] = start.replace(tzinfo=zone).astimezone(dt.UTC)
        data["end_utc"] = end.replace(tzinfo=zone).astimezone(dt.UTC)
        return data


class VisitTypeForm(_Form):
    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"),
        queryset=Establishment.objects.none(),
        empty_label=None,
        error_messages=_choice_error(_("Elija un establecimiento de la lista.")),
    )
    name = forms.CharField(
        label=_("Nombre"), max_length=120, error_messages={"required": _("Escriba el nombre del tipo de cita.")}
    )
    specialty = forms.CharField(
        label=_("Especialidad"), max_length=120, error_messages={"required": _("Escriba la especialidad.")}
    )
    duration_minutes = forms.IntegerField(
        label=_("Duración (minutos)"),
        min_value=5,
        max_value=240,
        error_messages={
            "min_value": _("La duración va de 5 a 240 minutos."),
            "max_value": _("La duración va de 5 a 240 minutos."),
            "invalid": _("Escriba un número entero de minutos."),
        },
    )
    buffer_minutes = forms.IntegerField(
        label=_("Pausa después (minutos)"),
        min_value=0,
        max_value=120,
        initial=0,
        error_messages={
            "min_value": _("La pausa va de 0 a 120 minutos."),
            "max_value": _("La pausa va de 0 a 120 minutos."),
            "invalid": _("Escriba un número entero de minutos."),
        },
    )
    service_type = forms.ChoiceField(
        label=_("Tipo de servicio"),
        choices=ServiceType.choices,
        error_messages=_choice_error(_("Elija un tipo de servicio de la lista.")),
    )
    modality = forms.ChoiceField(
        label=_("Modalidad"),
        choices=Modality.choices,
        error_messages=_choice_error(_("Elija una modalidad de la lista.")),
    )
    is_active = forms.BooleanField(label=_("Activo (se puede reservar)"), required=False, initial=True)

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], editing: VisitType | None = None, **kw):
        super().__init__(*args, **kw)
        model_choice(self, "establishment").queryset = establishments
        self.editing = editing
        if editing is not None:
            # A visit type stays at its establishment: appointments and rules point to it.
            del self.fields["establishment"]
        else:
            del self.fields["is_active"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        name = " ".join(str(data.get("name", "")).split())
        if not name and "name" not in self.errors:
            self.add_error("name", _("Escriba el nombre del tipo de cita."))
        data["name"] = name
        data["specialty"] = " ".join(str(data.get("specialty", "")).split())
        place = self.editing.establishment if self.editing else data.get("establishment")
        if place and name:
            taken = VisitType.objects.filter(establishment=place, name__iexact=name)
            if self.editing is not None:
                taken = taken.exclude(pk=self.editing.pk)
            if taken.exists():
                self.add_error("name", _("Ya existe un tipo de cita con ese nombre en el establecimiento."))
        return data
