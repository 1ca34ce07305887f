"""Staff administration for clinic admins: list, create, role, establishments, (de)activation, second-factor reset.

Admins manage accounts only; nothing here reads or links to clinical content.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts.access import request_user, role_required, staff_member_for
from accounts.forms import MembershipForm, RoleForm, StaffCreateForm
from accounts.models import Role, User


def _admin(request: HttpRequest) -> User:
    return request_user(request)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def staff_list(request: HttpRequest) -> HttpResponse:
    admin = _admin(request)
    staff = list(selectors.staff_managed_by(admin))
    return render(request, "accounts/staff_list.html", {"staff": staff})


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def staff_create(request: HttpRequest) -> HttpResponse:
    admin = _admin(request)
    establishments = selectors.establishments_managed_by(admin)
    form = StaffCreateForm(request.POST if request.method == "POST" else None, establishments=establishments)
    status = 200
    if form.is_valid():
        try:
            member = services.user_create(
                email=form.cleaned_data["email"],
                full_name=form.cleaned_data["full_name"],
                role=Role(form.cleaned_data["role"]),
                password=form.cleaned_data["password"],
                establishments=form.cleaned_data["establishments"],
                practitioner=form.practitioner_data(),
                created_by=admin,
            )
        except IntegrityError:
            # Two admins creating the same e-mail or registry number at once: the constraint decides.
            form.add_error(None, _("Ya existe una cuenta con esos datos."))
        else:
            messages.success(request, _("Cuenta creada. En su primer ingreso la persona activará su segundo factor."))
            return redirect("accounts:staff_detail", user_id=member.pk)
    if form.is_bound:
        status = 400
    return render(request, "accounts/staff_create.html", {"form": form}, status=status)


def _detail_context(admin: User, member: User, **forms: object) -> dict[str, object]:
    managed = selectors.establishments_managed_by(admin)
    member_establishments = [m.establishment for m in member.memberships.all()]
    addable = managed.exclude(pk__in=[e.pk for e in member_establishments])
    return {
        "member": member,
        "is_self": member.pk == admin.pk,
        "member_establishments": member_establishments,
        "managed_ids": set(managed.values_list("pk", flat=True)),
        "role_form": forms.get("role_form") or RoleForm(initial={"role": member.role}),
        "membership_form": forms.get("membership_form") or MembershipForm(establishments=addable),
        "can_add_membership": addable.exists(),
    }


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def staff_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    return render(request, "accounts/staff_detail.html", _detail_context(admin, member))


def _refuse_self(request: HttpRequest, admin: User, member: User) -> HttpResponse | None:
    # An admin cannot demote, deactivate or reset themselves: another admin must, so no one locks the clinic out.
    if member.pk == admin.pk:
        messages.error(request, _("Esta acción la debe realizar otra persona administradora."))
        return redirect("accounts:staff_detail", user_id=member.pk)
    return None


@role_required(Role.CLINIC_ADMIN)
@require_POST
def staff_change_role(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    if refused := _refuse_self(request, admin, member):
        return refused
    form = RoleForm(request.POST)
    if form.is_valid():
        role = Role(form.cleaned_data["role"])
        try:
            services.user_change_role(user=member, role=role, changed_by=admin)
        except ValueError:
            form.add_error("role", _("Para ese rol faltan los datos de colegiatura."))
        else:
            messages.success(request, _("Rol actualizado."))
            return redirect("accounts:staff_detail", user_id=member.pk)
    context = _detail_context(admin, member, role_form=form)
    return render(request, "accounts/staff_detail.html", context, status=400)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def staff_add_membership(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    form = MembershipForm(request.POST, establishments=selectors.establishments_managed_by(admin))
    if form.is_valid():
        services.membership_add(user=member, establishment=form.cleaned_data["establishment"], added_by=admin)
        messages.success(request, _("Establecimiento agregado."))
        return redirect("accounts:staff_detail", user_id=member.pk)
    context = _detail_context(admin, member, membership_form=form)
    return render(request, "accounts/staff_detail.html", context, status=400)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def staff_remove_membership(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    if refused := _refuse_self(request, admin, member):
        return refused
    form = MembershipForm(request.POST, establishments=selectors.establishments_managed_by(admin))
    if form.is_valid():
        services.membership_remove(user=member, establishment=form.cleaned_data["establishment"], removed_by=admin)
        messages.success(request, _("Establecimiento quitado."))
        if not selectors.staff_managed_by(admin).filter(pk=member.pk).exists():
            return redirect("accounts:staff_list")  # no longer one of this admin's staff
    return redirect("accounts:staff_detail", user_id=member.pk)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def staff_set_active(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    if refused := _refuse_self(request, admin, member):
        return refused
    if request.POST.get("active") == "1":
        services.user_reactivate(user=member, reactivated_by=admin)
        messages.success(request, _("Cuenta reactivada."))
    else:
        services.user_deactivate(user=member, deactivated_by=admin)
        messages.success(request, _("Cuenta desactivada; ya no puede ingresar."))
    return redirect("accounts:staff_detail", user_id=member.pk)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def staff_reset_second_factor(request: HttpRequest, user_id: int) -> HttpResponse:
    admin = _admin(request)
    member = staff_member_for(admin, user_id)
    if refused := _refuse_self(request, admin, member):
        return refused
    services.user_reset_second_factor(user=member, reset_by=admin)
    messages.success(request, _("Segundo factor restablecido: la persona lo activará de nuevo en su próximo ingreso."))
    return redirect("accounts:staff_detail", user_id=member.pk)
