"""Moved to ``django_cloudevents_bridge.targets.groups``."""

from ..targets.groups import (
    DISPATCH_UID,
    KEY_EXTENSION,
    KEY_NAMESPACE,
    MODEL_SOURCES,
    Source,
    event_id,
    from_instance,
    on_save,
    only_new_events,
    process_events,
    register_model_event_source,
    to_event,
)

__all__ = [
    "DISPATCH_UID",
    "KEY_EXTENSION",
    "KEY_NAMESPACE",
    "MODEL_SOURCES",
    "Source",
    "event_id",
    "from_instance",
    "on_save",
    "only_new_events",
    "process_events",
    "register_model_event_source",
    "to_event",
]
