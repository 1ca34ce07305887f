"""Encryption at rest (SEC-3): AES-256-GCM envelope encryption with key ids, and keyed blind indexes.

A value is encrypted with a *data key* (AES-256, random per key, stored in the database only wrapped
by a *key-encryption key* that comes from configuration or a KMS). Ciphertexts carry the id of their
data key, so keys rotate online: new writes use the active key, reads accept any key not yet retired,
and `manage.py rotate_keys` re-encrypts the rest in the background.

Ciphertext layout: version (1 byte) | data key id (4 bytes, big endian) | nonce (12 bytes) | ciphertext+tag.
The header and a *purpose* string (e.g. "records.patient.phone") are authenticated as associated data,
so a ciphertext cannot be moved to another column or have its key id swapped without detection.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import threading
import time
import unicodedata
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    # Only the type: the methods import the model when they run, as models may not be loadable yet here.
    from teleconsult.models import DataKey

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size
NONCE_SIZE = 12
ACTIVE_KEY_TTL = 30.0


class CryptoError(Exception):
    """Encryption could not be done or undone. Messages never contain data."""


class CiphertextTampered(CryptoError):
    """Authentication failed: the ciphertext, its header or its purpose was altered."""


class UnknownKey(CryptoError):
    """The ciphertext names a data key (or a data key names a KEK) that is not available."""


class KeyEncryptionKeys(Protocol):
    """Wraps and unwraps data keys. The configured-key implementation below can be replaced by a KMS."""

    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes: ...


def kek_fingerprint(kek: bytes) -> str:
    # A one-way, keyed-by-content fingerprint: identifies the KEK without revealing anything about it.
    return hashlib.sha256(b"teleconsult-kek-id\x00" + kek).hexdigest()[:16]


class ConfiguredKeys:
    """KEKs from settings: TELECONSULT_KEK (current) and TELECONSULT_KEK_PREVIOUS (still unwrap, never wrap)."""

    def __init__(self, current: bytes, previous: list[bytes]) -> None:
        self._current_id = kek_fingerprint(current)
        self._keys = {kek_fingerprint(k): k for k in [*previous, current]}

    def current_id(self) -> str:
        return self._current_id

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        return self._current_id, aes_key_wrap(self._keys[self._current_id], data_key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        kek = self._keys.get(kek_id)
        if kek is None:
            raise UnknownKey("A data key is wrapped by a key-encryption key that is not configured.")
        try:
            return aes_key_unwrap(kek, wrapped)
        except InvalidUnwrap:
            raise CiphertextTampered("A wrapped data key failed its integrity check.") from None


def configured_keys() -> KeyEncryptionKeys:
    return ConfiguredKeys(settings.TELECONSULT_KEK, list(settings.TELECONSULT_KEK_PREVIOUS))


class Keyring:
    """The process's view of the data keys: unwrapped keys cached in memory, loaded on first use."""

    def __init__(self, keks: KeyEncryptionKeys) -> None:
        self.keks = keks
        self._ciphers: dict[int, AESGCM] = {}
        self._active_id: int | None = None
        self._active_checked = 0.0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._ciphers.clear()
            self._active_id = None
            self._active_checked = 0.0

    # -- keys -------------------------------------------------------------------------------------------
    def _load(self, key_id: int) -> AESGCM:
        from teleconsult.models import DataKey, DataKeyStatus

        row = DataKey.objects.filter(pk=key_id).first()
        if row is None:
            raise UnknownKey(f"Data key #{key_id} is unknown.")
        if row.status == DataKeyStatus.RETIRED:
            # Retired keys still decrypt, so a value written by a late writer is never lost; the next
            # `rotate_keys --resume` re-encrypts it. Worth a warning: it should not happen.
            logger.warning("value found under a retired data key", extra={"data_key_id": key_id})
        cipher = AESGCM(self.keks.unwrap(row.kek_id, bytes(row.wrapped_key)))
        with self._lock:
            self._ciphers[key_id] = cipher
        return cipher

    def cipher(self, key_id: int) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        return cipher if cipher is not None else self._load(key_id)

    def active_key_id(self) -> int:
        # Re-read which key is active now and then, so a rotation started by another process is
        # followed within ACTIVE_KEY_TTL seconds (rotate_keys waits that long before its last pass).
        if self._active_id is not None and time.monotonic() - self._active_checked < ACTIVE_KEY_TTL:
            return self._active_id
        from teleconsult.models import DataKey, DataKeyStatus

        row = DataKey.objects.filter(status=DataKeyStatus.ACTIVE).first()
        if row is None:
            row = self._create_first_key()
        with self._lock:
            self._active_id = row.pk
            self._active_checked = time.monotonic()
        return row.pk

    def _create_first_key(self) -> DataKey:
        from teleconsult.models import DataKey, DataKeyStatus

        kek_id, wrapped = self.keks.wrap(AESGCM.generate_key(bit_length=256))
        try:
            with transaction.atomic():
                return DataKey.objects.create(kek_id=kek_id, wrapped_key=wrapped, status=DataKeyStatus.ACTIVE)
        except IntegrityError:
            # Another process created it first (the partial unique index allows one active key).
            return DataKey.objects.get(status=DataKeyStatus.ACTIVE)

    # -- values -----------------------------------------------------------------------------------------
    def encrypt(self, plaintext: bytes, *, purpose: str) -> bytes:
        key_id = self.active_key_id()
        header = _HEADER.pack(FORMAT_VERSION, key_id)
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + self.cipher(key_id).encrypt(nonce, plaintext, header + purpose.encode())

    def decrypt(self, blob: bytes, *, purpose: str) -> bytes:
        blob = bytes(blob)
        if len(blob) < HEADER_SIZE + NONCE_SIZE + 16:
            logger.error("ciphertext rejected: too short", extra={"purpose": purpose})
            raise CiphertextTampered("A ciphertext is truncated.")
        version, key_id = _HEADER.unpack_from(blob)
        if version != FORMAT_VERSION:
            logger.error("ciphertext rejected: unknown format", extra={"purpose": purpose})
            raise CiphertextTampered("A ciphertext has an unknown format version.")
        header = blob[:HEADER_SIZE]
        nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        try:
            return self.cipher(key_id).decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE :], header + purpose.encode())
        except InvalidTag:
            # Logged with the purpose and key id only: never the data, never the ciphertext.
            logger.error("ciphertext authentication failed", extra={"purpose": purpose, "data_key_id": key_id})
            raise CiphertextTampered("A ciphertext failed authentication (altered or misplaced).") from None


def key_id_of(blob: bytes) -> int:
    """The data key id a ciphertext was written with (read from its header, no decryption)."""
    return _HEADER.unpack_from(bytes(blob))[1]


_keyring: Keyring | None = None
_keyring_lock = threading.Lock()


def keyring() -> Keyring:
    global _keyring
    if _keyring is None:
        with _keyring_lock:
            if _keyring is None:
                _keyring = Keyring(import_string(settings.TELECONSULT_KEK_PROVIDER)())
    return _keyring


def reset_keyring() -> None:
    """Forget cached keys (after a rotation in another process, or between tests)."""
    global _keyring
    with _keyring_lock:
        _keyring = None


def encrypt_text(value: str, *, purpose: str) -> bytes:
    return keyring().encrypt(value.encode("utf-8"), purpose=purpose)


def decrypt_text(blob: bytes, *, purpose: str) -> str:
    return keyring().decrypt(blob, purpose=purpose).decode("utf-8")


def normalise_identifier(value: str) -> str:
    """The form identifiers are compared in: Unicode NFKC, upper case, spaces and dashes dropped."""
    folded = unicodedata.normalize("NFKC", value).upper()
    return "".join(ch for ch in folded if ch not in " -./\t")


def blind_index(value: str, *, purpose: str) -> bytes:
    """A keyed HMAC of the normalised value: equal inputs match, and nothing can be read back from it.

    The index key is separate from the KEK so KEK rotation never invalidates the indexes.
    """
    message = purpose.encode() + b"\x00" + normalise_identifier(value).encode("utf-8")
    return hmac.new(settings.TELECONSULT_INDEX_KEY, message, hashlib.sha256).digest()
