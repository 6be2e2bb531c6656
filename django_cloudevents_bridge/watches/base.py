"""Watch classes (django-tidings' ``Event`` and ``InstanceEvent``) on CloudEvents.

A subclass of :class:`WatchEvent` with an ``event_type`` registers by being
defined (in any module Django imports, e.g. an app's ``events.py``); classes
sharing a type form a union, tidings' container pattern. ``notify()``,
``stop_notifying()`` and ``is_notifying()`` are class methods, a filter left out
is a wildcard; ``fire()`` emits the CloudEvent; when it is received, the watch
target (``targets/watches.py``) finds the watchers and the first class's
``mails()`` builds each person's message.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import models
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string, select_template

from .. import events
from ..emit import emit
from ..events import CloudEvent
from ..filters import Filter, InvalidFilter, Spec
from ..filters import compile as compile_filter
from . import keys

if TYPE_CHECKING:
    from ..models import Watch

MAX_FILTERS = 4  # 2**4 keys per class and subject: the lookup stays one short query
MISSING: Any = object()  # no value for a filter in an event

_classes: dict[str, type[WatchEvent]] = {}  # by dotted path, in definition order


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def registered(event_type: str | None = None) -> list[type[WatchEvent]]:
    """The watch classes (for one CloudEvent type), in definition order."""
    return [
        cls
        for cls in _classes.values()
        if event_type is None or cls.event_type == event_type
    ]


def matching(cloudevent: CloudEvent) -> list[type[WatchEvent]]:
    """The watch classes of the event's type whose ``event_filter`` it passes."""
    return [
        cls
        for cls in registered(cloudevent.get_type())
        if cls.event_test is None or cls.event_test.matches(cloudevent)
    ]


def unregister(cls: type[WatchEvent]) -> None:
    """Forget a watch class (its watches stay); mostly for tests."""
    if _classes.get(_path(cls)) is cls:
        del _classes[_path(cls)]


class WatchEvent:
    """Watches of one CloudEvent ``type``, narrowed by ``filters`` (tidings' Event).

    ``filters`` names the values a watch may fix (at most four; each a lowercase
    alphanumeric name of up to 20 characters, because ``fire()`` sends it as an
    extension attribute). A received event's values come from
    :meth:`filter_value`. A class without ``event_type`` is an abstract base.
    ``event_filter`` (a Subscriptions API filter, e.g. ``{"prefix": {"subject":
    "wiki/"}}`` or ``{"cesql": "..."}``) narrows the class to the events of its
    type that pass it: the others notify none of its watchers.
    """

    event_type: ClassVar[str] = ""
    filters: ClassVar[frozenset[str]] = frozenset()
    event_filter: ClassVar[Spec | None] = None
    event_test: ClassVar[Filter | None] = None  # event_filter, compiled
    # For the e-mail templates: "<template_prefix>/<event_type>/subject.txt" etc.
    template_prefix: ClassVar[str] = "django_cloudevents_bridge/watches"

    cloudevent: CloudEvent | None

    def __init__(self, data: Any = None, **filter_values: Any) -> None:
        self.data: Any = data
        self.cloudevent = None
        self.values: dict[str, Any] = self._checked(filter_values)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = frozenset(cls.filters)
        bad = sorted(n for n in names if not keys.FILTER_NAME.match(str(n)))
        if bad:
            raise ImproperlyConfigured(
                f"{_path(cls)}: filter names are 1-20 lowercase letters or digits "
                f"(they are sent as CloudEvents extension attributes): {bad}"
            )
        if len(names) > MAX_FILTERS:
            raise ImproperlyConfigured(
                f"{_path(cls)}: at most {MAX_FILTERS} filters, not {len(names)}"
            )
        if names & events.CORE_ATTRIBUTES:
            raise ImproperlyConfigured(
                f"{_path(cls)}: a filter cannot be named like a CloudEvents "
                f"attribute: {sorted(names & events.CORE_ATTRIBUTES)}"
            )
        cls.filters = names
        try:
            spec = cls.event_filter
            cls.event_test = compile_filter(spec) if spec is not None else None
        except InvalidFilter as err:
            raise ImproperlyConfigured(f"{_path(cls)}: event_filter: {err}") from err
        if cls.event_type:
            _classes.pop(_path(cls), None)  # a reload takes the new definition
            _classes[_path(cls)] = cls

    @classmethod
    def label(cls) -> str:
        """The class's stable name, stored in the reasons of each notification."""
        return _path(cls)

    # Watching

    @classmethod
    def notify(
        cls, user_or_email: Any, instance: models.Model | None = None, **filters: Any
    ) -> Watch:
        """Start watching; returns the watch (the existing one if there is one).

        A user's watch is active at once; an address's is pending until the link
        in the activation mail (sent after the commit, at most
        ``ACTIVATION_RATE`` per address and period) is confirmed.
        """
        from ..models import Watch

        key = cls._key(instance, filters)
        user, email = _person(user_or_email)
        watch, created = Watch.objects.get_or_create(
            key_digest=keys.digest(key),
            owner=keys.owner_of(user, email),
            defaults={
                "key": key,
                "event_type": cls.event_type,
                "subject_type": cls._subject(instance)[0] or "",
                "subject_id": cls._subject(instance)[1] or "",
                "filters": dict(json_pairs(key)),
                "user": user,
                "email": "" if user is not None else email,
                "active": user is not None,
            },
        )
        if not watch.active:
            from . import activation

            activation.request(cls, watch)
        return watch

    @classmethod
    def stop_notifying(
        cls, user_or_email: Any, instance: models.Model | None = None, **filters: Any
    ) -> int:
        """Stop watching exactly this (active or pending); returns how many ended."""
        return cls._mine(user_or_email, instance, filters).delete()[0]

    @classmethod
    def is_notifying(
        cls, user_or_email: Any, instance: models.Model | None = None, **filters: Any
    ) -> bool:
        """True if this exact watch exists (active or pending)."""
        return cls._mine(user_or_email, instance, filters).exists()

    @classmethod
    def _mine(
        cls, user_or_email: Any, instance: models.Model | None, filters: dict[str, Any]
    ) -> models.QuerySet[Watch]:
        from ..models import Watch

        user, email = _person(user_or_email)
        key = cls._key(instance, filters)
        return Watch.objects.filter(
            key_digest=keys.digest(key), owner=keys.owner_of(user, email)
        )

    @classmethod
    def _key(cls, instance: models.Model | None, filters: Mapping[str, Any]) -> str:
        unknown = sorted(set(filters) - cls.filters)
        if unknown:
            raise TypeError(f"{_path(cls)} has no filter(s) {unknown}")
        values = {}
        for name, value in filters.items():
            try:
                values[name] = keys.canonical(value)
            except keys.NoCanonicalForm as err:
                raise ValueError(f"filter {name!r}: {err}") from None
        return keys.match_key(cls.event_type, *cls._subject(instance), values)

    @classmethod
    def _subject(cls, instance: models.Model | None) -> tuple[str | None, str | None]:
        if instance is not None:
            raise TypeError(
                f"{_path(cls)} watches no single objects (an InstanceWatchEvent does)"
            )
        return keys.ANY, keys.ANY

    # Matching a received event

    @classmethod
    def filter_value(cls, cloudevent: CloudEvent, name: str) -> Any:
        """A received event's value for a filter, or ``MISSING``.

        The extension attribute of that name, else the top-level key of JSON
        data, else the field of a model event's ``data["data"]``. Override to
        read it elsewhere.
        """
        value = cloudevent.get_extension(name)
        if value is not None:
            return value
        data = cloudevent.get_data()
        if isinstance(data, dict):
            if name in data:
                return data[name]
            inner = data.get("data")
            if isinstance(inner, dict) and name in inner:
                return inner[name]
        return MISSING

    @classmethod
    def subjects(cls, cloudevent: CloudEvent) -> list[tuple[str | None, str | None]]:
        """The (subject type, subject id) pairs a watch of this class may hold."""
        return [(keys.ANY, keys.ANY)]

    @classmethod
    def candidate_keys(cls, cloudevent: CloudEvent) -> Iterator[str]:
        """Every match key a watch of this class matching the event can have.

        At most 2**len(filters) per subject pair: each filter fixed to the
        event's value, or left out.
        """
        values = {}
        for name in sorted(cls.filters):
            try:
                value = cls.filter_value(cloudevent, name)
                if value is not MISSING:
                    values[name] = keys.canonical(value)
            except keys.NoCanonicalForm:
                continue  # only watches leaving this filter out can match
        names = sorted(values)
        for subject_type, subject_id in cls.subjects(cloudevent):
            for size in range(len(names) + 1):
                for chosen in itertools.combinations(names, size):
                    yield keys.match_key(
                        cls.event_type,
                        subject_type,
                        subject_id,
                        {name: values[name] for name in chosen},
                    )

    @classmethod
    def received(cls, cloudevent: CloudEvent) -> WatchEvent:
        """An instance for a received event (``__init__`` is not called)."""
        event = cls.__new__(cls)
        event.cloudevent = cloudevent
        event.data = copy.deepcopy(cloudevent.get_data())
        event.values = {}
        for name in cls.filters:
            value = cls.filter_value(cloudevent, name)
            if value is not MISSING:
                event.values[name] = value
        return event

    # Firing

    def to_cloudevent(self) -> CloudEvent:
        """The CloudEvent ``fire()`` emits: the type, the subject, the filter
        values as extension attributes (canonical strings), ``data``."""
        extensions = {
            name: keys.canonical(value) for name, value in self.values.items()
        }
        return events.new(
            self.event_type,
            subject=self.subject(),
            extensions=extensions,
            data=self.data,
        )

    def subject(self) -> str | None:
        """The CloudEvent subject: none for a type-wide event."""
        return None

    def fire(self, *, using: str | None = None) -> CloudEvent:
        """Emit the event (after the commit, through the outbox by default)."""
        cloudevent = self.to_cloudevent()
        emit([cloudevent], using=using)
        return cloudevent

    # Mails

    def mails(
        self, users_and_watches: Iterable[tuple[Any, Sequence[Watch]]]
    ) -> Iterator[EmailMultiAlternatives]:
        """One message per ``(user or address, [watches])`` pair, in order.

        Renders ``<template_prefix>/<event type>/subject.txt``, ``body.txt`` and,
        if present, ``body.html``, falling back to ``<template_prefix>/...``,
        once per recipient, with ``event`` (this object), ``cloudevent``,
        ``data``, ``user`` (None for an address), ``email`` and ``watches``.
        """
        for who, watches in users_and_watches:
            user = None if isinstance(who, str) else who
            email = who if isinstance(who, str) else _user_email(who)
            context = {
                "event": self,
                "cloudevent": self.cloudevent,
                "attributes": self.cloudevent.get_attributes()
                if self.cloudevent is not None
                else {},
                "data": self.data,
                "user": user,
                "email": email,
                "watches": watches,
            }
            subject = " ".join(self.render("subject.txt", context).split())
            message = EmailMultiAlternatives(
                subject, self.render("body.txt", context), to=[email]
            )
            try:
                html = self.render("body.html", context)
            except TemplateDoesNotExist:
                pass
            else:
                message.attach_alternative(html, "text/html")
            yield message

    @classmethod
    def activation_email(cls, watch: Watch, url: str) -> EmailMultiAlternatives:
        """The mail asking an address to confirm its watch (tidings'
        ``_activation_email``): ``activation_subject.txt`` and
        ``activation_body.txt`` under ``template_prefix``, with ``watch``,
        ``url`` (absolute, signed, expiring) and ``event_class``."""
        context = {"watch": watch, "url": url, "event_class": cls}
        prefix = cls.template_prefix
        subject = render_to_string(f"{prefix}/activation_subject.txt", context)
        body = render_to_string(f"{prefix}/activation_body.txt", context)
        return EmailMultiAlternatives(" ".join(subject.split()), body, to=[watch.email])

    def render(self, name: str, context: dict[str, Any]) -> str:
        """A template of this event type, or the fallback of that name."""
        template = select_template(
            [
                f"{self.template_prefix}/{self.event_type}/{name}",
                f"{self.template_prefix}/{name}",
            ]
        )
        return template.render(context)

    @classmethod
    def _checked(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(values) - cls.filters)
        if unknown:
            raise TypeError(f"{_path(cls)} has no filter(s) {unknown}")
        return dict(values)


class InstanceWatchEvent(WatchEvent):
    """Watches of single objects of ``content_type`` (tidings' InstanceEvent).

    ``content_type`` is a model class or ``"app_label.ModelName"``. The object
    of a received event comes from its ``subject`` (``DCE:app.model/pk``, any
    primary key); an event about another model (a post, for a watch on its
    thread) gives it as the value named like the model (``thread``: extension
    attribute, data key or model field, as filters are read). ``notify(who)``
    without an object watches every object of the model.
    """

    content_type: ClassVar[type[models.Model] | str | None] = None

    def __init__(
        self, instance: models.Model | None = None, data: Any = None, **filters: Any
    ) -> None:
        super().__init__(data, **filters)
        self._instance = instance

    @classmethod
    def model(cls) -> type[models.Model]:
        """The watched model class."""
        if cls.content_type is None:
            raise ImproperlyConfigured(f"{_path(cls)}: set content_type to a model")
        if isinstance(cls.content_type, str):
            return apps.get_model(cls.content_type)
        return cls.content_type

    @classmethod
    def _subject(cls, instance: models.Model | None) -> tuple[str | None, str | None]:
        label = cls.model()._meta.label_lower
        if instance is None:
            return label, keys.ANY
        if not isinstance(instance, cls.model()) or instance.pk is None:
            raise TypeError(f"{_path(cls)} watches saved {label} objects")
        return keys.subject_of(instance)

    @classmethod
    def object_pk(cls, cloudevent: CloudEvent) -> str | None:
        """The watched object's primary key in a received event, as text."""
        label = cls.model()._meta.label_lower
        parsed = keys.parse_subject(cloudevent.get_subject())
        if parsed is not None and parsed[0] == label:
            return parsed[1]
        value = cls.filter_value(cloudevent, cls.model()._meta.model_name or "")
        try:
            return None if value is MISSING else keys.canonical(value)
        except keys.NoCanonicalForm:
            return None

    @classmethod
    def subjects(cls, cloudevent: CloudEvent) -> list[tuple[str | None, str | None]]:
        label = cls.model()._meta.label_lower
        pk = cls.object_pk(cloudevent)
        return [(label, keys.ANY)] + ([(label, pk)] if pk is not None else [])

    @classmethod
    def received(cls, cloudevent: CloudEvent) -> WatchEvent:
        event = super().received(cloudevent)
        assert isinstance(event, InstanceWatchEvent)
        event._instance = MISSING  # loaded on first use
        return event

    @property
    def instance(self) -> models.Model | None:
        """The watched object (None if it was deleted since)."""
        if self._instance is MISSING:
            pk = self.object_pk(self.cloudevent) if self.cloudevent else None
            model = self.model()
            try:
                self._instance = model._default_manager.filter(pk=pk).first()
            except (ValueError, TypeError, models.ObjectDoesNotExist):
                self._instance = None  # a pk of the wrong form
        return self._instance

    def subject(self) -> str | None:
        return keys.subject(self._instance) if self._instance is not None else None


class EventUnion:
    """Fire several watch events as one (tidings' EventUnion).

    ``EventUnion(a, b).fire()`` emits one CloudEvent per distinct type: events
    of one type are merged, with the first subject and every event's filter
    values as extension attributes (an InstanceWatchEvent about another object
    adds its primary key as the attribute named like its model). On receipt,
    every class registered for the type matches as one union, so each person
    gets one message; give classes that should share a message the same
    ``event_type``.
    """

    def __init__(self, *events: WatchEvent) -> None:
        if not events:
            raise TypeError("EventUnion needs at least one event")
        self.events = events

    def to_cloudevents(self) -> list[CloudEvent]:
        """The CloudEvents ``fire()`` emits, in the order of their first event."""
        merged: dict[str, CloudEvent] = {}
        for event in self.events:
            built = event.to_cloudevent()
            first = merged.get(event.event_type)
            if first is None:
                merged[event.event_type] = built
                continue
            attributes = dict(first.get_attributes())
            extra = {
                k: v
                for k, v in built.get_attributes().items()
                if k not in events.CORE_ATTRIBUTES
            }
            instance = getattr(event, "_instance", None)
            if isinstance(instance, models.Model) and (
                event.subject() != first.get_subject()
            ):  # another object: named like its model, as object_pk() reads it
                model_name = instance._meta.model_name or ""
                extra[model_name] = keys.subject_of(instance)[1]
            for name, value in extra.items():
                if attributes.get(name, value) != value:
                    raise ValueError(
                        f"EventUnion: two values for {name!r} in {event.event_type}"
                    )
                attributes[name] = value
            merged[event.event_type] = events.new(
                event.event_type,
                subject=first.get_subject(),
                extensions={
                    k: v
                    for k, v in attributes.items()
                    if k not in events.CORE_ATTRIBUTES
                },
                data=first.get_data(),
                id=first.get_id(),
            )
        return list(merged.values())

    def fire(self, *, using: str | None = None) -> list[CloudEvent]:
        """Emit the union's CloudEvents; returns them."""
        built = self.to_cloudevents()
        emit(built, using=using)
        return built


def json_pairs(key: str) -> list[tuple[str, str]]:
    """The filter pairs of a match key."""
    return [(name, value) for name, value in json.loads(key)[3]]


def _person(user_or_email: Any) -> tuple[Any | None, str]:
    """(user, "") for a user, (None, address) for an address."""
    if isinstance(user_or_email, str):
        validate_email(user_or_email.strip())
        return None, user_or_email.strip()
    if not getattr(user_or_email, "is_authenticated", False):
        raise TypeError("watch with a saved user or an e-mail address")
    return user_or_email, ""


def _user_email(user: Any) -> str:
    return getattr(user, user.get_email_field_name(), "") or ""
