"""Cleaning up watches nobody can receive: unconfirmed, orphaned, of inactive users."""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from datetime import datetime, timedelta

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Q
from django.utils import timezone

from .. import conf
from ..models import Watch

CHUNK = 1000


def purge(*, now: datetime | None = None) -> Counter[str]:
    """Delete pending watches older than ``PENDING_WATCH_DAYS``, watches of
    deleted objects (or of models that are gone) and of inactive users.

    Returns the number deleted per reason. Safe to run at any time, on any
    number of processes (each delete is by key, in small batches).
    """
    now = now or timezone.now()
    days = conf.notifications()["PENDING_WATCH_DAYS"]
    deleted: Counter[str] = Counter()
    expired = Watch.objects.filter(
        active=False, created_at__lt=now - timedelta(days=days)
    )
    deleted["pending"] = expired.delete()[0]
    user_model = Watch._meta.get_field("user").related_model
    try:
        user_model._meta.get_field("is_active")
    except FieldDoesNotExist:  # a custom user model without the flag
        pass
    else:
        deleted["inactive user"] = Watch.objects.filter(user__is_active=False).delete()[
            0
        ]
    deleted["deleted object"] = _orphans()
    return +deleted


def _orphans() -> int:
    """Delete the watches of objects that no longer exist."""
    count = 0
    on_objects = Watch.objects.exclude(subject_id="")
    labels = on_objects.values_list("subject_type", flat=True).distinct()
    for label in list(labels):
        of_label = on_objects.filter(subject_type=label)
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):  # the model is gone: so are its objects
            count += of_label.delete()[0]
            continue
        # Read first, then delete: no cursor open on the table being changed.
        ids = iter(list(of_label.values_list("subject_id", flat=True).distinct()))
        while batch := list(itertools.islice(ids, CHUNK)):
            pks = []
            for text in batch:
                with contextlib.suppress(ValidationError):  # no object can have it
                    pks.append(model._meta.pk.to_python(text))
            found = model._default_manager.filter(pk__in=pks)
            alive = {str(pk) for pk in found.values_list("pk", flat=True)}
            gone = [text for text in batch if text not in alive]
            if gone:
                count += of_label.filter(Q(subject_id__in=gone)).delete()[0]
    return count
