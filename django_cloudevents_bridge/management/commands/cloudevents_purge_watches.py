from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...watches.purge import purge


class Command(BaseCommand):
    help = (
        "Delete unconfirmed anonymous watches older than PENDING_WATCH_DAYS, and "
        "watches of deleted objects and inactive users (run it daily)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = purge()
        for reason in ("pending", "inactive user", "deleted object"):
            self.stdout.write(f"{reason}: {deleted[reason]} deleted")
