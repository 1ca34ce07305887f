"""Routes of the scheduling API, mounted at /api/v1/ (appointments are named by their public id only)."""

from django.urls import path

from scheduling.api import views

app_name = "scheduling_api"

urlpatterns = [
    path("slots", views.SlotList.as_view(), name="slots"),
    path("visit-types", views.VisitTypeList.as_view(), name="visit_types"),
    path("specialties", views.SpecialtyList.as_view(), name="specialties"),
    path("appointments", views.AppointmentList.as_view(), name="appointments"),
    path("appointments/<str:public_id>", views.AppointmentDetail.as_view(), name="appointment"),
    path("appointments/<str:public_id>/confirm", views.AppointmentConfirm.as_view(), name="appointment_confirm"),
    path("appointments/<str:public_id>/cancel", views.AppointmentCancel.as_view(), name="appointment_cancel"),
    path(
        "appointments/<str:public_id>/reschedule", views.AppointmentReschedule.as_view(), name="appointment_reschedule"
    ),
    path("appointments/<str:public_id>/no-show", views.AppointmentNoShow.as_view(), name="appointment_no_show"),
]
