"""Pluggable outbound transports; ``get_handler()`` builds the configured one."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ... import conf
from .base import BaseHandler, FunctionHandler

__all__ = ["BaseHandler", "FunctionHandler", "SHORT_NAMES", "get_handler"]

SHORT_NAMES = {
    name: f"{__name__}.{name}.Handler"
    for name in ("http", "pubsub", "console", "locmem")
}


def get_handler(path: Any = None, /, **options: Any) -> BaseHandler:
    """Build a handler from a short name, an import string, a class or a callable.

    A plain function (or an import string naming one) is wrapped so that projects
    written for django-signals-cloudevents keep working. ``path`` is positional
    only, so a handler may take an option named ``path``.
    """
    target = path if path is not None else conf.handler()
    if isinstance(target, str):
        target = import_string(SHORT_NAMES.get(target, target))
    if isinstance(target, type) and issubclass(target, BaseHandler):
        return target(**options)
    if isinstance(target, BaseHandler):
        return target
    if callable(target):
        return FunctionHandler(target, **options)
    raise TypeError(
        f"CLOUDEVENTS_HANDLER must be a handler or a callable, not {target!r}"
    )
