"""What the API reads (query strings and bodies, checked field by field) and what it answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Establishment, User
from scheduling.models import Appointment, AppointmentParticipant, CancelReason, VisitType
from scheduling.services import MAX_NOTE_LENGTH

# Bounds that keep one request cheap: a slot search walks every rule in its range.
SLOT_SEARCH_DEFAULT_DAYS = 14
SLOT_SEARCH_MAX_DAYS = 62
SLOT_LIMIT_MAX = 100
LIST_DEFAULT_DAYS = 31
LIST_MAX_DAYS = 93
LIST_LIMIT_MAX = 500

# Python keywords cannot be attribute names: these query parameters are declared as `from_` and renamed.
_RENAMED = {"from_": "from"}


class _RangeQuery(serializers.Serializer):
    """A `from`/`to` pair of instants (ISO 8601; a bare date means its midnight UTC), bounded in length."""

    default_days = SLOT_SEARCH_DEFAULT_DAYS
    max_days = SLOT_SEARCH_MAX_DAYS

    from_ = serializers.DateTimeField(
        required=False, help_text="Start of the period (ISO 8601; a bare date is its midnight UTC)."
    )
    to = serializers.DateTimeField(required=False, help_text="End of the period (ISO 8601).")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        return {_RENAMED.get(name, name): field for name, field in fields.items()}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start = attrs.get("from") or self.default_start()
        end = attrs.get("to") or start + dt.timedelta(days=self.default_days)
        if end <= start:
            raise serializers.ValidationError(
                {"to": [_("El fin del periodo debe ser posterior a su inicio.")]}, code="invalid_range"
            )
        if end - start > dt.timedelta(days=self.max_days):
            raise serializers.ValidationError(
                {"to": [_("El periodo no puede pasar de %(days)d días.") % {"days": self.max_days}]},
                code="range_too_long",
            )
        attrs["from"], attrs["to"] = start, end
        return attrs

    def default_start(self) -> dt.datetime:
        return timezone.now()


class SlotQuerySerializer(_RangeQuery):
    visit_type = serializers.PrimaryKeyRelatedField(queryset=VisitType.objects.none(), required=False)
    specialty = serializers.CharField(required=False, max_length=120)
    practitioner = serializers.PrimaryKeyRelatedField(queryset=User.objects.none(), required=False)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=SLOT_LIMIT_MAX)

    def __init__(
        self,
        *args: Any,
        visit_types: QuerySet[VisitType] | None = None,
        practitioners: QuerySet[User] | None = None,
        **kwargs: Any,
    ):
        # What the caller may choose from (the schema generator builds one without: it reads no data).
        super().__init__(*args, **kwargs)
        if visit_types is not None:
            self.fields["visit_type"].queryset = visit_types
        if practitioners is not None:
            self.fields["practitioner"].queryset = practitioners

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not (attrs.get("visit_type") or attrs.get("specialty") or attrs.get("practitioner")):
            raise serializers.ValidationError(
                _("Indique un tipo de cita, una especialidad o un profesional."), code="criteria_required"
            )
        return attrs


class AppointmentListQuerySerializer(_RangeQuery):
    default_days = LIST_DEFAULT_DAYS
    max_days = LIST_MAX_DAYS

    practitioner = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=LIST_LIMIT_MAX)

    def default_start(self) -> dt.datetime:
        # From a day ago: today's earlier appointments stay listed whatever the caller's time zone.
        return timezone.now() - dt.timedelta(days=1)


class AppointmentCreateSerializer(serializers.Serializer):
    visit_type = serializers.PrimaryKeyRelatedField(queryset=VisitType.objects.none())
    practitioner = serializers.PrimaryKeyRelatedField(queryset=User.objects.none())
    start = serializers.DateTimeField()
    patient = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="Patient id to book for (coordinators and admins; a patient always books for themself).",
    )

    def __init__(
        self,
        *args: Any,
        visit_types: QuerySet[VisitType] | None = None,
        practitioners: QuerySet[User] | None = None,
        **kwargs: Any,
    ):
        # What the caller may choose from (the schema generator builds one without: it reads no data).
        super().__init__(*args, **kwargs)
        if visit_types is not None:
            self.fields["visit_type"].queryset = visit_types
        if practitioners is not None:
            self.fields["practitioner"].queryset = practitioners


class CancelSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=CancelReason.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_LENGTH)


class RescheduleSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    practitioner = serializers.PrimaryKeyRelatedField(queryset=User.objects.none(), required=False)

    def __init__(self, *args: Any, practitioners: QuerySet[User] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if practitioners is not None:
            self.fields["practitioner"].queryset = practitioners


# --- answers ---


class EstablishmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Establishment
        fields = ["id", "name", "time_zone"]


class VisitTypeSerializer(serializers.ModelSerializer):
    establishment = EstablishmentSerializer()

    class Meta:
        model = VisitType
        fields = [
            "id",
            "name",
            "specialty",
            "service_type",
            "modality",
            "duration_minutes",
            "buffer_minutes",
            "establishment",
        ]


class VisitTypeBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = VisitType
        fields = ["id", "name", "specialty"]


class SlotSerializer(serializers.Serializer):
    """A free time (scheduling.slots.Slot), with the practitioner's name for choosing among them."""

    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    practitioner = serializers.IntegerField(source="practitioner_id")
    practitioner_name = serializers.SerializerMethodField()
    establishment = serializers.IntegerField(source="establishment_id")
    visit_type = serializers.IntegerField(source="visit_type_id")

    def get_practitioner_name(self, slot: Any) -> str:
        return str(self.context.get("practitioner_names", {}).get(slot.practitioner_id, ""))


class ParticipantSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField()

    class Meta:
        model = AppointmentParticipant
        fields = ["role", "user", "name", "establishment"]

    def get_name(self, participant: AppointmentParticipant) -> str:
        # No query for a seat without a user: a null foreign key reads as None directly.
        user = participant.user
        return user.full_name if user is not None else ""


class PatientBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.SerializerMethodField()

    def get_name(self, patient: Any) -> str:
        return " ".join(p for p in (patient.given_names, patient.paternal_surname, patient.maternal_surname) if p)


class CancellationSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=CancelReason.choices)
    at = serializers.DateTimeField()


class AppointmentSerializer(serializers.ModelSerializer):
    establishment = EstablishmentSerializer()
    visit_type = VisitTypeBriefSerializer()
    patient = PatientBriefSerializer()
    participants = serializers.SerializerMethodField()
    cancellation = serializers.SerializerMethodField()
    rescheduled_from = serializers.SerializerMethodField()

    class Meta:
        model = Appointment
        fields = [
            "public_id",
            "status",
            "start",
            "end",
            "hold_expires_at",
            "service_type",
            "modality",
            "establishment",
            "visit_type",
            "patient",
            "participants",
            "confirmed_at",
            "cancellation",
            "rescheduled_from",
            "sequence",
        ]

    @extend_schema_field(ParticipantSerializer(many=True))
    def get_participants(self, appointment: Appointment) -> list[dict[str, Any]]:
        # Active participants only: a reschedule or cancellation leaves inactive rows behind.
        rows = [p for p in appointment.participants.all() if p.active or not appointment.is_active]
        return ParticipantSerializer(rows, many=True).data

    @extend_schema_field(CancellationSerializer(allow_null=True))
    def get_cancellation(self, appointment: Appointment) -> dict[str, Any] | None:
        # The note is not shown: free text that may mention health, kept encrypted for the staff pages.
        if appointment.cancelled_at is None:
            return None
        return {"reason": appointment.cancel_reason, "at": appointment.cancelled_at}

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_rescheduled_from(self, appointment: Appointment) -> str | None:
        previous = appointment.rescheduled_from
        return str(previous.public_id) if previous is not None else None


class FieldErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    code = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every refusal: a stable `code` to branch on, a translated `detail` to show, per-field `errors` on 400."""

    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=FieldErrorSerializer(many=True), required=False)
