"""Model fields that store their values encrypted (AES-256-GCM, teleconsult/crypto.py) and blind indexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import FieldError
from django.db import models
from django.db.models.lookups import Lookup

from teleconsult import crypto


class EncryptedTextField(models.BinaryField):
    """A text value stored as ciphertext; the database never holds the plaintext.

    `purpose` names the column ("records.patient.phone") and is authenticated with every ciphertext,
    so a value copied into another column fails to decrypt. Encrypted columns cannot be searched or
    ordered in SQL: exact search goes through a separate blind-index column.
    """

    description = "Encrypted text"

    # The Python type django-stubs gives the model attribute: the plaintext (from_db_value decrypts on load,
    # get_db_prep_value encrypts on save), not BinaryField's bytes. These private attributes are the stubs'
    # only way for a custom field to say so, and BinaryField's stub declares bytes there, hence the ignore.
    _pyi_private_set_type: str
    _pyi_private_get_type: str  # type: ignore[assignment]

    def __init__(self, *args: Any, purpose: str, **kwargs: Any) -> None:
        if not purpose:
            raise ValueError("EncryptedTextField needs a purpose naming its column.")
        self.purpose = purpose
        kwargs.setdefault("editable", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["purpose"] = self.purpose
        if kwargs.get("editable") is True:
            del kwargs["editable"]
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        return "BinaryField"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return crypto.decrypt_text(bytes(value), purpose=self.purpose)

    def to_python(self, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return str(value)

    def get_prep_value(self, value: Any) -> Any:
        return value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        if isinstance(value, (bytes, memoryview)):
            # Already a ciphertext (re-encryption and raw copies pass bytes through untouched).
            return connection.Database.Binary(bytes(value))
        return connection.Database.Binary(crypto.encrypt_text(str(value), purpose=self.purpose))

    def get_lookup(self, lookup_name: str) -> type[Lookup] | None:
        if lookup_name != "isnull":
            raise FieldError(
                f"Encrypted field '{self.name}' cannot be searched with '{lookup_name}'; use its blind index."
            )
        return super().get_lookup(lookup_name)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        defaults: dict[str, Any] = {"form_class": forms.CharField, "max_length": self.max_length}
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)
