"""Moved to ``django_cloudevents_bridge.targets`` (and ``targets.groups``)."""

from ..targets import (
    MAX_NAME,
    Handler,
    Provider,
    Target,
    check_name,
    name_of,
    register_provider,
    targets_for,
)
from ..targets.groups import (
    group_targets,
    register_group_handler,
    unregister_group_handler,
)

__all__ = [
    "MAX_NAME",
    "Handler",
    "Provider",
    "Target",
    "check_name",
    "group_targets",
    "name_of",
    "register_group_handler",
    "register_provider",
    "targets_for",
    "unregister_group_handler",
]
