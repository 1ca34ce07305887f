"""`manage.py seed_demo`: fictional establishments, staff and patients with known sign-ins, for trying the platform.

Idempotent: what already exists is left exactly as it is (no writes, no audit events), so running it on
every `make run` is safe and prints the same sign-ins. Creation goes through accounts' services, so each
establishment and user is audited with the actor "system".
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services as accounts
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction
from teleconsult import demo


class Command(BaseCommand):
    help = "Create the demonstration establishments and people (refused when TELECONSULT_ENV=production)."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            # The demo passwords and authenticator secrets are published in the source code.
            raise CommandError("seed_demo refuses to run with TELECONSULT_ENV=production: its sign-ins are public.")
        establishments = {item.key: self._establishment(item) for item in demo.ESTABLISHMENTS}
        created = 0
        for person in demo.PEOPLE:
            created += self._person(person, establishments)
        if created:
            self.stdout.write(f"Created {created} demo people.")
        self._consent_documents()
        records = sum(self._patient_record(item, establishments["home"]) for item in demo.PATIENT_RECORDS)
        if records:
            self.stdout.write(f"Created {records} demo patient records.")
        booked = self._schedule(establishments)
        if booked:
            self.stdout.write(f"Created the demo schedule with {booked} appointments.")
        self.stdout.write("\n".join(demo.sign_in_lines()))

    def _establishment(self, item: demo.DemoEstablishment) -> Establishment:
        existing = Establishment.objects.filter(renipress_code=item.renipress_code).first()
        if existing is not None:
            return existing
        return accounts.establishment_create(
            name=item.name, renipress_code=item.renipress_code, time_zone=item.time_zone, created_by=None
        )

    def _person(self, person: demo.DemoPerson, establishments: dict[str, Establishment]) -> int:
        user = User.objects.filter(email__iexact=person.email).first()
        created = 0
        if user is None:
            user = accounts.user_create(
                email=person.email,
                full_name=person.full_name,
                role=Role(person.role),
                password=demo.DEMO_PASSWORD,
                establishments=[establishments[key] for key in person.establishments],
                practitioner=dict(person.practitioner) or None,
                created_by=None,
            )
            created = 1
        if person.totp_secret:
            self._authenticator(user, person)
        return created

    def _consent_documents(self) -> None:
        """Version 1 of every consent kind, in Spanish and English; kinds already published are left alone."""
        from records.consent import consent_document_publish
        from records.models import ConsentDocument, ConsentKind

        publisher = User.objects.get(email__iexact=demo.CONSENT_PUBLISHER)
        published = set(ConsentDocument.objects.values_list("kind", flat=True).distinct())
        for kind, validity_days, spanish, english in demo.CONSENT_TEXTS:
            if kind not in published:
                consent_document_publish(
                    kind=ConsentKind(kind),
                    texts={"es-pe": spanish, "en": english},
                    validity_days=validity_days,
                    published_by=publisher,
                )

    def _patient_record(self, item: demo.DemoPatientRecord, home: Establishment) -> int:
        """The records.Patient of a demo patient's sign-in, registered through the audited service."""
        import datetime as dt

        from records.models import Patient
        from records.services import DocumentInput, patient_register

        user = User.objects.get(email__iexact=item.email)
        if Patient.objects.filter(user=user).exists():
            return 0
        patient_register(
            registered_by=None,
            establishment=home,
            given_names=item.given_names,
            paternal_surname=item.paternal_surname,
            maternal_surname=item.maternal_surname,
            sex=item.sex,
            birth_date=dt.date.fromisoformat(item.birth_date),
            documents=[DocumentInput("dni", item.dni)],
            phone=item.phone,
            email=item.email,
            history_number=item.history_number,
            user=user,
        )
        return 1

    def _schedule(self, establishments: dict[str, Establishment]) -> int:
        """Visit types, weekly availability and a few booked appointments; left alone once they exist."""
        import datetime as dt

        from django.utils import timezone

        from records.models import Patient
        from scheduling.availability import availability_rule_create, visit_type_create
        from scheduling.models import VisitType
        from scheduling.services import appointment_book
        from scheduling.slots import find_slots

        home = establishments["home"]
        if VisitType.objects.filter(establishment=home).exists():
            return 0
        admin = User.objects.get(email__iexact=demo.CONSENT_PUBLISHER)
        types = {
            key: visit_type_create(establishment=establishments[where], by=admin, **fields)
            for key, where, fields in demo.VISIT_TYPES
        }
        today = timezone.localdate()
        for email, where, weekdays, start, end, type_keys in demo.WEEKLY_AVAILABILITY:
            for weekday in weekdays:
                availability_rule_create(
                    practitioner=User.objects.get(email__iexact=email),
                    establishment=establishments[where],
                    weekday=weekday,
                    start_time=dt.time.fromisoformat(start),
                    end_time=dt.time.fromisoformat(end),
                    valid_from=today - dt.timedelta(days=1),
                    visit_types=[types[key] for key in type_keys],
                    by=admin,
                )
        coordinator = User.objects.get(email__iexact=demo.DEMO_COORDINATOR)
        now = timezone.now()
        slots = find_slots(visit_type=types["general"], start=now, end=now + dt.timedelta(days=14), limit=3)
        patients = list(Patient.objects.filter(user__email__in=[p.email for p in demo.PATIENT_RECORDS]).order_by("pk"))
        booked = 0
        for slot, patient in zip(slots, patients, strict=False):
            appointment_book(
                visit_type=types["general"],
                practitioner=User.objects.get(pk=slot.practitioner_id),
                patient=patient,
                start=slot.start,
                booked_by=coordinator,
            )
            booked += 1
        return booked

    @transaction.atomic
    def _authenticator(self, user: User, person: demo.DemoPerson) -> None:
        # A fixed secret (not the enrolment flow's random one) so an authenticator app set up once keeps
        # working; an existing confirmed authenticator is left alone, whatever its secret.
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            return
        device = TOTPDevice.objects.create(user=user, name="Demo", key=person.totp_key_hex, confirmed=True)
        audit.record(
            action=AuditAction.OTP_ENROLLED,
            actor_user_id=None,
            actor_role="system",
            object_type="user",
            object_id=user.pk,
            details={"device": device.pk},
        )
