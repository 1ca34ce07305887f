"""Check the signature of every signed clinical note and every amendment (EHR-5); exit status 1 if any fails."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from records.models import ClinicalNote, NoteAmendment, NoteStatus
from records.signing import verify_amendment, verify_note


class Command(BaseCommand):
    help = "Verify the signatures of all signed clinical notes and amendments."

    def handle(self, *args: Any, **options: Any) -> None:
        notes_ok = notes_bad = amendments_ok = amendments_bad = 0
        first_bad = ""
        for note in ClinicalNote.objects.filter(status=NoteStatus.SIGNED).order_by("pk").iterator(chunk_size=500):
            if verify_note(note):
                notes_ok += 1
            else:
                notes_bad += 1
                first_bad = first_bad or f"note #{note.pk}"
        amendments = NoteAmendment.objects.select_related("note").order_by("pk")
        for amendment in amendments.iterator(chunk_size=500):
            if verify_amendment(amendment):
                amendments_ok += 1
            else:
                amendments_bad += 1
                first_bad = first_bad or f"amendment #{amendment.pk} (of note #{amendment.note_id})"
        # Ids only: the command's output ends up in logs, so no names and no clinical text.
        self.stdout.write(f"Signed notes: {notes_ok} valid, {notes_bad} invalid.")
        self.stdout.write(f"Amendments: {amendments_ok} valid, {amendments_bad} invalid.")
        if first_bad:
            raise CommandError(f"Signature check failed, first at {first_bad}.", returncode=1)
        self.stdout.write("All signatures verify.")
