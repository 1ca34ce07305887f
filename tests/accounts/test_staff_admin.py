"""Clinic admins manage the staff of their establishments; everyone else gets a missing page (SEC-1, SEC-2)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import PractitionerProfile, Role, StaffMembership, User
from audit.actions import AuditAction
from tests.accounts.helpers import ENROL, events, post_password
from tests.factories import DEMO_PASSWORD, StaffMembershipFactory

LIST = reverse("accounts:staff_list")
CREATE = reverse("accounts:staff_create")


def _detail(user, name="staff_detail"):
    return reverse(f"accounts:{name}", kwargs={"user_id": user.pk})


def _practitioner_data(**overrides):
    data = {
        "full_name": "Rosa Quispe",
        "email": "rosa.quispe@example.test",
        "role": Role.PRACTITIONER,
        "password": "una-clave-segura-2026",
        "profession": "physician",
        "registry_body": "CMP",
        "registry_number": "54321",
        "specialty": "Cardiología",
        "rne": "12345",
    }
    data.update(overrides)
    return data


def test_admin_lists_staff_of_their_establishments_only(client, personas, login_as):
    login_as(personas.admin)
    page = client.get(LIST).content.decode()
    for member in (personas.practitioner, personas.coordinator, personas.auditor, personas.admin):
        assert member.email in page
    assert personas.outsider.email not in page
    assert personas.patient.email not in page


def test_staff_list_query_count_does_not_grow_with_staff(client, personas, login_as, django_assert_max_num_queries):
    login_as(personas.admin)
    client.get(LIST)
    with django_assert_max_num_queries(12) as captured:
        client.get(LIST)
    baseline = len(captured.captured_queries)
    for _ in range(5):
        StaffMembershipFactory(establishment=personas.establishment)
    with django_assert_max_num_queries(baseline):
        client.get(LIST)


ADMIN_PAGES = [
    ("get", "staff_list", False),
    ("get", "staff_create", False),
    ("get", "staff_detail", True),
    ("post", "staff_change_role", True),
    ("post", "staff_add_membership", True),
    ("post", "staff_remove_membership", True),
    ("post", "staff_set_active", True),
    ("post", "staff_reset_second_factor", True),
]


@pytest.mark.parametrize("persona", ["outsider", "practitioner", "coordinator", "auditor", "patient"])
@pytest.mark.parametrize(("method", "name", "takes_user"), ADMIN_PAGES)
def test_other_roles_get_a_missing_page(client, personas, login_as, persona, method, name, takes_user):
    login_as(getattr(personas, persona))
    url = _detail(personas.coordinator, name) if takes_user else reverse(f"accounts:{name}")
    response = getattr(client, method)(url, {"role": Role.CLINIC_ADMIN, "active": "0"})
    assert response.status_code == 404
    assert "Página no encontrada" in response.content.decode()
    personas.coordinator.refresh_from_db()
    assert personas.coordinator.role == Role.COORDINATOR and personas.coordinator.is_active
    assert not events(AuditAction.ROLE_CHANGED) and not events(AuditAction.USER_DEACTIVATED)


def test_anonymous_is_sent_to_sign_in(client, personas):
    response = client.get(LIST)
    assert response.status_code == 302 and response.url.startswith(reverse("accounts:login"))


def test_admin_of_another_clinic_cannot_see_or_change_our_staff(client, personas, login_as):
    other_admin = StaffMembershipFactory(user__role=Role.CLINIC_ADMIN, establishment=personas.other_establishment).user
    TOTPDevice.objects.create(user=other_admin, name="app", confirmed=True)
    login_as(other_admin)
    missing = client.get(_detail(User(pk=999_999)))
    forbidden = client.get(_detail(personas.coordinator))
    assert missing.status_code == forbidden.status_code == 404
    assert client.post(_detail(personas.coordinator, "staff_reset_second_factor")).status_code == 404
    assert TOTPDevice.objects.filter(user=personas.coordinator).exists()
    # A patient is never "staff", even by id.
    assert client.get(_detail(personas.patient)).status_code == 404


def test_admin_creates_a_practitioner_with_registry_data(client, personas, login_as):
    login_as(personas.admin)
    form_page = client.get(CREATE).content.decode()
    assert personas.other_establishment.name not in form_page  # only the admin's establishments
    response = client.post(CREATE, {**_practitioner_data(), "establishments": [personas.establishment.pk]})
    member = User.objects.get(email="rosa.quispe@example.test")
    assert response.status_code == 302 and response.url == _detail(member)
    assert member.role == Role.PRACTITIONER and member.check_password("una-clave-segura-2026")
    profile = PractitionerProfile.objects.get(user=member)
    assert (profile.registry_body, profile.registry_number, profile.rne) == ("CMP", "54321", "12345")
    assert list(member.memberships.values_list("establishment_id", flat=True)) == [personas.establishment.pk]
    (event,) = events(AuditAction.USER_CREATED)
    assert event.actor_user_id == personas.admin.pk and event.object_id == str(member.pk)
    assert event.details == {"role": "practitioner", "establishments": [personas.establishment.pk]}
    # The new practitioner must enrol a second factor at first sign-in.
    client.post(reverse("accounts:logout"))
    assert post_password(client, "rosa.quispe@example.test", "una-clave-segura-2026").url == ENROL


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"registry_body": "CEP"}, "registry_body"),  # a physician is registered by the CMP
        ({"registry_number": "12a45"}, "registry_number"),
        ({"registry_number": ""}, "registry_number"),
        ({"rne": "12345", "specialty": ""}, "specialty"),
        ({"email": "medico@example.test"}, "email"),  # already taken
        ({"email": "x" * 10_000 + "@example.test"}, "email"),
        ({"password": "123"}, "password"),
        ({"role": "patient"}, "role"),
        ({"role": "superuser"}, "role"),
    ],
)
def test_invalid_staff_data_is_a_form_error(client, personas, login_as, overrides, field):
    login_as(personas.admin)
    data = {**_practitioner_data(**overrides), "establishments": [personas.establishment.pk]}
    response = client.post(CREATE, data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not User.objects.filter(email="rosa.quispe@example.test").exists()


def test_duplicate_registry_number_is_refused(client, personas, login_as):
    login_as(personas.admin)
    taken = personas.practitioner.practitioner_profile.registry_number
    data = {**_practitioner_data(registry_number=taken), "establishments": [personas.establishment.pk]}
    response = client.post(CREATE, data)
    assert response.status_code == 400 and "registry_number" in response.context["form"].errors


def test_cannot_create_staff_in_an_establishment_the_admin_does_not_manage(client, personas, login_as):
    login_as(personas.admin)
    data = {**_practitioner_data(), "establishments": [personas.other_establishment.pk]}
    response = client.post(CREATE, data)
    assert response.status_code == 400 and "establishments" in response.context["form"].errors


def test_coordinator_needs_no_registry_data(client, personas, login_as):
    login_as(personas.admin)
    data = {
        "full_name": "Luis Mamani",
        "email": "luis@example.test",
        "role": Role.COORDINATOR,
        "password": "una-clave-segura-2026",
        "establishments": [personas.establishment.pk],
    }
    assert client.post(CREATE, data).status_code == 302
    assert not PractitionerProfile.objects.filter(user__email="luis@example.test").exists()


def test_role_change_is_audited(client, personas, login_as):
    login_as(personas.admin)
    response = client.post(_detail(personas.coordinator, "staff_change_role"), {"role": Role.AUDITOR})
    assert response.status_code == 302
    personas.coordinator.refresh_from_db()
    assert personas.coordinator.role == Role.AUDITOR
    (event,) = events(AuditAction.ROLE_CHANGED)
    assert event.actor_user_id == personas.admin.pk and event.actor_role == Role.CLINIC_ADMIN
    assert event.object_id == str(personas.coordinator.pk)
    assert event.details == {"from": "coordinator", "to": "auditor"}


def test_role_change_to_practitioner_needs_registry_data(client, personas, login_as):
    login_as(personas.admin)
    response = client.post(_detail(personas.coordinator, "staff_change_role"), {"role": Role.PRACTITIONER})
    assert response.status_code == 400
    assert not events(AuditAction.ROLE_CHANGED)


def test_admin_cannot_change_their_own_account(client, personas, login_as):
    login_as(personas.admin)
    for name, data in [
        ("staff_change_role", {"role": Role.AUDITOR}),
        ("staff_set_active", {"active": "0"}),
        ("staff_reset_second_factor", {}),
    ]:
        assert client.post(_detail(personas.admin, name), data).status_code == 302
    personas.admin.refresh_from_db()
    assert personas.admin.role == Role.CLINIC_ADMIN and personas.admin.is_active
    assert TOTPDevice.objects.filter(user=personas.admin).exists()


def test_reset_second_factor_makes_them_enrol_again(client, personas, login_as):
    StaticDevice.objects.create(user=personas.practitioner, name="backup", confirmed=True)
    login_as(personas.admin)
    response = client.post(_detail(personas.practitioner, "staff_reset_second_factor"))
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=personas.practitioner).exists()
    assert not StaticDevice.objects.filter(user=personas.practitioner).exists()
    (event,) = events(AuditAction.OTP_RESET)
    assert event.actor_user_id == personas.admin.pk and event.object_id == str(personas.practitioner.pk)
    assert event.details == {"authenticator_removed": True, "backup_set_removed": True}
    client.post(reverse("accounts:logout"))
    assert post_password(client, "medico@example.test").url == ENROL


def test_deactivate_and_reactivate(client, personas, login_as):
    login_as(personas.admin)
    client.post(_detail(personas.coordinator, "staff_set_active"), {"active": "0"})
    personas.coordinator.refresh_from_db()
    assert not personas.coordinator.is_active
    assert events(AuditAction.USER_DEACTIVATED)[0].object_id == str(personas.coordinator.pk)
    client.post(_detail(personas.coordinator, "staff_set_active"), {"active": "1"})
    personas.coordinator.refresh_from_db()
    assert personas.coordinator.is_active
    assert events(AuditAction.USER_REACTIVATED)[0].actor_user_id == personas.admin.pk


def test_deactivated_staff_cannot_sign_in_and_open_sessions_end(client, personas, login_as):
    from django.test import Client

    coordinator_client = Client()
    coordinator_client.force_login(personas.coordinator)
    login_as(personas.admin)
    client.post(_detail(personas.coordinator, "staff_set_active"), {"active": "0"})
    assert coordinator_client.get(reverse("accounts:security")).status_code == 302
    response = post_password(Client(), "coordinacion@example.test", DEMO_PASSWORD)
    assert response.status_code == 200 and "Correo o contraseña incorrectos." in response.content.decode()


def test_membership_add_and_remove_are_audited(client, personas, login_as):
    second = StaffMembershipFactory(user=personas.admin).establishment
    login_as(personas.admin)
    url_add = _detail(personas.coordinator, "staff_add_membership")
    assert client.post(url_add, {"establishment": second.pk}).status_code == 302
    assert StaffMembership.objects.filter(user=personas.coordinator, establishment=second).exists()
    # An establishment the admin does not manage cannot be added.
    assert client.post(url_add, {"establishment": personas.other_establishment.pk}).status_code == 400
    url_remove = _detail(personas.coordinator, "staff_remove_membership")
    assert client.post(url_remove, {"establishment": second.pk}).status_code == 302
    assert not StaffMembership.objects.filter(user=personas.coordinator, establishment=second).exists()
    assert events(AuditAction.MEMBERSHIP_ADDED)[0].details == {"establishment": second.pk}
    assert events(AuditAction.MEMBERSHIP_REMOVED)[0].details == {"establishment": second.pk}


def test_detail_page_shows_no_clinical_links(client, personas, login_as):
    login_as(personas.admin)
    page = client.get(_detail(personas.practitioner)).content.decode()
    assert personas.practitioner.full_name in page
    # Admins manage consent texts and data-protection requests, but never open patients or charts.
    assert "/records/patients/" not in page and "/chart/" not in page
