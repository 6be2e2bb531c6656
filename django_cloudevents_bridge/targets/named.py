"""Named events (eventlib's API on CloudEvents): BaseEvent, handler, log.

A ``BaseEvent`` subclass declared in an installed app (its ``events`` module is
imported at start-up) is named ``app_label.ClassName``, and that name is the
CloudEvent ``type``. ``log(name, data)`` validates the data with the class's
``clean()`` at once, in the caller, then emits the event like any other. When the
event is received, its class's ``@handler`` methods run first (in definition
order), then the ``@handler("pattern")`` functions whose glob matches the name;
each is a dispatch target, so it runs exactly once per event. A handler may
also name a Subscriptions API filter (``filter=``, as group handlers do): it then
runs only for the events of its name that pass it.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, TypeVar, overload

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.utils.module_loading import autodiscover_modules
from django.views import View
from django.views.decorators.csrf import csrf_protect

from .. import events, filters
from ..emit import emit
from ..emit.serialize import JSONEncoder, without_sensitive
from ..events import CloudEvent
from ..exceptions import EventNotFound, ValidationError
from . import Target, name_of, register_provider

F = TypeVar("F", bound=Callable[..., Any])

EVENT_PARAM = "__event__"  # names the event in LogView's query string or form
_MARK = "_cloudevents_named_handler"
_DEFERRED = "_cloudevents_deferred"
_FILTER = "_cloudevents_filter"


_events: dict[str, type[BaseEvent]] = {}
_pending: list[type[BaseEvent]] = []  # declared before the app registry was ready
_functions: list[tuple[str, Callable[..., Any]]] = []
_deferred: set[tuple[str, Callable[..., Any]]] = set()  # always run on the worker
_filters: dict[tuple[str, Callable[..., Any]], filters.Filter] = {}


class BaseEvent:
    """Subclass in an app's ``events.py``; the type is ``app_label.ClassName``.

    Override ``clean()`` to validate ``self.data`` (raise ``ValidationError``),
    mark handler methods with ``@handler`` and set ``http_log = True`` to accept
    the event from :class:`LogView`. A handler method runs on a fresh instance
    whose ``data`` passed ``clean()`` and whose ``cloudevent`` is the received
    SDK event.
    """

    name: ClassVar[str] = ""  # "app_label.ClassName", set when registered
    http_log: ClassVar[bool] = False
    handler_methods: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, data: Any = None, *, cloudevent: CloudEvent | None = None
    ) -> None:
        self.data: Any = {} if data is None else data
        self.cloudevent = cloudevent

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = ""
        cls.handler_methods = _marked_methods(cls)
        _pending.append(cls)
        if apps.apps_ready:
            _resolve()

    def clean(self) -> None:
        """Validate (and optionally normalize) ``self.data``; raise ValidationError."""

    def full_clean(self) -> None:
        """Check that the data is a JSON object, then run ``clean()``."""
        if not isinstance(self.data, dict):
            raise ValidationError(
                "event data must be a JSON object, not %(kind)s",
                code="invalid",
                params={"kind": _kind(self.data)},
            )
        try:
            self.clean()
        except ValidationError:
            raise
        except DjangoValidationError as err:  # Django's own habit, accepted too
            raise ValidationError(err) from err

    def require_data_keys(self, keys: Iterable[str]) -> None:
        """Raise ValidationError naming every key missing from ``self.data``."""
        missing = [key for key in keys if key not in self.data]
        if missing:
            raise ValidationError(
                "missing data key(s): %(keys)s",
                code="required",
                params={"keys": ", ".join(missing)},
            )


def _kind(data: Any) -> str:
    """What ``data`` is, in a rejection's words."""
    if isinstance(data, bytes | bytearray):  # received under a non-JSON media type
        return "binary data"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list | tuple):
        return "an array"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    return type(data).__name__


def _marked_methods(cls: type) -> tuple[str, ...]:
    """Names of the ``@handler`` methods, base classes' first, in definition order."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if getattr(value, _MARK, False):
                names.setdefault(attr)
    # An override without @handler is not a handler any more.
    return tuple(n for n in names if getattr(getattr(cls, n), _MARK, False))


def _resolve() -> None:
    """Name and register the event classes declared so far."""
    while _pending:
        cls = _pending.pop(0)
        config = apps.get_containing_app_config(cls.__module__)
        if config is None:
            raise ImproperlyConfigured(
                f"{cls.__module__}.{cls.__qualname__}: declare named events in an "
                "installed app (its events.py)"
            )
        name = f"{config.label}.{cls.__name__}"
        other = _events.get(name)
        if other is not None and _path(other) != _path(cls):  # a reload is fine
            raise ImproperlyConfigured(
                f"Two named events are called {name!r}: {_path(other)} and {_path(cls)}"
            )
        cls.name = name
        _events[name] = cls


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_method(function: Callable[..., Any]) -> bool:
    """True for a function defined in a class body (judged by its qualname)."""
    parts = getattr(function, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def find_event(name: str) -> type[BaseEvent]:
    """The event class registered as ``name``; EventNotFound if there is none."""
    _resolve()
    try:
        return _events[name]
    except KeyError:
        raise EventNotFound(f"No named event {name!r}") from None


@overload
def handler(
    target: str, *, deferred: bool = False, filter: filters.Spec | None = None
) -> Callable[[F], F]: ...
@overload
def handler(target: F) -> F: ...
@overload
def handler(
    *, deferred: bool = False, filter: filters.Spec | None = None
) -> Callable[[F], F]: ...
def handler(
    target: str | F | None = None,
    *,
    deferred: bool = False,
    filter: filters.Spec | None = None,  # noqa: A002 - the dialect's own word
) -> Callable[[F], F] | F:
    """``@handler`` marks an event method; ``@handler("app.Name")`` a function.

    A function handler is called with the received SDK ``CloudEvent`` (as group
    handlers are) after the data passed the event's ``clean()``. Its pattern is a
    glob (``"shop.*"``) over the names of registered events. Registering the same
    function for the same pattern twice is a no-op. ``deferred=True``
    (``@handler(deferred=True)`` on a method, ``@handler("app.Name",
    deferred=True)`` on a function): it always runs on the worker, also in
    inline mode (e.g. a slow mailer). ``filter=`` (a Subscriptions API filter,
    ``{"exact": {"subject": "..."}}``, a list, ``{"cesql": "..."}``; see
    :mod:`..filters`): the handler runs only for events that pass it as well.
    """
    compiled = filters.compile(filter) if filter is not None else None
    if target is None:  # @handler(deferred=..., filter=...) on a method
        return lambda method: _mark(method, deferred, compiled)
    if isinstance(target, str):
        pattern = target

        def register(function: F) -> F:
            if _is_method(function):
                raise TypeError(
                    f"@handler({pattern!r}) is for functions; mark the method "
                    f"{function.__qualname__} with a bare @handler"
                )
            if not any(p == pattern and f is function for p, f in _functions):
                _functions.append((pattern, function))
            if deferred:
                _deferred.add((pattern, function))
            if compiled is not None:
                _filters[(pattern, function)] = compiled
            else:
                _filters.pop((pattern, function), None)
            return function

        return register
    return _mark(target, deferred, compiled)


def _mark(method: F, deferred: bool, compiled: filters.Filter | None = None) -> F:
    if not _is_method(method):
        raise TypeError(
            f"A bare @handler marks a method of a BaseEvent subclass; give "
            f"{getattr(method, '__qualname__', method)} an event name: "
            '@handler("app.EventName")'
        )
    setattr(method, _MARK, True)
    setattr(method, _DEFERRED, deferred)
    setattr(method, _FILTER, compiled)
    return method


def handler_filters(name: str) -> list[filters.Filter | None]:
    """The filter of each handler of the named event ``name`` (None: no filter)."""
    _resolve()
    event_class = _events.get(name)
    if event_class is None:
        return []
    found = [
        getattr(getattr(event_class, method), _FILTER, None)
        for method in event_class.handler_methods
    ]
    found += [
        _filters.get((pattern, function))
        for pattern, function in _functions
        if fnmatch.fnmatchcase(name, pattern)
    ]
    return found


def unregister_handler(
    function: Callable[..., Any], pattern: str | None = None
) -> None:
    """Remove a function handler (for one pattern, or all); mostly for tests."""
    _functions[:] = [
        (p, f)
        for p, f in _functions
        if not (f is function and (pattern is None or p == pattern))
    ]
    _deferred.difference_update(
        [(p, f) for p, f in _deferred if f is function and pattern in (None, p)]
    )
    for key in [k for k in _filters if k[1] is function and pattern in (None, k[0])]:
        del _filters[key]


def as_json(data: Any) -> Any:
    """``data`` as its receivers will see it: through JSON (dates become strings)."""
    if data is None:
        return {}
    try:
        return json.loads(json.dumps(data, cls=JSONEncoder))
    except (TypeError, ValueError) as err:
        raise ValidationError(
            "event data is not JSON-serializable: %(error)s",
            code="json",
            params={"error": err},
        ) from err


def log(
    name: str, data: Mapping[str, Any] | None = None, *, using: str | None = None
) -> CloudEvent:
    """Validate ``data`` for the event ``name`` now, then emit it; return the event.

    EventNotFound or ValidationError reach the caller, and nothing is emitted then.
    ``clean()`` sees the data in its JSON form (what receivers get), and whatever it
    leaves in ``self.data`` is sent, with this project's ``source``, once the
    transaction on ``using`` commits (``CLOUDEVENTS_DELIVERY``). Keys that look
    like secrets are left out before ``clean()`` sees the data (see ``new()``),
    so a ``clean()`` that requires one fails here, in the caller.
    """
    event_class = find_event(name)
    event = event_class(without_sensitive(as_json(data), origin=event_class.name))
    event.full_clean()
    cloudevent = events.new(event_class.name, data=event.data)
    emit([cloudevent], using=using)
    return cloudevent


def autodiscover() -> None:
    """Import every installed app's ``events`` module."""
    autodiscover_modules("events")
    _resolve()


def _received(event_class: type[BaseEvent], cloudevent: CloudEvent) -> BaseEvent:
    # A copy: clean() and handlers may change their data, never the received event.
    event = event_class(copy.deepcopy(cloudevent.get_data()), cloudevent=cloudevent)
    # Handlers never see data their event rejects: the target fails, its error is
    # recorded and the sender retries (a fixed clean() can then accept it).
    event.full_clean()
    return event


def _run_method(
    event_class: type[BaseEvent], method: str, cloudevent: CloudEvent
) -> Any:
    return getattr(_received(event_class, cloudevent), method)()


def _run_function(
    event_class: type[BaseEvent], function: Callable[..., Any], cloudevent: CloudEvent
) -> Any:
    _received(event_class, cloudevent)
    return function(cloudevent)


def check(cloudevent: CloudEvent, *, deferred_only: bool = False) -> None:
    """Raise ValidationError if a named event with handlers fails ``clean()``.

    The receiver's check before storing handlers' work for later: bad data
    answers 400 and is never stored for processing. In deferred mode every
    handler is later; in inline mode (``deferred_only``) only the always-deferred
    ones (the inline ones reject the data themselves, with the same 400).
    """
    _resolve()
    event_class = _events.get(cloudevent.get_type())
    if event_class is None:
        return
    targets = named_targets(cloudevent)
    if any(target.deferred or not deferred_only for target in targets):
        _received(event_class, cloudevent)


@register_provider
def named_targets(cloudevent: CloudEvent) -> Iterator[Target]:
    """A named event's handler methods, then the function handlers matching it."""
    _resolve()
    name = cloudevent.get_type()
    event_class = _events.get(name)
    if event_class is None:
        return
    for method in event_class.handler_methods:
        function = getattr(event_class, method)
        test = getattr(function, _FILTER, None)
        if test is not None and not test.matches(cloudevent):
            continue
        yield Target(
            f"named:{name}:{name_of(function)}",
            partial(_run_method, event_class, method),
            bool(getattr(function, _DEFERRED, False)),
        )
    for pattern, function in list(_functions):
        if fnmatch.fnmatchcase(name, pattern):
            test = _filters.get((pattern, function))
            if test is not None and not test.matches(cloudevent):
                continue
            yield Target(
                f"named:{name}:{name_of(function)}",
                partial(_run_function, event_class, function),
                (pattern, function) in _deferred,
            )


def _problem(status: int, reason: str) -> JsonResponse:
    return JsonResponse({"error": reason[:200]}, status=status)


@method_decorator(csrf_protect, name="dispatch")
class LogView(View):
    """``POST <prefix>/log?__event__=app.EventName&k=v``: log an event from a page.

    Only events with ``http_log = True`` are accepted. The data is the query
    string and the form body together (the body wins; a repeated key keeps its
    last value; ``csrfmiddlewaretoken`` is dropped), all strings.
    202 ``{"id": ...}``; 400 when ``clean()`` rejects the data; 404 for an
    unknown event or one that did not opt in; 403 without a CSRF token.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        data = {**request.GET.dict(), **request.POST.dict()}
        name = data.pop(EVENT_PARAM, "")
        data.pop("csrfmiddlewaretoken", None)  # a form's token is not event data
        try:
            event_class = find_event(name)
        except EventNotFound:
            event_class = None
        if event_class is None or not event_class.http_log:
            # The same answer either way: do not reveal which events exist.
            return _problem(404, f"No event {name!r} accepts HTTP logging")
        try:
            cloudevent = log(name, data)
        except ValidationError as err:
            return _problem(400, "; ".join(err.messages))
        return JsonResponse({"id": cloudevent.get_id()}, status=202)
