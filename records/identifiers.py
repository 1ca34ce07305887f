"""Identity documents: validation per type (DNI with its check character) and the blind-index key."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from stdnum.exceptions import InvalidChecksum
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.pe import cui

from records.models import DocumentType
from teleconsult import crypto

LOOKUP_PURPOSE = "records.patientidentifier.lookup"
_FOREIGNER_CARD = re.compile(r"^[A-Z0-9]{6,12}$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,15}$")
_COUNTRY = re.compile(r"^[A-Z]{3}$")


def normalise_document(document_type: str, number: str, issuing_country: str = "PER") -> tuple[str, str]:
    """Validate a document number and return (stored number, issuing country), or raise ValidationError.

    A DNI is 8 digits; the check character printed after the dash on the card is optional but, when
    given, must match (python-stdnum knows RENIEC's algorithm). It is not stored: the 8 digits identify.
    """
    cleaned = crypto.normalise_identifier(number or "")
    if document_type == DocumentType.DNI:
        if not re.fullmatch(r"\d{8}[0-9A-K]?", cleaned):
            raise ValidationError(
                _("El DNI tiene 8 dígitos (y, si lo indica, su carácter de verificación)."), code="dni_format"
            )
        try:
            cui.validate(cleaned)
        except InvalidChecksum:
            raise ValidationError(_("El carácter de verificación del DNI no corresponde."), code="dni_check") from None
        except StdnumError:
            raise ValidationError(_("El DNI no es válido."), code="dni_invalid") from None
        return cleaned[:8], "PER"
    if document_type == DocumentType.FOREIGNER_CARD:
        if not _FOREIGNER_CARD.match(cleaned):
            raise ValidationError(_("El carné de extranjería tiene de 6 a 12 letras o dígitos."), code="ce_format")
        return cleaned, "PER"
    if document_type == DocumentType.PASSPORT:
        country = (issuing_country or "").strip().upper()
        if not _COUNTRY.match(country) or country == "":
            raise ValidationError(_("Indique el país emisor del pasaporte (código de 3 letras)."), code="country")
        if not _PASSPORT.match(cleaned):
            raise ValidationError(_("El número de pasaporte tiene de 5 a 15 letras o dígitos."), code="passport_format")
        return cleaned, country
    raise ValidationError(_("Tipo de documento desconocido."), code="document_type")


def document_lookup(document_type: str, number: str, issuing_country: str = "PER") -> bytes:
    """The blind index of an already-normalised document: type, country and number together."""
    return crypto.blind_index(f"{document_type}|{issuing_country}|{number}", purpose=LOOKUP_PURPOSE)
