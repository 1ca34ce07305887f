from django.urls import path

from frontend import views
from frontend.patient import precall, visit

app_name = "frontend"

urlpatterns = [
    path("", views.home, name="home"),
    # Join links (SCH-7): the token is traded for a session at once; every other page has a clean URL.
    path("j/", visit.join_status, name="join_status"),
    path("j/recover/", visit.recover, name="join_recover"),
    path("j/<str:token>", visit.join, name="join"),
    path("visit/<uuid:public_id>/", visit.visit, name="visit"),
    path("visit/<uuid:public_id>/verify/", visit.verify, name="visit_verify"),
    path("visit/<uuid:public_id>/consents/", visit.consents, name="visit_consents"),
    path("visit/<uuid:public_id>/waiting/", visit.waiting, name="visit_waiting"),
    # The pre-call check (VID-5): for one visit from its lobby, or for anyone signed in.
    path("visit/<uuid:public_id>/check/", precall.visit_check, name="visit_check"),
    path("check/", precall.check, name="check"),
]
