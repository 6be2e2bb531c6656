"""Who subscribers are: memberships, following and people, registered as QuerySets.

django-entity mirrored every model into an entity table (integer ids only, kept
in sync row by row). Here a subscriber is any model row, named by its content
type and its primary key as text (:func:`entity_id`), and the relations between
rows are the project's own tables, registered as QuerySets:

- a **membership** (``register_membership``): a group entity and its members
  (``auth.Group`` and ``auth.User`` through the auth through table, by default;
  a project adds teams, organisations). A group subscription (``Subscription.
  sub_entity_type``) reaches the members; by entity-event's rule an entity
  follows itself and its super-entities (the groups it is a member of);
- a **follows** relation (``register_follows``): a table saying who follows whom,
  on top of that rule;
- **people** (``register_people``): what each subscriber is as a person, the
  ledger's recipient key: a user (``user:<pk>``) or an address
  (``email:<normalised>``). Users map to themselves by default;
- **identities** (``register_identities``): the subscriber entities a signed-in
  user may read feeds for (the user itself by default).

Because the relations are QuerySets, the targets of an event are resolved in
one SQL statement (``queries.py``) whatever the number of subscriptions, and the
statement is built once per database and registry state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import F, Value

__all__ = [
    "Membership",
    "People",
    "Registry",
    "entity_id",
    "entity_of",
    "identities_of",
    "parse_entity",
    "people_keys",
    "register_follows",
    "register_identities",
    "register_membership",
    "register_people",
    "registry",
]

Model = type[models.Model]


@dataclass(frozen=True)
class Membership:
    """Pairs of keys from a QuerySet: (group, member) or (follower, followed).

    ``left`` and ``right`` are the two entity models; ``left_field`` and
    ``right_field`` name the columns of ``queryset`` holding their primary keys.
    """

    left: Model
    right: Model
    queryset: models.QuerySet[Any]
    left_field: str
    right_field: str

    def pairs(self) -> models.QuerySet[Any]:
        """The QuerySet selecting ``dce_left`` and ``dce_right``, unordered."""
        return self.queryset.order_by().values(
            dce_left=F(self.left_field), dce_right=F(self.right_field)
        )


@dataclass(frozen=True)
class People:
    """What rows of ``model`` are as people: their user, else their address."""

    model: Model
    queryset: models.QuerySet[Any]
    entity: str  # the column holding the entity's primary key
    user: str | None  # the column holding a user's primary key (or None)
    email: str | None  # the column holding an address (or None)

    def rows(self) -> models.QuerySet[Any]:
        """The QuerySet selecting ``dce_entity``, ``dce_user``, ``dce_email``."""
        user = F(self.user) if self.user else Value(None, models.CharField())
        email = F(self.email) if self.email else Value("", models.CharField())
        return self.queryset.order_by().values(
            dce_entity=F(self.entity), dce_user=user, dce_email=email
        )


def _default_identities(user: Any) -> Iterator[models.Model]:
    if getattr(user, "is_authenticated", False):
        yield user


@dataclass
class Registry:
    """The registered relations (one per process; ``copy()`` for tests)."""

    memberships: list[Membership] = field(default_factory=list)
    follows: list[Membership] = field(default_factory=list)
    people: dict[Model, People] = field(default_factory=dict)
    identities: list[Callable[[Any], Iterable[models.Model]]] = field(
        default_factory=lambda: [_default_identities]
    )
    version: int = 0  # bumped on every change: prebuilt statements are rebuilt
    # Statements built from this registry, by (version, database, sizes).
    prebuilt: dict[tuple[Any, ...], Any] = field(
        default_factory=dict, repr=False, compare=False
    )

    def copy(self) -> Registry:
        return Registry(
            list(self.memberships),
            list(self.follows),
            dict(self.people),
            list(self.identities),
            self.version + 1,
        )


registry = Registry()


def _model(model: Model | str) -> Model:
    return apps.get_model(model) if isinstance(model, str) else model


def register_membership(
    group: Model | str,
    member: Model | str,
    queryset: models.QuerySet[Any],
    *,
    group_field: str,
    member_field: str,
) -> Membership:
    """Rows of ``member`` belong to rows of ``group``: ``queryset`` holds the
    pairs, ``group_field`` and ``member_field`` naming their key columns."""
    relation = Membership(
        _model(group), _model(member), queryset, group_field, member_field
    )
    registry.memberships.append(relation)
    registry.version += 1
    return relation


def register_follows(
    follower: Model | str,
    followed: Model | str,
    queryset: models.QuerySet[Any],
    *,
    follower_field: str,
    followed_field: str,
) -> Membership:
    """Rows of ``follower`` follow rows of ``followed`` (a follows table), on top
    of the rule that an entity follows itself and the groups it belongs to."""
    relation = Membership(
        _model(follower), _model(followed), queryset, follower_field, followed_field
    )
    registry.follows.append(relation)
    registry.version += 1
    return relation


def register_people(
    model: Model | str,
    queryset: models.QuerySet[Any] | None = None,
    *,
    entity: str = "pk",
    user: str | None = None,
    email: str | None = None,
) -> People:
    """Rows of ``model`` are people: the user whose key is in ``user``, else the
    address in ``email`` (the ledger's recipient key either way). Registering a
    model again replaces its mapping."""
    model = _model(model)
    if user is None and email is None:
        raise ValueError("register_people() needs a user or an email column")
    queryset = model._default_manager.all() if queryset is None else queryset
    mapping = People(model, queryset, entity, user, email)
    registry.people[model] = mapping
    registry.version += 1
    return mapping


def register_identities(function: Callable[[Any], Iterable[models.Model]]) -> None:
    """``function(user)`` yields more subscriber entities the user may read the
    feeds of (e.g. the user's member rows); the user itself is one already."""
    if not callable(function):
        raise TypeError("register_identities() takes a function of the user")
    if function not in registry.identities:
        registry.identities.append(function)


def register_defaults() -> None:
    """The auth app's relations: users are people, groups hold their users."""
    if not apps.is_installed("django.contrib.auth"):
        return
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if user_model not in registry.people:
        fields = {f.name for f in user_model._meta.get_fields()}
        users = user_model._default_manager.all()
        if "is_active" in fields:
            users = users.filter(is_active=True)
        register_people(
            user_model,
            users,
            entity="pk",
            user="pk",
            email=user_model.get_email_field_name(),
        )
    groups = getattr(user_model, "groups", None)
    through = getattr(getattr(groups, "through", None), "_default_manager", None)
    if through is None:  # a custom user model without PermissionsMixin
        return
    from django.contrib.auth.models import Group

    if any(m.left is Group and m.right is user_model for m in registry.memberships):
        return
    register_membership(
        Group,
        user_model,
        through.all(),
        group_field="group_id",
        member_field=f"{user_model._meta.model_name}_id",
    )


def entity_id(model: Model, pk: Any, using: str = DEFAULT_DB_ALIAS) -> str:
    """A primary key as the database writes it as text (``CAST(pk AS text)``).

    Subscriptions keep keys as text so int, UUID and string keys all fit; this
    is the form the one-statement resolution compares them in (a UUID is its
    32 hex digits on a database without a UUID type, SQLite). ValidationError
    for a value the key field refuses.
    """
    value = model._meta.pk.to_python(pk)
    if isinstance(value, uuid.UUID):
        native = connections[using].features.has_native_uuid_field
        return str(value) if native else value.hex
    return str(value)


def entity_of(instance: models.Model) -> tuple[ContentType, str]:
    """(content type, key text) of a model row: how subscriptions name it."""
    model = instance._meta.model
    content_type = ContentType.objects.get_for_model(model)
    return content_type, entity_id(model, instance.pk, instance._state.db or "default")


def parse_entity(reference: str, using: str = DEFAULT_DB_ALIAS) -> tuple[Model, str]:
    """``app_label.model/pk`` (a ``DCE:`` subject prefix allowed) -> (model, key
    text); ValueError for anything else (unknown model, a key the field refuses)."""
    from django.core.exceptions import ValidationError

    text = reference.strip().removeprefix("DCE:")
    label, slash, pk = text.partition("/")
    if not slash or not pk or "." not in label:
        raise ValueError(f"not an app_label.model/pk reference: {reference[:80]!r}")
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise ValueError(f"no installed model {label!r}") from None
    try:
        return model, entity_id(model, pk, using)
    except ValidationError as err:
        raise ValueError(f"{label}: {err.messages[0]}") from None


def people_keys(instance: models.Model) -> list[str]:
    """The recipient keys a subscriber entity stands for (one query; none for a
    user with the default mapping)."""
    from ..notifications import address_key

    mapping = registry.people.get(instance._meta.model)
    if mapping is None:
        return []
    if mapping.user == "pk" and mapping.entity == "pk":
        return [f"user:{instance.pk}"]
    keys = []
    for row in mapping.rows().filter(**{mapping.entity: instance.pk}):
        if row["dce_user"] is not None:
            keys.append(f"user:{row['dce_user']}")
        elif row["dce_email"]:
            keys.append(address_key(row["dce_email"]))
    return keys


def identities_of(user: Any) -> list[models.Model]:
    """The subscriber entities ``user`` may read feeds for, the user first."""
    found: list[models.Model] = []
    for function in registry.identities:
        for entity in function(user):
            if entity not in found:
                found.append(entity)
    return found
