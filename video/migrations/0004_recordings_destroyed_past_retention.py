"""A stored recording past the patient's retention is destroyed with their record's identity (SEC-5): its file and
file key go, the row stays as the trace with the time it happened."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("video", "0003_recordings_never_deleted")]

    operations = [
        migrations.AddField(
            model_name="recording",
            name="destroyed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="recording",
            name="status",
            field=models.CharField(
                choices=[
                    ("requested", "requested"),
                    ("refused", "refused"),
                    ("cancelled", "cancelled"),
                    ("recording", "recording"),
                    ("stopped", "stopped"),
                    ("stored", "stored"),
                    ("failed", "failed"),
                    ("destroyed", "destroyed"),
                ],
                default="requested",
                max_length=12,
            ),
        ),
        migrations.AddConstraint(
            model_name="recording",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "destroyed"), _negated=True),
                    models.Q(("destroyed_at__isnull", False), ("file_key__isnull", True)),
                    _connector="OR",
                ),
                name="video_recording_destroyed_has_no_key",
            ),
        ),
    ]
