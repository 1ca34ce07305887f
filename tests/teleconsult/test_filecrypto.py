"""Streaming file encryption (teleconsult/filecrypto.py): round trips at chunk boundaries, and every kind of
tampering — a flipped bit, a dropped, swapped or duplicated chunk, a cut file, another purpose or key — fails."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from teleconsult.crypto import CiphertextTampered
from teleconsult.filecrypto import HEADER_SIZE, TAG_SIZE, decrypt_stream, encrypt_stream, new_file_key

PURPOSE = "video.recording.file"
CHUNK = 64


def _seal(plain: bytes, key: bytes, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    result = encrypt_stream(io.BytesIO(plain), out, key=key, purpose=PURPOSE, chunk_size=chunk)
    sealed = out.getvalue()
    assert result.size == len(sealed) and result.sha256 == hashlib.sha256(sealed).hexdigest()
    return sealed


def _open(sealed: bytes, key: bytes, purpose: str = PURPOSE) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(sealed), key=key, purpose=purpose))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17])
def test_round_trip_at_every_boundary(size):
    key, plain = new_file_key(), os.urandom(size)
    sealed = _seal(plain, key)
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) == HEADER_SIZE + size + chunks * TAG_SIZE
    if size >= 16:  # a byte or two of random plaintext may occur in random ciphertext by chance
        assert plain not in sealed
    assert _open(sealed, key) == plain


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    body = sealed[HEADER_SIZE:]
    step = CHUNK + TAG_SIZE
    return sealed[:HEADER_SIZE], [body[i : i + step] for i in range(0, len(body), step)]


def test_every_tampering_is_detected():
    key, plain = new_file_key(), os.urandom(4 * CHUNK + 10)
    sealed = _seal(plain, key)
    header, chunks = _chunks(sealed)
    flipped = bytearray(sealed)
    flipped[HEADER_SIZE + CHUNK + 3] ^= 1
    cases = {
        "bit flipped": bytes(flipped),
        "chunk dropped": header + b"".join(chunks[:1] + chunks[2:]),
        "chunks swapped": header + b"".join([chunks[1], chunks[0], *chunks[2:]]),
        "chunk repeated": header + b"".join([chunks[0], *chunks]),
        "cut at a chunk boundary": header + b"".join(chunks[:-1]),
        "cut mid-chunk": sealed[:-5],
        "header altered": bytes([*sealed[:4], sealed[4] ^ 1, *sealed[5:]]),
        "empty": b"",
        "not ours": b"\x1a\x45\xdf\xa3" + sealed[4:],
    }
    for name, tampered in cases.items():
        try:
            _open(tampered, key)
        except CiphertextTampered:
            continue
        pytest.fail(f"not detected: {name}")
    with pytest.raises(CiphertextTampered):
        _open(sealed, key, purpose="records.patient.phone")
    with pytest.raises(CiphertextTampered):
        _open(sealed, new_file_key())


def test_same_plaintext_twice_gives_different_ciphertexts():
    key, plain = new_file_key(), b"x" * 200
    assert _seal(plain, key) != _seal(plain, key)


def test_bad_key_or_chunk_size_is_refused():
    with pytest.raises(ValueError):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), key=b"short", purpose=PURPOSE)
    with pytest.raises(ValueError):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), key=new_file_key(), purpose=PURPOSE, chunk_size=0)
