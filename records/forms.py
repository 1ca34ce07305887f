"""Forms for the staff pages of records: registration, search, consent, break-the-glass and data protection.

Every field has a length limit no honest input reaches, so oversized input is a form error, never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Establishment
from records.identifiers import normalise_document
from records.models import (
    ConsentKind,
    Decision,
    DocumentType,
    DuplicateStatus,
    Insurance,
    RepresentativeRelationship,
    RightsStatus,
    Sex,
)
from records.services import DocumentInput

UNKNOWN_DOCUMENT_TYPE = _("Tipo de documento desconocido.")
NAME_MAX = 80


class _Form(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class BirthDateField(forms.DateField):
    widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("Fecha de nacimiento"))
        kwargs.setdefault("input_formats", ["%Y-%m-%d", "%d/%m/%Y"])
        kwargs.setdefault("error_messages", {"invalid": _("Escriba una fecha válida (día, mes y año).")})
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dt.date | None:
        # A date string thousands of characters long is not a date: refuse before parsing it.
        if isinstance(value, str) and len(value) > 32:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value and value > timezone.localdate():
            raise ValidationError(_("La fecha de nacimiento no puede estar en el futuro."), code="future_birth_date")
        if value and value.year < 1900:
            raise ValidationError(_("Revise el año de nacimiento."), code="too_old")


def _document_type_field(*, required: bool, label: Any) -> forms.ChoiceField:
    blank = [] if required else [("", _("— Ninguno —"))]
    return forms.ChoiceField(
        label=label,
        required=required,
        choices=blank + list(DocumentType.choices),
        error_messages={"invalid_choice": UNKNOWN_DOCUMENT_TYPE},
    )


def _text(label: Any, max_length: int, *, required: bool = False, **attrs: Any) -> forms.CharField:
    return forms.CharField(
        label=label, max_length=max_length, required=required, widget=forms.TextInput(attrs=attrs or None)
    )


class _DemographicsFields(_Form):
    """The demographic fields shared by registration and rectification."""

    given_names = _text(_("Nombres"), 120, required=True, autocomplete="off")
    paternal_surname = _text(_("Apellido paterno"), NAME_MAX, required=True, autocomplete="off")
    maternal_surname = _text(_("Apellido materno"), NAME_MAX, autocomplete="off")
    sex = forms.ChoiceField(label=_("Sexo"), choices=Sex.choices)
    birth_date = BirthDateField()
    phone = _text(_("Teléfono"), 30, inputmode="tel", autocomplete="off")
    email = forms.EmailField(label=_("Correo electrónico"), required=False, max_length=254)
    address = _text(_("Dirección"), 300, autocomplete="off")
    insurance = forms.ChoiceField(label=_("Seguro"), choices=Insurance.choices, initial=Insurance.NONE)
    insurance_number = _text(_("Número de afiliación"), 30, autocomplete="off")
    emergency_contact_name = _text(_("Contacto de emergencia"), 200, autocomplete="off")
    emergency_contact_phone = _text(_("Teléfono del contacto de emergencia"), 30, inputmode="tel", autocomplete="off")


class PatientRegistrationForm(_DemographicsFields):
    document_type = _document_type_field(required=True, label=_("Tipo de documento"))
    document_number = _text(
        _("Número de documento"),
        20,
        required=True,
        autocomplete="off",
        spellcheck="false",
        autocapitalize="characters",
    )
    issuing_country = _text(_("País emisor (solo pasaporte)"), 3, autocomplete="off", autocapitalize="characters")
    second_document_type = _document_type_field(required=False, label=_("Segundo documento: tipo"))
    second_document_number = _text(
        _("Segundo documento: número"), 20, autocomplete="off", spellcheck="false", autocapitalize="characters"
    )
    second_issuing_country = _text(
        _("Segundo documento: país emisor (solo pasaporte)"), 3, autocomplete="off", autocapitalize="characters"
    )
    establishment = forms.ModelChoiceField(
        label=_("Establecimiento"), queryset=Establishment.objects.none(), empty_label=None
    )
    history_number = _text(_("Número de historia clínica"), 20, autocomplete="off")

    field_order = [
        "document_type",
        "document_number",
        "issuing_country",
        "second_document_type",
        "second_document_number",
        "second_issuing_country",
        "given_names",
        "paternal_surname",
        "maternal_surname",
        "sex",
        "birth_date",
    ]

    def __init__(self, *args: Any, establishments: QuerySet[Establishment], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["establishment"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = establishments
        self.fields["document_number"].help_text = _("DNI: 8 dígitos; si lo escribe, el carácter de verificación.")
        self.fields["issuing_country"].help_text = _("Código de 3 letras, p. ej. COL, VEN, USA.")

    def _document(self, type_field: str, number_field: str, country_field: str) -> DocumentInput | None:
        document_type = self.cleaned_data.get(type_field)
        number = self.cleaned_data.get(number_field, "")
        if not document_type:
            if number:
                self.add_error(type_field, _("Elija el tipo de este documento."))
            return None
        if not number:
            if number_field not in self.errors:
                self.add_error(number_field, _("Escriba el número del documento."))
            return None
        # Only a passport names its issuer; "PER" for the national documents.
        country = self.cleaned_data.get(country_field, "") if document_type == DocumentType.PASSPORT else "PER"
        try:
            normalise_document(document_type, number, country)
        except ValidationError as error:
            target = country_field if error.code == "country" else number_field
            self.add_error(target, error)
            return None
        return DocumentInput(document_type, number, country)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        documents = [
            self._document("document_type", "document_number", "issuing_country"),
            self._document("second_document_type", "second_document_number", "second_issuing_country"),
        ]
        self.documents = [d for d in documents if d is not None]
        if len(self.documents) == 2 and self.documents[0].document_type == self.documents[1].document_type:
            self.add_error("second_document_type", _("Cada tipo de documento se registra una sola vez."))
        return data

    def field_for_document(self, document_type: str) -> str:
        """The number field holding a document of this type (to put a duplicate-identifier error on)."""
        if self.cleaned_data.get("second_document_type") == document_type:
            return "second_document_number"
        return "document_number"


class DocumentSearchForm(_Form):
    document_type = _document_type_field(required=True, label=_("Tipo de documento"))
    number = _text(_("Número de documento"), 20, required=True, autocomplete="off", spellcheck="false")
    issuing_country = _text(_("País emisor (solo pasaporte)"), 3, autocomplete="off")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("document_type") and data.get("number"):
            try:
                country = data.get("issuing_country", "") if data["document_type"] == DocumentType.PASSPORT else "PER"
                normalise_document(data["document_type"], data["number"], country)
            except ValidationError as error:
                self.add_error("issuing_country" if error.code == "country" else "number", error)
        return data


class NameSearchForm(_Form):
    name = _text(_("Apellidos y nombres (el comienzo)"), 100, required=True, autocomplete="off")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if len(name) < 2:
            raise ValidationError(_("Escriba al menos 2 letras."), code="too_short")
        return name


class VerbalConsentForm(_Form):
    decision = forms.ChoiceField(label=_("Decisión del paciente"), choices=Decision.choices, widget=forms.RadioSelect)
    witness_name = _text(_("Nombre completo del testigo"), 200, required=True, autocomplete="off")
    representative_name = _text(_("Representante legal (si decide por el paciente)"), 200, autocomplete="off")
    representative_relationship = _text(_("Parentesco o relación del representante"), 64, autocomplete="off")
    document = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=2**31 - 1)
    shown_sha256 = forms.RegexField(regex=r"^[0-9a-f]{64}$", widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("representative_name") and not data.get("representative_relationship"):
            self.add_error("representative_relationship", _("Indique la relación del representante con el paciente."))
        return data


class LegalRepresentativeForm(_Form):
    """Who may consent for a minor or a dependent adult (PAT-2); the document is checked like a patient's."""

    name = _text(_("Nombre completo del representante"), 200, required=True, autocomplete="off")
    relationship = forms.ChoiceField(
        label=_("Relación con el paciente"),
        choices=[("", _("Elija una opción")), *RepresentativeRelationship.choices],
        error_messages={"invalid_choice": _("Elija la relación del representante con el paciente.")},
    )
    document_type = _document_type_field(required=True, label=_("Tipo de documento"))
    document_number = _text(
        _("Número de documento"), 20, required=True, autocomplete="off", spellcheck="false", autocapitalize="characters"
    )
    phone = _text(_("Teléfono"), 30, inputmode="tel", autocomplete="off")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if len(name) < 3:
            raise ValidationError(_("Escriba el nombre completo del representante."), code="name_required")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("document_type") and data.get("document_number"):
            try:
                normalise_document(data["document_type"], data["document_number"])
            except ValidationError as error:
                self.add_error("document_number", error)
        return data


class BreakGlassForm(_Form):
    reason = forms.CharField(
        label=_("Motivo de la emergencia"),
        min_length=10,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Queda registrado y se avisa a auditoría. El acceso dura 4 horas."),
    )


class DuplicateResolveForm(_Form):
    status = forms.ChoiceField(
        choices=[
            (DuplicateStatus.DISTINCT.value, DuplicateStatus.DISTINCT.label),
            (DuplicateStatus.SAME_PERSON.value, DuplicateStatus.SAME_PERSON.label),
        ]
    )


class ConsentPublishForm(_Form):
    kind = forms.ChoiceField(label=_("Tipo de consentimiento"), choices=ConsentKind.choices)
    validity_days = forms.IntegerField(
        label=_("Vigencia en días"),
        required=False,
        min_value=1,
        max_value=3650,
        help_text=_("Déjelo vacío si vale hasta que el paciente lo revoque o se publique otra versión."),
    )
    title_es = _text(_("Título en español"), 200, required=True)
    text_es = forms.CharField(label=_("Texto en español"), max_length=20_000, widget=forms.Textarea(attrs={"rows": 10}))
    title_en = _text(_("Título en inglés"), 200)
    text_en = forms.CharField(
        label=_("Texto en inglés"), max_length=20_000, required=False, widget=forms.Textarea(attrs={"rows": 10})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("title_en")) != bool((data.get("text_en") or "").strip()):
            self.add_error("text_en", _("Para la versión en inglés escriba título y texto, o deje ambos vacíos."))
        return data

    def texts(self) -> dict[str, tuple[str, str]]:
        data = self.cleaned_data
        texts = {"es-pe": (data["title_es"], data["text_es"])}
        if data.get("title_en"):
            texts["en"] = (data["title_en"], data["text_en"])
        return texts


class ExtendForm(_Form):
    reason = forms.CharField(
        label=_("Motivo de la prórroga"), min_length=10, max_length=1000, widget=forms.Textarea(attrs={"rows": 3})
    )


RESOLVE_CHOICES = [
    (RightsStatus.IN_PROGRESS.value, RightsStatus.IN_PROGRESS.label),
    (RightsStatus.WAITING.value, RightsStatus.WAITING.label),
    (RightsStatus.COMPLETED.value, _("Atendida (se concede)")),
    (RightsStatus.REJECTED.value, _("Denegada")),
]


class ResolveForm(_Form):
    status = forms.ChoiceField(label=_("Nuevo estado"), choices=RESOLVE_CHOICES)
    resolution = forms.CharField(
        label=_("Respuesta al paciente"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Obligatoria al atender o denegar: el paciente la lee."),
    )


class RectifyForm(_DemographicsFields):
    pass


class LegalHoldForm(_Form):
    reason = forms.CharField(
        label=_("Motivo de la retención legal"),
        min_length=10,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
