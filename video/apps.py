from django.apps import AppConfig


class VideoConfig(AppConfig):
    name = "video"

    def ready(self) -> None:
        from scheduling.signals import periodic_upkeep

        periodic_upkeep.connect(_finish_abandoned_visits, dispatch_uid="video.finish_abandoned_visits")


def _finish_abandoned_visits(**_: object) -> None:
    """Visits whose participants all left and whose daphne process died before its timer ended them."""
    from video.services import visits_finish_abandoned

    visits_finish_abandoned()
