"""Routes for signing in, the account's security and staff administration."""

from django.urls import path

from accounts.views import security, signin, staff

app_name = "accounts"

urlpatterns = [
    path("login/", signin.login_view, name="login"),
    path("otp/", signin.otp_view, name="otp"),
    path("otp/enrol/", signin.otp_enrol_view, name="otp_enrol"),
    path("backup-codes/", signin.backup_codes_view, name="backup_codes"),
    path("reauth/", signin.reauth_view, name="reauth"),
    path("logout/", signin.logout_view, name="logout"),
    path("security/", security.security_view, name="security"),
    path("staff/", staff.staff_list, name="staff_list"),
    path("staff/new/", staff.staff_create, name="staff_create"),
    path("staff/<int:user_id>/", staff.staff_detail, name="staff_detail"),
    path("staff/<int:user_id>/role/", staff.staff_change_role, name="staff_change_role"),
    path("staff/<int:user_id>/establishments/add/", staff.staff_add_membership, name="staff_add_membership"),
    path("staff/<int:user_id>/establishments/remove/", staff.staff_remove_membership, name="staff_remove_membership"),
    path("staff/<int:user_id>/active/", staff.staff_set_active, name="staff_set_active"),
    path("staff/<int:user_id>/second-factor/reset/", staff.staff_reset_second_factor, name="staff_reset_second_factor"),
]
