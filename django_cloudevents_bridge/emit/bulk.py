"""Bulk operations on the signal path: the events ``save()`` would send, for rows
written without it, in the same transaction (any database).

.. code-block:: python

    class Order(models.Model):
        objects = CapturingManager()   # or CapturingQuerySet.as_manager()

``bulk_create()``, ``bulk_update()`` and ``update()`` of a model captured with
signals (``CLOUDEVENTS_MODELS``, ``post_save`` among its signals) then emit one
``post_save`` event per row, written with the rows (the outbox INSERTs are in
the same transaction, so a rollback sends nothing). ``delete()`` needs nothing:
Django sends ``post_delete`` for each row when a receiver is connected. For any
other model (and with trigger capture, which sees these statements itself)
they are Django's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models.signals import post_save

from .. import conf
from . import capture, changes, emit, sources

_M = TypeVar("_M", bound=models.Model)

CHUNK = 500  # primary keys per ``IN (...)`` after an update()
_inside_bulk_update: ContextVar[bool] = ContextVar("inside_bulk_update", default=False)


def captures_saves(model: type[models.Model]) -> bool:
    """True if ``CLOUDEVENTS_MODELS`` captures the model's saves with signals."""
    options = conf.models().get(model._meta.label)
    if not isinstance(options, dict):
        return False
    if capture.capture_mode(options) != capture.SIGNALS:
        return False
    return "post_save" in options.get("signals", sources.DEFAULT_SIGNALS)


class CapturingQuerySet(models.QuerySet[_M]):
    """A QuerySet whose bulk writes emit the events ``save()`` would (see module)."""

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        """Django's ``bulk_create()``, and a ``post_save`` event (``created``) per
        row that got its primary key back (with ``ignore_conflicts`` a row may
        not have been written: it gets none)."""
        if not captures_saves(self.model):
            return super().bulk_create(objs, *args, **kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            made = super().bulk_create(objs, *args, **kwargs)
            _emit(made, self.db, created=True, update_fields=None)
        return made

    def bulk_update(
        self, objs: Iterable[_M], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        """Django's ``bulk_update()``, and a ``post_save`` event per object, with
        ``update_fields`` as given."""
        if not captures_saves(self.model):
            return super().bulk_update(objs, fields, batch_size=batch_size)
        objs, fields = list(objs), list(fields)
        with transaction.atomic(using=self.db, savepoint=False):
            inside = _inside_bulk_update.set(True)  # it calls update(): no events there
            try:
                count = super().bulk_update(objs, fields, batch_size=batch_size)
            finally:
                _inside_bulk_update.reset(inside)
            _emit(objs, self.db, created=False, update_fields=fields)
        return count

    def update(self, **kwargs: Any) -> int:
        """Django's ``update()`` of the rows this queryset selects, and a
        ``post_save`` event per row, as the row is after the update.

        The rows are picked first (one SELECT of their primary keys) and the
        UPDATE is made on exactly those, so every updated row has its event.
        """
        if _inside_bulk_update.get() or not captures_saves(self.model):
            return super().update(**kwargs)
        rows = self.model._base_manager.using(self.db)
        # A model that says what changed: its rows as they were, to compare.
        tracks = changes.wanted(conf.models().get(self.model._meta.label))
        count = 0
        with transaction.atomic(using=self.db, savepoint=False):
            pks = list(self.values_list("pk", flat=True))
            for start in range(0, len(pks), CHUNK):
                chunk = pks[start : start + CHUNK]
                selected = rows.filter(pk__in=chunk).order_by("pk")
                before = {row.pk: row.__dict__ for row in selected} if tracks else {}
                count += rows.filter(pk__in=chunk).update(**kwargs)
                after = list(selected.all())
                for row in after:
                    if row.pk in before:  # compared with the row as it was
                        row.__dict__[changes.LOADED] = before[row.pk][changes.LOADED]
                _emit(after, self.db, created=False, update_fields=list(kwargs))
        return count

    update.alters_data = True  # type: ignore[attr-defined]


class CapturingManager(models.Manager.from_queryset(CapturingQuerySet)):  # type: ignore[misc]
    """``CapturingQuerySet``'s manager: ``objects = CapturingManager()``."""


def _emit(
    instances: Sequence[models.Model],
    using: str,
    *,
    created: bool,
    update_fields: Sequence[str] | None,
) -> None:
    """One ``post_save`` event per instance with a primary key, emitted at once."""
    found = []
    for instance in instances:
        if instance.pk is None:
            continue
        event = sources.from_signal(
            type(instance),
            signal=post_save,
            instance=instance,
            created=created,
            update_fields=frozenset(update_fields) if update_fields else None,
            raw=False,
            using=using,
        )
        if event is not None:
            found.append(event)
    if found:
        emit(found, using=using)
