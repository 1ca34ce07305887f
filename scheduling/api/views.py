"""The scheduling API: thin views (parse → gate → service → serialize) over the same gates and services as the pages."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import AccessDenied
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from scheduling import access, services, slots
from scheduling.api import selectors
from scheduling.api.serializers import (
    AppointmentCreateSerializer,
    AppointmentListQuerySerializer,
    AppointmentSerializer,
    CancelSerializer,
    ErrorSerializer,
    RescheduleSerializer,
    SlotQuerySerializer,
    SlotSerializer,
    VisitTypeSerializer,
)
from scheduling.models import Appointment

# --- who may call what ---

BOOKING_ROLES = (Role.PATIENT, Role.COORDINATOR, Role.CLINIC_ADMIN)
CATALOGUE_ROLES = (Role.PATIENT, Role.PRACTITIONER, Role.COORDINATOR, Role.CLINIC_ADMIN)
CALENDAR_ROLES = CATALOGUE_ROLES
NO_SHOW_ROLES = (Role.PRACTITIONER, Role.COORDINATOR, Role.CLINIC_ADMIN)
# Why a list of appointments was read, for the audit trail (as scheduling.access records single reads).
LIST_PURPOSE = {Role.PATIENT: Purpose.PATIENT_REQUEST, Role.PRACTITIONER: Purpose.TREATMENT}


def _roles(*roles: Role) -> type[BasePermission]:
    """A permission for these roles; staff must also have passed the second factor (as accounts.access asks)."""

    class HasRole(BasePermission):
        def has_permission(self, request: Request, view: APIView) -> bool:
            user = request.user
            if not user.is_authenticated or user.role not in roles:
                return False
            return not user.is_staff_member or user.is_verified()

    HasRole.__name__ = "HasRole_" + "_".join(roles)
    return HasRole


def _public_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise exceptions.NotFound(_("No encontrado.")) from None


def _detail(appointment_pk: int, user: User) -> dict[str, Any]:
    """An appointment as the API shows it, reloaded with everything the serializer reads."""
    appointment = selectors.with_details(Appointment.objects.filter(pk=appointment_pk)).get()
    return AppointmentSerializer(appointment, context={"user": user}).data


def _created(appointment: Appointment, user: User) -> Response:
    location = reverse("scheduling_api:appointment", kwargs={"public_id": str(appointment.public_id)})
    return Response(_detail(appointment.pk, user), status=status.HTTP_201_CREATED, headers={"Location": location})


ERRORS_400 = OpenApiResponse(ErrorSerializer, description="Invalid input; `errors` holds each field's problems.")
ERRORS_403 = OpenApiResponse(ErrorSerializer, description="Not signed in, or this role may not do this.")
ERRORS_404 = OpenApiResponse(ErrorSerializer, description="No such appointment, or not yours to see.")
ERRORS_409 = OpenApiResponse(
    ErrorSerializer, description="`slot_taken` or `participant_busy`: somebody took the time first; pick another."
)
PUBLIC_ID = OpenApiParameter("public_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


# --- catalogue: slots, visit types, specialties ---


class SlotList(APIView):
    permission_classes = [_roles(*CATALOGUE_ROLES)]

    @extend_schema(
        operation_id="slots_list",
        summary="Earliest free slots of a visit type, a specialty or a practitioner",
        parameters=[SlotQuerySerializer],
        responses={200: SlotSerializer(many=True), 400: ERRORS_400, 403: ERRORS_403},
    )
    def get(self, request: Request) -> Response:
        user = request.user
        query = SlotQuerySerializer(
            data=request.query_params,
            visit_types=selectors.visit_types_visible_to(user),
            practitioners=selectors.practitioners_visible_to(user),
        )
        query.is_valid(raise_exception=True)
        params = query.validated_data
        practitioner = params.get("practitioner")
        if user.role == Role.PRACTITIONER:
            practitioner = user  # a practitioner looks for their own free times only
        visit_type = params.get("visit_type")
        criteria = {
            "visit_type": visit_type,
            "specialty": params.get("specialty"),
            "practitioner": practitioner,
            "start": params["from"],
            "end": params["to"],
            "limit": params["limit"],
        }
        if user.role == Role.PATIENT:
            found = slots.find_slots(**criteria)
        else:
            # Staff book at their own establishments only: searched one by one (a handful at most), merged.
            places = [visit_type.establishment] if visit_type else list(access.establishments_for(user))
            found = sorted(
                (slot for place in places for slot in slots.find_slots(establishment=place, **criteria)),
                key=lambda slot: (slot.start, slot.practitioner_id, slot.visit_type_id),
            )[: params["limit"]]
        names = dict(User.objects.filter(pk__in={s.practitioner_id for s in found}).values_list("pk", "full_name"))
        return Response(SlotSerializer(found, many=True, context={"practitioner_names": names}).data)


class VisitTypeList(APIView):
    permission_classes = [_roles(*CATALOGUE_ROLES)]

    @extend_schema(
        operation_id="visit_types_list",
        summary="Visit types one may book (staff: those of their establishments)",
        responses={200: VisitTypeSerializer(many=True), 403: ERRORS_403},
    )
    def get(self, request: Request) -> Response:
        visit_types = selectors.visit_types_visible_to(request.user)
        return Response(VisitTypeSerializer(visit_types, many=True).data)


class SpecialtyList(APIView):
    permission_classes = [_roles(*CATALOGUE_ROLES)]

    @extend_schema(
        operation_id="specialties_list",
        summary="Specialties with bookable visit types",
        responses={200: {"type": "array", "items": {"type": "string"}}, 403: ERRORS_403},
    )
    def get(self, request: Request) -> Response:
        visible = set(selectors.visit_types_visible_to(request.user).values_list("specialty", flat=True))
        return Response([specialty for specialty in slots.specialties() if specialty in visible])


# --- appointments ---


class AppointmentList(APIView):
    permission_classes = [_roles(*CALENDAR_ROLES)]

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "POST":
            return [_roles(*BOOKING_ROLES)()]
        return super().get_permissions()

    @extend_schema(
        operation_id="appointments_list",
        summary="Appointments the caller may see, in a period",
        parameters=[AppointmentListQuerySerializer],
        responses={200: AppointmentSerializer(many=True), 400: ERRORS_400, 403: ERRORS_403},
    )
    def get(self, request: Request) -> Response:
        user = request.user
        query = AppointmentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        found = selectors.appointments_between(
            user,
            start=params["from"],
            end=params["to"],
            practitioner_id=params.get("practitioner"),
            limit=params["limit"],
        )
        own = user.role == Role.PATIENT
        audit.record(
            action=AuditAction.CALENDAR_VIEWED,
            purpose=LIST_PURPOSE.get(user.role, Purpose.OPERATIONS),
            actor_user_id=user.pk,
            actor_role=user.role,
            patient_id=found[0].patient_id if own and found else None,
            object_type="appointment_list",
            details={"via": "api", "count": len(found), "appointment_ids": [a.pk for a in found]},
        )
        return Response(AppointmentSerializer(found, many=True, context={"user": user}).data)

    @extend_schema(
        operation_id="appointments_create",
        summary="Book (coordinator or admin, for a patient) or hold (patient, for themself) a slot",
        request=AppointmentCreateSerializer,
        responses={201: AppointmentSerializer, 400: ERRORS_400, 403: ERRORS_403, 409: ERRORS_409},
    )
    def post(self, request: Request) -> Response:
        user = request.user
        body = AppointmentCreateSerializer(
            data=request.data,
            visit_types=selectors.visit_types_visible_to(user),
            practitioners=selectors.practitioners_visible_to(user),
        )
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if user.role == Role.PATIENT:
            own = getattr(user, "patient", None)
            patient_id = own.pk if own is not None else 0
        elif "patient" in data:
            patient_id = data["patient"]
        else:
            raise exceptions.ValidationError(
                {"patient": [exceptions.ErrorDetail(str(_("Indique el paciente.")), code="required")]}
            )
        try:
            patient = access.patient_for_booking(user, patient_id)
        except AccessDenied:
            # Missing and not-yours read the same, as everywhere.
            raise exceptions.ValidationError(
                {"patient": [exceptions.ErrorDetail(str(_("Paciente no encontrado.")), code="does_not_exist")]}
            ) from None
        book = services.appointment_hold if user.role == Role.PATIENT else services.appointment_book
        appointment = book(
            visit_type=data["visit_type"],
            practitioner=data["practitioner"],
            patient=patient,
            start=data["start"],
            booked_by=user,
        )
        return _created(appointment, user)


class AppointmentDetail(APIView):
    permission_classes = [_roles(*CALENDAR_ROLES)]

    @extend_schema(
        operation_id="appointments_retrieve",
        parameters=[PUBLIC_ID],
        responses={200: AppointmentSerializer, 403: ERRORS_403, 404: ERRORS_404},
    )
    def get(self, request: Request, public_id: str) -> Response:
        appointment = access.appointment_for(request.user, _public_id(public_id))
        return Response(_detail(appointment.pk, request.user))


class _AppointmentAction(APIView):
    """POST on one appointment: gate it for change, then hand it to one service."""

    def gate(self, request: Request, public_id: str) -> Appointment:
        return access.appointment_for(request.user, _public_id(public_id), to_change=True)


class AppointmentConfirm(_AppointmentAction):
    permission_classes = [_roles(Role.PATIENT)]

    @extend_schema(
        operation_id="appointments_confirm",
        summary="Confirm one's own held slot (patient)",
        parameters=[PUBLIC_ID],
        request=None,
        responses={200: AppointmentSerializer, 400: ERRORS_400, 403: ERRORS_403, 404: ERRORS_404, 409: ERRORS_409},
    )
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.gate(request, public_id)
        appointment = services.appointment_confirm(appointment=appointment, by=request.user)
        return Response(_detail(appointment.pk, request.user))


class AppointmentCancel(_AppointmentAction):
    permission_classes = [_roles(*CALENDAR_ROLES)]

    @extend_schema(
        operation_id="appointments_cancel",
        summary="Cancel, with a reason",
        parameters=[PUBLIC_ID],
        request=CancelSerializer,
        responses={200: AppointmentSerializer, 400: ERRORS_400, 403: ERRORS_403, 404: ERRORS_404},
    )
    def post(self, request: Request, public_id: str) -> Response:
        # The body is checked before the gate so that a malformed request costs no audited read.
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        appointment = self.gate(request, public_id)
        appointment = services.appointment_cancel(
            appointment=appointment,
            reason=body.validated_data["reason"],
            note=body.validated_data["note"],
            by=request.user,
        )
        return Response(_detail(appointment.pk, request.user))


class AppointmentReschedule(_AppointmentAction):
    permission_classes = [_roles(*CALENDAR_ROLES)]

    @extend_schema(
        operation_id="appointments_reschedule",
        summary="Move to another start (and optionally another practitioner); answers the new appointment",
        parameters=[PUBLIC_ID],
        request=RescheduleSerializer,
        responses={201: AppointmentSerializer, 400: ERRORS_400, 403: ERRORS_403, 404: ERRORS_404, 409: ERRORS_409},
    )
    def post(self, request: Request, public_id: str) -> Response:
        body = RescheduleSerializer(data=request.data, practitioners=selectors.practitioners_visible_to(request.user))
        body.is_valid(raise_exception=True)
        appointment = self.gate(request, public_id)
        replacement = services.appointment_reschedule(
            appointment=appointment,
            start=body.validated_data["start"],
            practitioner=body.validated_data.get("practitioner"),
            by=request.user,
        )
        return _created(replacement, request.user)


class AppointmentNoShow(_AppointmentAction):
    permission_classes = [_roles(*NO_SHOW_ROLES)]

    @extend_schema(
        operation_id="appointments_no_show",
        summary="Record that the patient did not come (staff)",
        parameters=[PUBLIC_ID],
        request=None,
        responses={200: AppointmentSerializer, 400: ERRORS_400, 403: ERRORS_403, 404: ERRORS_404},
    )
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.gate(request, public_id)
        appointment = services.appointment_mark_no_show(appointment=appointment, by=request.user)
        return Response(_detail(appointment.pk, request.user))
