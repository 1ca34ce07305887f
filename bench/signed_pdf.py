"""Signed PDF of an encounter (EHR-7): target p95 <= 1 s for the whole download.

Signs one full note (long anamnesis, five diagnoses, six prescriptions, three amendments) in a scratch
database, then times the patient's download (gate, decryption, rendering with the embedded fonts, PAdES
signature, audit) and, separately, rendering and signing alone.
Usage: .venv/bin/python -m bench.signed_pdf
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time

SCRATCH = "tc_bench_signed_pdf"
RUNS = 60


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(label: str, timings: list[float]) -> str:
    return (
        f"{label}: p50 {statistics.median(timings):.0f} ms, p95 {_percentile(timings, 0.95):.0f} ms, "
        f"max {max(timings):.0f} ms"
    )


def _content() -> dict:
    story = (
        "Paciente refiere odinofagia intensa de inicio brusco, fiebre cuantificada en 38,5 °C, malestar general "
        "e hiporexia. Niega tos, disnea, dolor torácico o exantema. Automedicación con ibuprofeno sin mejoría. "
    ) * 8
    return {
        "reason": "Dolor de garganta, fiebre y malestar general desde hace tres días.",
        "anamnesis": {"illness_duration": "3 días", "onset": "Brusco", "course": "Progresivo", "story": story},
        "history": "Hipertensión arterial en tratamiento. Alergia a penicilina (urticaria). " * 3,
        "examination": {
            "text": "Lúcida, orientada. Orofaringe congestiva con hipertrofia amigdalina grado II, sin exudado. " * 3,
            "vital_signs": {
                "temperature_c": 38.2,
                "heart_rate": 96,
                "respiratory_rate": 18,
                "systolic": 128,
                "diastolic": 82,
                "spo2": 98,
                "weight_kg": 61.5,
                "height_cm": 158,
            },
            "patient_reported": True,
        },
        "diagnoses": [
            {"code": code, "type": kind}
            for code, kind in [
                ("J02.9", "presumptive"),
                ("I10", "repeat"),
                ("R50.9", "definitive"),
                ("Z88.0", "definitive"),
                ("R63.0", "presumptive"),
            ]
        ],
        "plan": "Control por teleconsulta en 72 horas. Hemograma y PCR si persiste la fiebre. " * 2,
        "prescriptions": [
            {
                "id": f"6f1c2f4e-8a7b-4c1d-9e2f-3a4b5c6d7e8{index}",
                "drug": drug,
                "concentration": concentration,
                "form": "Tableta",
                "dose": "1",
                "dose_unit": "tableta",
                "route": "Oral",
                "frequency": "Cada 8 horas",
                "duration": "5 días",
                "quantity": "15",
                "instructions": "Tomar después de las comidas, con abundante agua.",
            }
            for index, (drug, concentration) in enumerate(
                [
                    ("Paracetamol", "500 mg"),
                    ("Azitromicina", "500 mg"),
                    ("Losartán", "50 mg"),
                    ("Loratadina", "10 mg"),
                    ("Omeprazol", "20 mg"),
                    ("Clorfenamina", "4 mg"),
                ]
            )
        ],
        "treatment": "Medidas generales, hidratación, gárgaras con agua tibia y sal.",
        "indications": "Reposo relativo. Acudir a emergencia si presenta dificultad para respirar o tragar.",
        "next_appointment": "En 3 días por teleconsulta",
    }


def main() -> None:
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from accounts.models import Establishment, Role
        from accounts.services import user_create
        from records.encounters import encounter_finish, encounter_unscheduled
        from records.models import DocumentType, Sex
        from records.notes import note_create, note_save_draft
        from records.printable import encounter_pdf_for_download, printable_encounter, render_encounter_pdf, sign_pdf
        from records.services import DocumentInput, patient_register
        from records.signing import amendment_add, note_sign, practitioner_signing_material

        establishment = Establishment.objects.create(name="Centro de Salud Belén", renipress_code="00006210")
        coordinator = user_create(
            email="coord@bench.test",
            full_name="Coordinación",
            role=Role.COORDINATOR,
            password=None,
            establishments=[establishment],
            created_by=None,
        )
        practitioner = user_create(
            email="gp@bench.test",
            full_name="Ana Quispe Mamani",
            role=Role.PRACTITIONER,
            password=None,
            establishments=[establishment],
            practitioner={"profession": "physician", "registry_body": "CMP", "registry_number": "45678"},
            created_by=None,
        )
        practitioner.is_verified = lambda: True
        patient_user = user_create(
            email="paciente@bench.test", full_name="Rosa Núñez", role=Role.PATIENT, password=None, created_by=None
        )
        patient = patient_register(
            registered_by=coordinator,
            establishment=establishment,
            given_names="Rosa Elena",
            paternal_surname="Núñez",
            maternal_surname="Peña",
            sex=Sex.FEMALE,
            birth_date=dt.date(1984, 3, 9),
            documents=[DocumentInput(DocumentType.DNI, "10117410")],
            history_number="HC-77",
            user=patient_user,
        )
        encounter = encounter_unscheduled(
            patient=patient, by=practitioner, origin_establishment=establishment, modality="video"
        )
        encounter_finish(encounter=encounter, by=practitioner)
        note = note_create(encounter=encounter, author=practitioner)
        note = note_save_draft(note=note, content=_content(), by=practitioner, expected_version=note.version)
        note = note_sign(note=note, signer=practitioner, reauthenticated=True)
        for number in range(3):
            amendment_add(
                note=note,
                author=practitioner,
                reason=f"Corrección número {number + 1} de la nota",
                text="Se corrige la cantidad dispensada: 10 tabletas en lugar de 15. " * 3,
                reauthenticated=True,
            )

        encounter_pdf_for_download(user=patient_user, note_id=note.pk)  # warm-up: imports, key creation
        downloads, sizes = [], []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            pdf = encounter_pdf_for_download(user=patient_user, note_id=note.pk)
            downloads.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(pdf))

        data = printable_encounter(note)
        key, certificate, chain = practitioner_signing_material(practitioner)
        renders, signatures = [], []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            raw = render_encounter_pdf(data)
            t1 = time.perf_counter()
            sign_pdf(raw, key=key, certificate=certificate, chain=chain, location="Centro", signer_name="Ana")
            t2 = time.perf_counter()
            renders.append((t1 - t0) * 1000)
            signatures.append((t2 - t1) * 1000)

        print(f"signed PDF: {statistics.median(sizes) / 1024:.0f} KiB, {RUNS} runs each")
        print(
            _summary("patient download (gate + build + render + PAdES sign + audit)", downloads)
            + " (target p95 <= 1000 ms)"
        )
        print(_summary("  render only (fpdf2, DejaVu subset)", renders))
        print(_summary("  PAdES signature only (pyhanko)", signatures))


if __name__ == "__main__":
    sys.exit(main())
