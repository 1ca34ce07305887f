"""Forms of the patient's pages. They check shape only; the records services decide and explain refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.utils.translation import gettext_lazy as _

from records.models import ConsentMethod, RightsKind, RightsStatus

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

SHA256_LENGTH = 64

RELATIONSHIPS = (
    ("mother", _("Madre")),
    ("father", _("Padre")),
    ("guardian", _("Tutor(a) legal")),
    ("other", _("Otro representante legal")),
)

# Keyed by the stored values (the enum members are those strings), as rows read from the database hold them.
RIGHT_NAMES: dict[str, _StrPromise] = {
    RightsKind.ACCESS: _("Acceso"),
    RightsKind.RECTIFICATION: _("Rectificación"),
    RightsKind.CANCELLATION: _("Cancelación"),
    RightsKind.OPPOSITION: _("Oposición"),
    RightsKind.PORTABILITY: _("Portabilidad"),
}
STATUS_WORDS: dict[str, _StrPromise] = {
    RightsStatus.RECEIVED: _("Recibida"),
    RightsStatus.IN_PROGRESS: _("En trámite"),
    RightsStatus.WAITING: _("En espera"),
    RightsStatus.COMPLETED: _("Atendida"),
    RightsStatus.REJECTED: _("Denegada"),
}

# One plain sentence per right, shown beside each choice (SEC-4).
RIGHT_EXPLANATIONS = {
    RightsKind.ACCESS: _("Acceso: saber qué datos suyos tenemos y recibir una copia."),
    RightsKind.RECTIFICATION: _("Rectificación: corregir un dato suyo que está mal o incompleto."),
    RightsKind.CANCELLATION: _("Cancelación: pedir que borremos o bloqueemos datos que ya no deben usarse."),
    RightsKind.OPPOSITION: _("Oposición: pedir que dejemos de usar sus datos para un fin concreto."),
    RightsKind.PORTABILITY: _("Portabilidad: recibir sus datos en un archivo para llevarlos a otro lugar."),
}


class _HiddenFieldsReported(forms.Form):
    """Hidden fields cannot show their own errors: a damaged or missing one is reported once, for the form."""

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if any(name in self.errors for name, field in self.fields.items() if field.widget.is_hidden):
            raise forms.ValidationError(
                _("Faltan datos del texto que leyó. Vuelva a cargar la página e inténtelo de nuevo."), code="hidden"
            )
        return cleaned


class _ShownDocument(_HiddenFieldsReported):
    """The version and the SHA-256 of the exact text the page showed, sent back so a changed text is caught."""

    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=1_000_000)
    shown_sha256 = forms.CharField(widget=forms.HiddenInput, min_length=SHA256_LENGTH, max_length=SHA256_LENGTH)


class _Representative(forms.Form):
    """Only present when the patient is a minor: who decides for them."""

    def __init__(self, *args: Any, minor: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.minor = minor
        if minor:
            self.fields["representative_name"] = forms.CharField(
                label=_("Nombre completo del representante legal"),
                max_length=200,
                min_length=3,
                widget=forms.TextInput(attrs={"autocomplete": "name"}),
            )
            self.fields["representative_relationship"] = forms.ChoiceField(
                label=_("Relación con el paciente"), choices=[("", _("Elija una opción")), *RELATIONSHIPS]
            )


class ConsentForm(_ShownDocument, _Representative):
    accept = forms.BooleanField(label=_("He leído y acepto"))
    method = forms.ChoiceField(
        label=_("Cómo firma"),
        choices=[
            (ConsentMethod.TYPED_NAME.value, _("Escribiendo mi nombre")),
            (ConsentMethod.DRAWN_SIGNATURE.value, _("Dibujando mi firma")),
        ],
        initial=ConsentMethod.TYPED_NAME.value,
        widget=forms.RadioSelect,
    )
    typed_name = forms.CharField(
        label=_("Nombre completo de quien firma"),
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    # A PNG data URL from the canvas; size and type are checked by records.consent (its messages are shown).
    signature = forms.CharField(required=False, widget=forms.HiddenInput, strip=False)


class VisitConsentForm(_HiddenFieldsReported, _Representative):
    """The two consents a visit needs, given together by ticking each and typing one name (fast on a phone)."""

    telemedicine_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=1_000_000)
    telemedicine_sha256 = forms.CharField(widget=forms.HiddenInput, min_length=SHA256_LENGTH, max_length=SHA256_LENGTH)
    data_processing_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=1_000_000)
    data_processing_sha256 = forms.CharField(
        widget=forms.HiddenInput, min_length=SHA256_LENGTH, max_length=SHA256_LENGTH
    )
    accept_telemedicine = forms.BooleanField(label=_("He leído y acepto el consentimiento para telemedicina"))
    accept_data_processing = forms.BooleanField(label=_("He leído y acepto el tratamiento de mis datos personales"))
    typed_name = forms.CharField(
        label=_("Nombre completo de quien firma"),
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


class RevokeForm(_Representative):
    typed_name = forms.CharField(
        label=_("Escriba su nombre completo para confirmar"),
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


class RightsRequestForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("¿Qué derecho quiere ejercer?"),
        choices=[(kind.value, RIGHT_EXPLANATIONS[kind]) for kind in RightsKind],
        widget=forms.RadioSelect,
    )
    description = forms.CharField(
        label=_("Describa su solicitud"),
        help_text=_("Por ejemplo: qué dato está mal y cuál es el correcto. Máximo 5000 caracteres."),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
