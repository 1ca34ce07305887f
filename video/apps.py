import datetime as dt

from django.apps import AppConfig


class VideoConfig(AppConfig):
    name = "video"

    def ready(self) -> None:
        from records.signals import consent_revoked, encounter_page_sections, patient_anonymised
        from scheduling.signals import periodic_upkeep

        # In this order: the connections of a dead process become drops first, so that the same run ends the visits
        # they leave abandoned and announces their departures once their grace is over.
        periodic_upkeep.connect(_drop_lost_connections, dispatch_uid="video.drop_lost_connections")
        periodic_upkeep.connect(_finish_abandoned_visits, dispatch_uid="video.finish_abandoned_visits")
        periodic_upkeep.connect(_announce_departures, dispatch_uid="video.announce_departures")
        periodic_upkeep.connect(_fail_lost_recordings, dispatch_uid="video.fail_lost_recordings")
        consent_revoked.connect(_stop_recordings_on_revocation, dispatch_uid="video.stop_recordings_on_revocation")
        patient_anonymised.connect(_destroy_recordings_past_retention, dispatch_uid="video.destroy_recordings")
        encounter_page_sections.connect(_encounter_recordings, dispatch_uid="video.encounter_recordings")


def _drop_lost_connections(*, now: dt.datetime | None = None, **_: object) -> None:
    """Connections of a daphne process that died without running their disconnect (its liveness beat stopped)."""
    import time

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from video.services import visits_drop_lost_connections

    layer = get_channel_layer()
    if not hasattr(layer, "processes_seen"):  # the in-memory layer: a single process, this one
        return
    seen = async_to_sync(layer.processes_seen)()
    lost = visits_drop_lost_connections(
        processes_seen={name: dt.datetime.fromtimestamp(at, tz=dt.UTC) for name, at in seen.items()}, now=now
    )
    for push in lost.pushes:
        if push.channel:
            async_to_sync(layer.send)(push.channel, push.message)
        else:
            async_to_sync(layer.group_send)(push.group, push.message)
    for group, channel in lost.discards:  # otherwise members until the group's expiry, sent to for nothing
        async_to_sync(layer.group_discard)(group, channel)
    # Beats of processes gone for longer than group membership lasts: nothing of theirs is left to sweep.
    async_to_sync(layer.processes_forget)(before=time.time() - layer.group_expiry)


def _finish_abandoned_visits(**_: object) -> None:
    """Visits whose participants all left and whose daphne process died before its timer ended them."""
    from video.services import visits_finish_abandoned

    visits_finish_abandoned()


def _announce_departures(**_: object) -> None:
    """Participants who dropped and did not come back, whose daphne process died before it told the others."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from video.services import visits_announce_departures

    layer = get_channel_layer()
    for push in visits_announce_departures():
        if push.channel:  # a held host departure stops the recording: its recorder's channel
            async_to_sync(layer.send)(push.channel, push.message)
        else:
            async_to_sync(layer.group_send)(push.group, push.message)


def _fail_lost_recordings(**_: object) -> None:
    """Recordings whose recorder's process died before it stored them, and the plaintext it left on this host."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from video.recorder import plaintext_sweep
    from video.recording import recordings_fail_lost, recordings_stop_lost

    layer = get_channel_layer()
    for push in recordings_stop_lost():
        if push.channel:
            async_to_sync(layer.send)(push.channel, push.message)
        else:
            async_to_sync(layer.group_send)(push.group, push.message)
    recordings_fail_lost()
    plaintext_sweep()


def _stop_recordings_on_revocation(*, patient_id: int, kind: str, **_: object) -> None:
    """A revoked recording consent stops the recordings it covered (CON-4), wherever their recorder runs."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from video.recording import recordings_stop_for_revoked_consent

    pushes = recordings_stop_for_revoked_consent(patient_id=patient_id, kind=kind)
    layer = get_channel_layer()
    for push in pushes:
        if push.channel:
            async_to_sync(layer.send)(push.channel, push.message)
        else:
            async_to_sync(layer.group_send)(push.group, push.message)


def _destroy_recordings_past_retention(*, patient_id: int, now: object, **_: object) -> None:
    """The patient's record is anonymised past retention (SEC-5): their recordings' files and keys are destroyed in
    the same transaction; the rows stay as the trace."""
    from video.recording import recordings_destroy_past_retention

    assert isinstance(now, dt.datetime)
    recordings_destroy_past_retention(patient_id=patient_id, now=now)


def _encounter_recordings(**kwargs: object) -> str:
    """The recordings section of the encounter's note page (gated and audited in video.recording_access)."""
    from video.recording_views import encounter_recordings_section

    return encounter_recordings_section(**kwargs)  # type: ignore[arg-type]
