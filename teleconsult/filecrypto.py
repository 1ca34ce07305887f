"""Encryption at rest of large files (visit recordings): streaming AES-256-GCM in chunks under a per-file key.

A file is encrypted with a fresh random *file key*; the file key itself is stored only encrypted by the
keyring's data keys (teleconsult/crypto.py), in an EncryptedTextField of the row that owns the file. So key
management is the keyring's: the configured key-encryption keys, `rotate_keys` re-encrypting the wrapped file
key with every other encrypted column, `rewrap_data_keys` after a KEK change. The file is never re-written on
rotation, and nothing secret is kept outside the database and configuration.

Layout (the "STREAM" construction: each chunk authenticated on its own, its position and the last chunk
marked in the nonce, so chunks cannot be dropped, reordered or the file cut short without detection):

    header  = magic "TCF1" (4 bytes) | chunk size (4 bytes, big endian) | nonce prefix (7 random bytes)
    chunk i = AES-GCM(file key, nonce = prefix | i (4 bytes, big endian) | last (1 byte: 1 on the last chunk),
                      plaintext chunk, associated data = header + purpose)

Every chunk holds `chunk size` bytes of plaintext except the last (possibly empty); each adds a 16-byte tag.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teleconsult.crypto import CiphertextTampered

MAGIC = b"TCF1"
_HEADER = struct.Struct(">4sI7s")
HEADER_SIZE = _HEADER.size
TAG_SIZE = 16
CHUNK_SIZE = 1 << 20  # 1 MiB: memory per stream stays small, the tag overhead negligible
MAX_CHUNK_SIZE = 16 << 20
KEY_SIZE = 32


def new_file_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 2**32:
        raise ValueError("file too large for one stream")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class Encrypted:
    size: int  # bytes of ciphertext written
    sha256: str  # of the ciphertext, hex


def encrypt_stream(
    source: BinaryIO, target: BinaryIO, *, key: bytes, purpose: str, chunk_size: int = CHUNK_SIZE
) -> Encrypted:
    """Encrypt `source` (read to its end) into `target`; returns the ciphertext's size and SHA-256."""
    if len(key) != KEY_SIZE or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("bad key or chunk size")
    cipher = AESGCM(key)
    header = _HEADER.pack(MAGIC, chunk_size, os.urandom(7))
    aad = header + purpose.encode()
    prefix = header[8:]
    digest = hashlib.sha256(header)
    target.write(header)
    size = len(header)
    index = 0
    current = source.read(chunk_size)
    while True:
        following = source.read(chunk_size)
        last = not following
        sealed = cipher.encrypt(_nonce(prefix, index, last), current, aad)
        target.write(sealed)
        digest.update(sealed)
        size += len(sealed)
        if last:
            return Encrypted(size, digest.hexdigest())
        current, index = following, index + 1


def decrypt_stream(source: BinaryIO, *, key: bytes, purpose: str) -> Iterator[bytes]:
    """The plaintext of an encrypted stream, chunk by chunk. Raises CiphertextTampered (possibly after some
    chunks were yielded) when any chunk, the header or the end of the file fails authentication."""
    header = source.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE:
        raise CiphertextTampered("An encrypted file is truncated.")
    magic, chunk_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise CiphertextTampered("An encrypted file has an unknown format.")
    cipher = AESGCM(key)
    aad = header + purpose.encode()
    sealed_size = chunk_size + TAG_SIZE
    index = 0
    current = source.read(sealed_size)
    while True:
        following = source.read(sealed_size)
        last = not following
        try:
            yield cipher.decrypt(_nonce(prefix, index, last), current, aad)
        except InvalidTag:
            raise CiphertextTampered("An encrypted file failed authentication (altered, cut or misplaced).") from None
        if last:
            return
        current, index = following, index + 1


def sha256_of(source: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(CHUNK_SIZE), b""):
        digest.update(block)
    return digest.hexdigest()
