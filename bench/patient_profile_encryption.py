"""The cost of field encryption on the staff patient profile page (target: encrypted / plain <= 1.15).

Method, in one process and one scratch database: two patients with the same shape of data (seven encrypted
contact fields, two identity documents, a history number, six consent grants, a possible duplicate whose
record is shown too) are registered through the real service. The first is stored with real AES-256-GCM;
the second while `teleconsult.crypto.encrypt_text` is swapped for UTF-8 encoding, so its columns hold
plaintext bytes. Then the full page (`GET /records/patients/<id>/` through Django's test client: every
middleware, the demographics_for gate and its audit event, the consent-state query, the template) is timed
in alternating rounds: the encrypted patient with the real crypto functions, the plain patient with
`decrypt_text` swapped for UTF-8 decoding. Everything but the cipher is the same code path.

Runs against a scratch database on the PostgreSQL named by DATABASE_URL (created and dropped here).
Usage: .venv/bin/python -m bench.patient_profile_encryption [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import time
from collections.abc import Iterator

SCRATCH = "tc_bench_profile_encryption"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def _plaintext_fields() -> Iterator[None]:
    """Encryption off: the encrypted fields store and read UTF-8 bytes (same columns, same code around)."""
    from teleconsult import crypto

    saved = crypto.encrypt_text, crypto.decrypt_text
    crypto.encrypt_text = lambda value, *, purpose: value.encode("utf-8")  # type: ignore[assignment]
    crypto.decrypt_text = lambda blob, *, purpose: bytes(blob).decode("utf-8")  # type: ignore[assignment]
    try:
        yield
    finally:
        crypto.encrypt_text, crypto.decrypt_text = saved


def _patient(coordinator, establishment, *, given: str, dni: str, ce: str, history: str, twin_ce: str):  # type: ignore[no-untyped-def]
    from records.consent import consent_record, current_document
    from records.models import ConsentKind, ConsentMethod, Decision
    from records.services import DocumentInput, patient_register

    common = {
        "registered_by": coordinator,
        "establishment": establishment,
        "given_names": given,
        "paternal_surname": "Quispe",
        "maternal_surname": "Huamán",
        "sex": "female",
        "birth_date": dt.date(1984, 3, 9),
        "phone": "+51 987 654 321",
        "email": "rosa.quispe@example.test",
        "address": "Av. El Sol 432, Cusco",
        "insurance": "sis",
        "insurance_number": "SIS-0099123",
        "emergency_contact_name": "Teodoro Quispe Mamani",
        "emergency_contact_phone": "+51 984 111 222",
    }
    patient = patient_register(
        **common, documents=[DocumentInput("dni", dni), DocumentInput("ce", ce)], history_number=history
    )
    for kind in ConsentKind:
        document = current_document(kind)
        consent_record(
            patient=patient,
            document=document,
            decision=Decision.GRANT,
            method=ConsentMethod.TYPED_NAME,
            shown_sha256=document.text_sha256,
            actor=None,
            typed_name=f"{given} Quispe Huamán",
        )
    # Same name and birth date, another document: a possible-duplicate flag, shown (decrypted) on the page.
    twin = patient_register(**common, documents=[DocumentInput("ce", twin_ce)])
    return patient, twin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="requests per variant per round")
    args = parser.parse_args()

    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
        from django.test import Client
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from accounts.models import Establishment, Role
        from accounts.services import user_create
        from records.consent import consent_document_publish
        from records.models import ConsentKind

        establishment = Establishment.objects.create(name="Centro de Salud Bench", renipress_code="00088801")
        coordinator = user_create(
            email="coordinacion@bench.test",
            full_name="Coordinación Bench",
            role=Role.COORDINATOR,
            password="bench-password-1234",
            establishments=[establishment],
            practitioner=None,
            created_by=None,
        )
        admin = user_create(
            email="admin@bench.test",
            full_name="Admin Bench",
            role=Role.CLINIC_ADMIN,
            password="bench-password-1234",
            establishments=[establishment],
            practitioner=None,
            created_by=None,
        )
        for kind in ConsentKind:
            consent_document_publish(
                kind=kind,
                texts={"es-pe": ("Título", "Texto del consentimiento.")},
                validity_days=365,
                published_by=admin,
            )
        encrypted, _ = _patient(
            coordinator,
            establishment,
            given="Rosa Elvira",
            dni="10117410",
            ce="CE100001",
            history="HC-1",
            twin_ce="CE100002",
        )
        with _plaintext_fields():
            plain, _ = _patient(
                coordinator,
                establishment,
                given="Rosa Emilia",
                dni="45451232",
                ce="CE200001",
                history="HC-2",
                twin_ce="CE200002",
            )

        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT phone FROM records_patient WHERE id = %s", [plain.pk])
            assert bytes(cursor.fetchone()[0]) == b"+51 987 654 321", "the plain copy should hold plaintext"
            cursor.execute("SELECT phone FROM records_patient WHERE id = %s", [encrypted.pk])
            assert b"987" not in bytes(cursor.fetchone()[0]), "the encrypted copy should hold ciphertext"

        device = TOTPDevice.objects.create(user=coordinator, name="bench", confirmed=True)
        client = Client()
        client.force_login(coordinator)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()

        def timed(patient_id: int, count: int) -> list[float]:
            url = f"/records/patients/{patient_id}/"
            timings = []
            for _ in range(count):
                t0 = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.status_code
            return timings

        # Both pages must show the same data.
        page_encrypted = client.get(f"/records/patients/{encrypted.pk}/").content.decode()
        with _plaintext_fields():
            page_plain = client.get(f"/records/patients/{plain.pk}/").content.decode()
        for text in ("+51 987 654 321", "Av. El Sol 432, Cusco", "SIS-0099123", "Teodoro Quispe Mamani"):
            assert text in page_encrypted and text in page_plain, text

        timed(encrypted.pk, 50)  # warm-up
        with _plaintext_fields():
            timed(plain.pk, 50)
        on_rounds: list[float] = []
        off_rounds: list[float] = []
        on_all: list[float] = []
        off_all: list[float] = []
        for index in range(args.rounds):
            # Alternate which variant goes first, so drift on a shared machine hits both alike.
            order = ("on", "off") if index % 2 == 0 else ("off", "on")
            for variant in order:
                if variant == "on":
                    values = timed(encrypted.pk, args.requests)
                    on_rounds.append(statistics.median(values))
                    on_all += values
                else:
                    with _plaintext_fields():
                        values = timed(plain.pk, args.requests)
                    off_rounds.append(statistics.median(values))
                    off_all += values

        from teleconsult import crypto

        t0 = time.perf_counter()
        blob = crypto.encrypt_text("+51 987 654 321", purpose="records.patient.phone")
        for _ in range(10_000):
            crypto.decrypt_text(blob, purpose="records.patient.phone")
        per_decrypt_us = (time.perf_counter() - t0) * 100

        on, off = statistics.median(on_rounds), statistics.median(off_rounds)
        print(
            f"patient profile page, {args.rounds} alternating rounds x {args.requests} requests per variant "
            "(Django test client, full middleware, audited read)"
        )
        print(
            f"encryption on : median {on:.2f} ms (p95 {_percentile(on_all, 0.95):.2f} ms), "
            f"rounds {min(on_rounds):.2f}-{max(on_rounds):.2f} ms"
        )
        print(
            f"encryption off: median {off:.2f} ms (p95 {_percentile(off_all, 0.95):.2f} ms), "
            f"rounds {min(off_rounds):.2f}-{max(off_rounds):.2f} ms"
        )
        print(f"ratio on/off: {on / off:.3f} (target <= 1.15); one decrypt_text: {per_decrypt_us:.1f} µs")


if __name__ == "__main__":
    sys.exit(main())
