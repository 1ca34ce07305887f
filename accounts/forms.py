"""Forms for signing in, the second factor, the account's security and staff administration."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import (
    STAFF_ROLES,
    Establishment,
    PractitionerProfile,
    Profession,
    RegistryBody,
    Role,
    User,
)

# Sizes that no honest input reaches; bigger input is a form error, never a 500 or a slow hash.
PASSWORD_MAX_LENGTH = 1024
_TOTP = re.compile(r"[0-9]{6}")
_BACKUP_CODE = re.compile(r"[a-z2-7]{8}")  # django-otp static tokens: 8 base32 characters

# Which professional college registers each profession (the number printed on signed notes).
REGISTRY_FOR_PROFESSION = {
    Profession.PHYSICIAN: RegistryBody.CMP,
    Profession.NURSE: RegistryBody.CEP,
    Profession.MIDWIFE: RegistryBody.COP,
    Profession.PSYCHOLOGIST: RegistryBody.CPSP,
    Profession.NUTRITIONIST: RegistryBody.CNP,
    Profession.DENTIST: RegistryBody.COPE,
}

STAFF_ROLE_CHOICES = [(value, label) for value, label in Role.choices if value in STAFF_ROLES]


def _password_widget(autocomplete: str) -> forms.PasswordInput:
    return forms.PasswordInput(attrs={"autocomplete": autocomplete})


def model_choice(form: forms.BaseForm, name: str) -> forms.ModelChoiceField:
    """The form's own copy of a model-choice field, typed as one (`fields` holds plain Fields), so a view's
    form can narrow its choices."""
    field = form.fields[name]
    if not isinstance(field, forms.ModelChoiceField):
        raise TypeError(f"{name} is not a model-choice field.")
    return field


class OtpTokenField(forms.CharField):
    """A 6-digit code from the authenticator app or, if `allow_backup`, an 8-character backup code."""

    def __init__(self, *, allow_backup: bool = True, numeric: bool = True, **kwargs: Any) -> None:
        self.allow_backup = allow_backup
        attrs = {"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"}
        attrs["inputmode"] = "numeric" if numeric else "text"
        kwargs.setdefault("label", _("Código de verificación"))
        super().__init__(max_length=32, widget=forms.TextInput(attrs=attrs), **kwargs)

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        # NFKC turns full-width digits from some phone keyboards into ASCII ones; anything else non-ASCII fails.
        token = re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", value)).lower()
        if _TOTP.fullmatch(token) or (self.allow_backup and _BACKUP_CODE.fullmatch(token)):
            return token
        if self.allow_backup:
            raise forms.ValidationError(
                _("Escriba los 6 dígitos de su aplicación o un código de respaldo de 8 caracteres."), code="format"
            )
        raise forms.ValidationError(_("Escriba los 6 dígitos que muestra su aplicación."), code="format")


class SignInForm(forms.Form):
    email = forms.EmailField(
        label=_("Correo electrónico"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True, "spellcheck": "false"}),
    )
    password = forms.CharField(
        label=_("Contraseña"), max_length=PASSWORD_MAX_LENGTH, strip=False, widget=_password_widget("current-password")
    )


class OtpForm(forms.Form):
    otp_token = OtpTokenField(help_text=_("Abra su aplicación de autenticación y escriba el código de 6 dígitos."))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["otp_token"].widget.attrs["autofocus"] = True


class BackupCodeForm(forms.Form):
    """The same `otp_token` field with a text keyboard, for people typing a backup code on a phone."""

    otp_token = OtpTokenField(
        numeric=False, label=_("Código de respaldo"), help_text=_("Un código de 8 caracteres de su lista impresa.")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "backup_%s")
        super().__init__(*args, **kwargs)


class EnrolForm(forms.Form):
    otp_token = OtpTokenField(
        allow_backup=False, help_text=_("Escriba el código de 6 dígitos que muestra su aplicación ahora.")
    )


class ReauthForm(forms.Form):
    password = forms.CharField(
        label=_("Contraseña"), max_length=PASSWORD_MAX_LENGTH, strip=False, widget=_password_widget("current-password")
    )
    otp_token = OtpTokenField(required=False)

    def __init__(self, *args: Any, needs_code: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if needs_code:
            self.fields["otp_token"].required = True
        else:
            del self.fields["otp_token"]


class PasswordChangeForm(forms.Form):
    current_password = forms.CharField(
        label=_("Contraseña actual"),
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=_password_widget("current-password"),
    )
    new_password = forms.CharField(
        label=_("Contraseña nueva"),
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=_password_widget("new-password"),
        help_text=_("Al menos 10 caracteres; evite palabras comunes y datos personales."),
    )
    new_password_again = forms.CharField(
        label=_("Repita la contraseña nueva"),
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=_password_widget("new-password"),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_current_password(self) -> str:
        value = self.cleaned_data["current_password"]
        if not self.user.check_password(value):
            raise forms.ValidationError(_("La contraseña actual no es correcta."), code="wrong_password")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        new, again = cleaned.get("new_password"), cleaned.get("new_password_again")
        if new and again and new != again:
            self.add_error("new_password_again", _("Las contraseñas no coinciden."))
        elif new:
            try:
                password_validation.validate_password(new, self.user)
            except forms.ValidationError as error:
                self.add_error("new_password", error)
        return cleaned


class StaffCreateForm(forms.Form):
    full_name = forms.CharField(
        label=_("Nombre completo"), max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    email = forms.EmailField(
        label=_("Correo electrónico"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    role = forms.ChoiceField(label=_("Rol"), choices=STAFF_ROLE_CHOICES)
    establishments = forms.ModelMultipleChoiceField(
        label=_("Establecimientos"), queryset=Establishment.objects.none(), widget=forms.CheckboxSelectMultiple
    )
    password = forms.CharField(
        label=_("Contraseña inicial"),
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=_password_widget("new-password"),
        help_text=_("Entréguela por un canal seguro; en su primer ingreso la persona activará su segundo factor."),
    )
    profession = forms.ChoiceField(label=_("Profesión"), choices=[("", "—"), *Profession.choices], required=False)
    registry_body = forms.ChoiceField(
        label=_("Colegio profesional"), choices=[("", "—"), *RegistryBody.choices], required=False
    )
    registry_number = forms.CharField(
        label=_("Número de colegiatura"),
        max_length=10,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    specialty = forms.CharField(label=_("Especialidad"), max_length=120, required=False)
    rne = forms.CharField(
        label=_("RNE (Registro Nacional de Especialistas)"),
        max_length=10,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )

    PRACTITIONER_FIELDS = ("profession", "registry_body", "registry_number", "specialty", "rne")

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_choice(self, "establishments").queryset = establishments

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("Ya existe una cuenta con este correo."), code="duplicate")
        return email

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            candidate = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password, candidate)
            except forms.ValidationError as error:
                self.add_error("password", error)
        if cleaned.get("role") == Role.PRACTITIONER:
            self._clean_practitioner(cleaned)
        return cleaned

    def _clean_practitioner(self, cleaned: dict[str, Any]) -> None:
        for name in ("profession", "registry_body", "registry_number"):
            if not cleaned.get(name) and name not in self.errors:
                self.add_error(name, _("Obligatorio para profesionales de salud."))
        if self.errors:
            return
        profession, body = cleaned["profession"], cleaned["registry_body"]
        if REGISTRY_FOR_PROFESSION.get(profession) != body:
            self.add_error("registry_body", _("Ese colegio no registra a esa profesión."))
        if cleaned.get("rne") and not cleaned.get("specialty"):
            self.add_error("specialty", _("Indique la especialidad que acredita el RNE."))
        profile = PractitionerProfile(
            profession=profession,
            registry_body=body,
            registry_number=cleaned["registry_number"],
            specialty=cleaned.get("specialty", ""),
            rne=cleaned.get("rne", ""),
        )
        try:
            profile.full_clean(exclude=["user"])
        except forms.ValidationError as error:
            for field, messages in error.message_dict.items():
                if field == "__all__":
                    self.add_error("registry_number", _("Ese número de colegiatura ya está registrado."))
                else:
                    self.add_error(field if field in self.fields else None, messages)

    def practitioner_data(self) -> dict[str, str] | None:
        if self.cleaned_data["role"] != Role.PRACTITIONER:
            return None
        return {name: self.cleaned_data.get(name) or "" for name in self.PRACTITIONER_FIELDS}


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Rol"), choices=STAFF_ROLE_CHOICES)


class MembershipForm(forms.Form):
    establishment = forms.ModelChoiceField(label=_("Establecimiento"), queryset=Establishment.objects.none())

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_choice(self, "establishment").queryset = establishments
