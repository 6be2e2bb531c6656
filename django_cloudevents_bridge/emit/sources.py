"""Model signals -> CloudEvents: ``send_cloudevent`` and ``CLOUDEVENTS_MODELS``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.signals import ModelSignal, m2m_changed, post_delete, post_save
from django.utils.module_loading import import_string

from .. import conf, events
from . import changes, emit, serialize, transaction_aborted

logger = logging.getLogger("django_cloudevents_bridge")

SIGNALS: dict[str, ModelSignal] = {
    "post_save": post_save,
    "post_delete": post_delete,
    "m2m_changed": m2m_changed,
}
DEFAULT_SIGNALS = ("post_save", "post_delete")
MODEL_OPTIONS = frozenset(("signals", "fields", "exclude", "data", "extensions")) | {
    "capture",  # emit/capture.py
    "changed_fields",  # emit/changes.py
    "previous_values",
}
# m2m_changed fires for pre_* actions too; only the post_* ones describe a change.
M2M_ACTIONS = frozenset(("post_add", "post_remove", "post_clear"))
APP_LABEL = "django_cloudevents_bridge"
# The keys of a model event's data the bridge writes itself, besides the model's
# fields: events.new() would leave one out if a project calls it sensitive.
ENVELOPE_KEYS = ("data", "signal_kwargs", "db_table", "using") + (
    "changed_fields",
    "previous_values",
    "created",
    "update_fields",
    "raw",
    "action",
    "reverse",
    "model",
    "pk_set",
)


def send_cloudevent(sender: Any, **kwargs: Any) -> None:
    """Signal receiver: turn a model signal into a CloudEvent and emit it.

    Connect it to ``post_save``, ``post_delete`` or ``m2m_changed``. It never
    raises: a bug here must not break the caller's ``save()``. Except when
    writing the outbox row failed and so aborted the caller's transaction
    (PostgreSQL): that ``save()`` is broken already, and must not look saved.
    """
    try:
        event = from_signal(sender, **kwargs)
        if event is not None:
            emit([event], using=kwargs.get("using"))
    except Exception:
        if transaction_aborted(kwargs.get("using")):
            raise  # the caller's transaction cannot commit: hiding it loses rows
        logger.exception("Could not build a CloudEvent for %r", sender)


def from_signal(sender: Any, **kwargs: Any) -> events.CloudEvent | None:
    """The event for one signal, or None when the signal describes no change."""
    signal = kwargs.pop("signal", None)
    name = next((key for key, value in SIGNALS.items() if value is signal), None)
    instance = kwargs.get("instance")
    if name is None or not isinstance(instance, models.Model):
        logger.warning("send_cloudevent ignores signal %r from %r", signal, sender)
        return None
    opts = instance._meta
    if opts.app_label == APP_LABEL:  # never emit events about our own tables
        return None
    if name == "m2m_changed":
        if kwargs.get("action") not in M2M_ACTIONS:
            return None
        signal_kwargs = {
            "action": kwargs.get("action"),
            "reverse": kwargs.get("reverse"),
            "model": kwargs["model"]._meta.label_lower,
            "pk_set": sorted(
                (serialize.to_json_safe(pk) for pk in kwargs.get("pk_set") or ()),
                key=str,
            ),
            "using": kwargs.get("using"),
        }
    elif name == "post_save":
        update_fields = kwargs.get("update_fields")
        signal_kwargs = {
            "created": kwargs.get("created"),
            "update_fields": sorted(update_fields) if update_fields else None,
            "raw": kwargs.get("raw"),
            "using": kwargs.get("using"),
        }
    else:
        signal_kwargs = {"using": kwargs.get("using")}
    kind = f"django.orm.{name}"
    if name == "m2m_changed" and kwargs.get("reverse"):
        # The change was made from the other side (tag.article_set.add(...)):
        # that model may not be registered, so only its primary key is sent.
        data = serialize.without_sensitive(
            {opts.pk.name: serialize.to_json_safe(instance.pk)}, origin=kind
        )
    else:
        # Its fields are filtered already: only values holding objects are walked.
        data = serialize.without_sensitive_below(
            model_data(instance, signal_kwargs), origin=kind
        )
    payload = {"data": data, "signal_kwargs": signal_kwargs, "db_table": opts.db_table}
    if name == "post_save":  # "changed_fields" / "previous_values", where asked
        payload.update(changes.of(instance, data, signal_kwargs))
    return events.new(
        kind,
        subject=f"DCE:{opts.app_label}.{opts.model_name}/{instance.pk}",
        extensions=model_extensions(opts, data),
        data=payload,
        # Checked above, unless a project calls one of the bridge's own keys a
        # secret: then events.new() leaves it out, as for anyone's data.
        trusted=not serialize.any_sensitive(ENVELOPE_KEYS),
    )


def model_extensions(opts: Any, data: Any) -> dict[str, Any]:
    """A model event's extension attributes: ``djangoapp``, ``djangomodel`` and
    the fields its ``CLOUDEVENTS_MODELS`` entry copies (``"extensions"``), so
    brokers can filter on them (Knative cannot filter on ``data``)."""
    found: dict[str, Any] = {
        "djangoapp": opts.app_label,
        "djangomodel": str(opts.model_name),
    }
    declared = (conf.models().get(opts.label) or {}).get("extensions")
    if not declared or not isinstance(data, dict):
        return found
    pairs = (
        declared.items() if isinstance(declared, dict) else ((n, n) for n in declared)
    )
    for name, field in pairs:
        value = data.get(field)
        if value is not None:
            found[name] = extension_value(value)
    return found


def extension_value(value: Any) -> Any:
    """A JSON value as an extension attribute: a string, boolean or 32-bit integer
    as it is; any other as its JSON text (a number beyond 32 bits as digits)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def model_data(instance: models.Model, signal_kwargs: dict[str, Any]) -> Any:
    """The ``data`` member for an instance, per its ``CLOUDEVENTS_MODELS`` entry."""
    options = conf.models().get(instance._meta.label) or {}
    custom = options.get("data")
    if custom is not None:
        data = serialize.to_json_safe(data_function(custom)(instance, signal_kwargs))
        return serialize.without_sensitive(data, origin=instance._meta.label)
    return serialize.to_dict(
        instance,
        fields=options.get("fields"),
        exclude=options.get("exclude", ()),
        using=signal_kwargs.get("using"),
    )


def connect_models() -> None:
    """Connect ``send_cloudevent`` for every model in ``CLOUDEVENTS_MODELS``.

    Connecting the same function to the same sender is a no-op in Django (its
    lookup key is the receiver and the sender), so a model that is also connected
    by hand, or a second call, never sends an event twice.
    """
    for label, options in conf.models().items():
        if (options or {}).get("capture") == "trigger":
            continue  # its database triggers write the events (capture.py)
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # reported by the system check cloudevents_bridge.E005
        for name in (options or {}).get("signals", DEFAULT_SIGNALS):
            for sender in senders(model, name):
                SIGNALS[name].connect(send_cloudevent, sender=sender)


def senders(model: type[models.Model], signal: str) -> list[type[models.Model]]:
    """The senders to connect for a model: its m2m through models for m2m_changed."""
    if signal == "m2m_changed":
        fields = model._meta.many_to_many
        return [f.remote_field.through for f in fields if f.remote_field.through]
    return [model] if signal in SIGNALS else []


def data_function(path_or_callable: Any) -> Callable[..., Any]:
    """Resolve a ``data`` option: a callable or its import string."""
    if isinstance(path_or_callable, str):
        return import_string(path_or_callable)
    return path_or_callable
