"""Note templates per specialty for clinic admins (EHR-2): list, create, edit, deactivate and reactivate.

Templates pre-fill the text sections of a new note; they hold no patient data, so reading them is not audited
(the services in records.notes audit every change)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import request_user, role_required
from accounts.models import PractitionerProfile, Role
from records.models import NoteTemplate
from records.notes import NOTE_SECTIONS, Text, template_create, template_update

FIELD_PREFIX = "section__"


def _text_sections() -> list[tuple[str, Text]]:
    """The sections a template may pre-fill (its free texts), as dotted paths in the norm's order."""
    paths: list[tuple[str, Text]] = []
    for key, spec in NOTE_SECTIONS.items():
        if isinstance(spec, Text):
            paths.append((key, spec))
        elif key in ("anamnesis", "examination"):
            paths.extend((f"{key}.{sub}", field) for sub, field in spec.fields.items() if isinstance(field, Text))
    return paths


TEXT_SECTIONS = _text_sections()
# A group's text reads better under the group's own name ("Examen clínico", not the sub-field's repeat).
GROUP_LEGENDS = {"anamnesis": NOTE_SECTIONS["anamnesis"].label}


def field_name(path: str) -> str:
    return FIELD_PREFIX + path.replace(".", "__")


def _get(content: dict[str, Any], path: str) -> str:
    value: Any = content
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value if isinstance(value, str) else ""


def _set(content: dict[str, Any], path: str, value: str) -> None:
    *groups, last = path.split(".")
    target = content
    for group in groups:
        target = target.setdefault(group, {})
    target[last] = value


class NoteTemplateForm(forms.Form):
    specialty = forms.CharField(
        label=gettext_lazy("Especialidad"),
        max_length=120,
        error_messages={"required": gettext_lazy("Indique la especialidad.")},
        widget=forms.TextInput(attrs={"list": "specialties", "autocomplete": "off"}),
    )
    name = forms.CharField(
        label=gettext_lazy("Nombre de la plantilla"),
        max_length=120,
        error_messages={"required": gettext_lazy("Indique el nombre de la plantilla.")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        for name in ("specialty", "name"):
            field = self.fields[name]
            assert isinstance(field, forms.CharField)  # declared above
            field.error_messages["max_length"] = _("«%(label)s» admite hasta %(max)d caracteres.") % {
                "label": field.label,
                "max": field.max_length,
            }
        for path, spec in TEXT_SECTIONS:
            rows = 2 if spec.max_length <= 200 else 4
            self.fields[field_name(path)] = forms.CharField(
                label=spec.label,
                required=False,
                strip=False,
                max_length=spec.max_length,
                widget=forms.Textarea(attrs={"rows": rows}),
                error_messages={
                    "max_length": _("«%(label)s» admite hasta %(max)d caracteres.")
                    % {"label": spec.label, "max": spec.max_length}
                },
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.data:
            # A section this form does not know (a crafted or outdated page) is refused, not silently dropped.
            unknown = sorted(
                key[len(FIELD_PREFIX) :].replace("__", ".")
                for key in self.data
                if key.startswith(FIELD_PREFIX) and key not in self.fields
            )
            if unknown:
                raise ValidationError(
                    _("Sección desconocida: %(sections)s.") % {"sections": ", ".join(unknown[:5])[:200]},
                    code="unknown_section",
                )
        return data

    def content(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The template's content: the base (what the template had) with the form's texts over it."""
        content = {key: dict(value) if isinstance(value, dict) else value for key, value in (base or {}).items()}
        for path, _spec in TEXT_SECTIONS:
            _set(content, path, self.cleaned_data.get(field_name(path), ""))
        return content

    def add_service_error(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for key, errors in error.error_dict.items():
            target = key if key in ("specialty", "name") else field_name(key)
            self.add_error(target if target in self.fields else None, errors)

    def sections(self) -> list[dict[str, Any]]:
        """The section fields for the page, each with the legend of its group when it starts one."""
        rows: list[dict[str, Any]] = []
        for path, _spec in TEXT_SECTIONS:
            group = path.split(".")[0] if "." in path else ""
            rows.append({"field": self[field_name(path)], "group": group})
        seen: set[str] = set()
        for row in rows:
            group = row["group"]
            row["legend"] = GROUP_LEGENDS.get(group) if group and group not in seen else None
            seen.add(group)
        return rows


def _initial(template: NoteTemplate) -> dict[str, Any]:
    initial = {"specialty": template.specialty, "name": template.name}
    for path, _spec in TEXT_SECTIONS:
        initial[field_name(path)] = _get(template.content or {}, path)
    return initial


def _specialties() -> list[str]:
    """Specialties to suggest: those of practitioners and of existing templates."""
    names = set(PractitionerProfile.objects.exclude(specialty="").values_list("specialty", flat=True))
    names.update(NoteTemplate.objects.values_list("specialty", flat=True))
    return sorted(names, key=str.casefold)


def _template(template_id: int) -> NoteTemplate:
    template = NoteTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise Http404
    return template


def _form_page(request: HttpRequest, form: NoteTemplateForm, template: NoteTemplate | None) -> HttpResponse:
    context = {"form": form, "template": template, "specialties": _specialties()}
    return render(request, "records/note_templates_form.html", context, status=400 if form.is_bound else 200)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET"])
def note_templates(request: HttpRequest) -> HttpResponse:
    templates = list(NoteTemplate.objects.only("pk", "specialty", "name", "is_active", "updated_at"))
    specialties = [
        {"specialty": specialty, "templates": list(rows)}
        for specialty, rows in groupby(templates, key=lambda template: template.specialty)
    ]
    return render(request, "records/note_templates.html", {"specialties": specialties})


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def note_template_new(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    form = NoteTemplateForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            template = template_create(
                specialty=form.cleaned_data["specialty"],
                name=form.cleaned_data["name"],
                content=form.content(),
                by=user,
            )
        except ValidationError as error:
            form.add_service_error(error)
        else:
            messages.success(request, _("Plantilla «%(name)s» creada.") % {"name": template.name})
            return redirect("records:note_templates")
    return _form_page(request, form, None)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def note_template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    user = request_user(request)
    template = _template(template_id)
    form = NoteTemplateForm(request.POST if request.method == "POST" else None, initial=_initial(template))
    if form.is_bound and form.is_valid():
        try:
            template = template_update(
                template=template,
                by=user,
                specialty=form.cleaned_data["specialty"],
                name=form.cleaned_data["name"],
                content=form.content(template.content),
            )
        except ValidationError as error:
            form.add_service_error(error)
        else:
            messages.success(request, _("Plantilla «%(name)s» guardada.") % {"name": template.name})
            return redirect("records:note_templates")
    return _form_page(request, form, template)


def _set_active(request: HttpRequest, template_id: int, *, active: bool) -> HttpResponse:
    user = request_user(request)
    template = template_update(template=_template(template_id), by=user, is_active=active)
    if active:
        messages.success(request, _("Plantilla «%(name)s» activada de nuevo.") % {"name": template.name})
    else:
        messages.success(
            request,
            _("Plantilla «%(name)s» desactivada: ya no se ofrece para notas nuevas.") % {"name": template.name},
        )
    return redirect("records:note_templates")


@role_required(Role.CLINIC_ADMIN)
@require_POST
def note_template_deactivate(request: HttpRequest, template_id: int) -> HttpResponse:
    return _set_active(request, template_id, active=False)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def note_template_reactivate(request: HttpRequest, template_id: int) -> HttpResponse:
    return _set_active(request, template_id, active=True)
