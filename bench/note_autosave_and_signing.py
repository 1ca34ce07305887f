"""Clinical note autosave round trip (target p95 <= 100 ms) and signing (target p95 <= 150 ms), through the services.

Builds a practitioner, a patient and 300 encounters in a scratch database; times 600 autosaves of a complete
note (validation, encryption, conditional UPDATE, revision INSERT, audit event, commit) and 300 signings
(canonical form, SHA-256, ECDSA P-256 signature, audit event, commit; the key is created before timing).
Usage: .venv/bin/python -m bench.note_autosave_and_signing
"""

from __future__ import annotations

import copy
import datetime as dt
import statistics
import sys
import time

SCRATCH = "tc_bench_note_autosave"
NOTES = 300


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _figures(name: str, timings: list[float], target: float) -> str:
    return (
        f"{name}: p50 {statistics.median(timings):.2f} ms, p95 {_percentile(timings, 0.95):.2f} ms, "
        f"p99 {_percentile(timings, 0.99):.2f} ms over {len(timings)} (target p95 <= {target:g} ms)"
    )


def main() -> None:
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from accounts.models import Establishment, Role
        from accounts.services import user_create
        from records.encounters import encounter_start
        from records.models import ParticipantRole, Patient, Sex
        from records.notes import note_create, note_save_draft
        from records.signing import note_sign, practitioner_signing_material
        from tests.records.encounter_support import COMPLETE

        establishment = Establishment.objects.create(name="Centro de Salud", renipress_code="00006210")
        practitioner = user_create(
            email="gp@bench.test",
            full_name="Dra. Ana Torres",
            role=Role.PRACTITIONER,
            password=None,
            practitioner={"profession": "physician", "registry_body": "CMP", "registry_number": "12345"},
            created_by=None,
        )
        patient = Patient.objects.create(
            given_names="Rosa",
            paternal_surname="Quispe",
            search_name="QUISPE ROSA",
            sex=Sex.FEMALE,
            birth_date=dt.date(1984, 3, 9),
        )
        notes = []
        for index in range(NOTES):
            encounter = encounter_start(
                patient=patient,
                appointment_ref=f"bench-{index}",
                service_type="teleconsulta",
                modality_planned="video",
                origin_establishment=establishment,
                participants=[(practitioner, ParticipantRole.ATTENDING, None)],
                by=practitioner,
            )
            notes.append(note_create(encounter=encounter, author=practitioner))
        practitioner_signing_material(practitioner)  # the key pair and the clinic CA exist before timing

        autosave = []
        for index in range(2 * NOTES):
            note = notes[index % NOTES]
            content = copy.deepcopy(COMPLETE)
            # The story grows as the practitioner types, like a real autosave sequence.
            content["anamnesis"]["story"] += " Refiere además malestar general." * (index // NOTES + 1)
            t0 = time.perf_counter()
            notes[index % NOTES] = note_save_draft(
                note=note, content=content, by=practitioner, expected_version=note.version
            )
            autosave.append((time.perf_counter() - t0) * 1000)

        signing = []
        for note in notes:
            t0 = time.perf_counter()
            note_sign(note=note, signer=practitioner, reauthenticated=True)
            signing.append((time.perf_counter() - t0) * 1000)

        print(_figures("note autosave round trip (service)", autosave, 100))
        print(_figures("note signing (service)", signing, 150))
        t0 = time.perf_counter()
        call_command("verify_signatures", stdout=open("/dev/null", "w"))  # noqa: SIM115
        print(f"verify_signatures over {NOTES} signed notes: {(time.perf_counter() - t0):.2f} s")


if __name__ == "__main__":
    sys.exit(main())
