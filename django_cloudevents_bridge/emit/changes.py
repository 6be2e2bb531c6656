"""What changed in an update, on the signal path (opt-in per model).

``"changed_fields": True`` in a model's ``CLOUDEVENTS_MODELS`` entry keeps the
values each instance was loaded (or last saved) with, and an update's event
carries the names of the sent fields whose stored value differs;
``"previous_values": True`` adds those fields' earlier values, filtered and
written as the new ones. Trigger capture always knows the changed fields (the
database compares the old and new row), and sends previous values on the same
option.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.apps import apps
from django.db import connections, models, router
from django.db.models.signals import post_init

from .. import conf
from . import serialize
from ._stored import UNCONVERTED

LOADED = "_cloudevents_loaded"  # the instance attribute holding the kept values
SENT = ""  # key of kept values that are already the sent data (after a save)
CHANGED = "changed_fields"
PREVIOUS = "previous_values"


def wanted(options: Any) -> bool:
    """True if a ``CLOUDEVENTS_MODELS`` entry asks for changes on the signal path."""
    return isinstance(options, dict) and bool(
        options.get(CHANGED) or options.get(PREVIOUS)
    )


def connect_models() -> None:
    """Keep loaded values for the models whose entry asks for changes."""
    for label, options in conf.models().items():
        if not wanted(options) or options.get("capture") == "trigger":
            continue
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # reported by the system check cloudevents_bridge.E005
        post_init.connect(keep, sender=model, dispatch_uid=f"{LOADED}:{label}")


def keep(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """``post_init``: remember the instance's field values as it was made."""
    instance.__dict__[LOADED] = _values(instance)


def _values(instance: models.Model) -> dict[str, Any]:
    attributes = instance.__dict__
    return {
        field.attname: attributes[field.attname]
        for field in instance._meta.concrete_fields
        if field.attname in attributes
    }


def of(
    instance: models.Model, data: dict[str, Any], signal_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The ``changed_fields`` (and ``previous_values``) members of an update's
    event; {} for a model that keeps no values. The sent ``data`` is kept for the
    next save (as sent: values the database computed included)."""
    kept = instance.__dict__.get(LOADED)
    if kept is None:
        return {}
    instance.__dict__[LOADED] = {SENT: data}
    options = conf.models().get(instance._meta.label) or {}
    if signal_kwargs.get("created") or options.get("data") is not None:
        return {}
    earlier = kept.get(SENT)
    if earlier is None:
        earlier = _sent_form(instance, kept, options, signal_kwargs)
    changed = [
        name
        for name, value in data.items()
        if name in earlier and earlier[name] != value
    ]
    found: dict[str, Any] = {CHANGED: changed}
    if options.get(PREVIOUS):
        found[PREVIOUS] = {name: earlier[name] for name in changed}
    return found


def _sent_form(
    instance: models.Model,
    loaded: dict[str, Any],
    options: dict[str, Any],
    signal_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Loaded values as ``data`` would send them (only the fields it sends)."""
    using = signal_kwargs.get("using") or router.db_for_write(type(instance))
    connection = connections[using]
    sent: dict[str, Any] = {}
    for name, field, convert in serialize.plan_for(type(instance), options):
        if field.attname not in loaded:
            continue  # deferred: not known
        value = loaded[field.attname]
        if value is not None:
            with contextlib.suppress(*UNCONVERTED):
                value = convert(value, connection)
        sent[name] = serialize.to_json_safe(value)
    return sent
