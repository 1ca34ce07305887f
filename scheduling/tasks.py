"""Background tasks of scheduling, run by the task worker (`manage.py db_worker`, django-tasks)."""

from __future__ import annotations

from django_tasks import task

from scheduling import notifications


@task()
def deliver_notification(notification_id: int) -> str:
    # The row is the source of truth; the queue entry only says "look at it now". Running this twice is safe.
    return notifications.notification_deliver(notification_id=notification_id)
