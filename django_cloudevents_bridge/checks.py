"""System checks: misconfiguration is reported at start-up, not on the first save()."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import (
    FieldDoesNotExist,
    ImproperlyConfigured,
    ValidationError,
)
from django.core.validators import validate_slug
from django.db import DatabaseError, connections, router
from django.urls import URLResolver, get_resolver

from . import conf, events
from .emit import capture
from .emit.handlers import SHORT_NAMES, get_handler
from .emit.handlers import http as http_handler
from .emit.sources import MODEL_OPTIONS, SIGNALS, data_function
from .exceptions import ImproperlyInstalled

ID = "cloudevents_bridge"


@register(Tags.compatibility)
def check_handler(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The handler imports, its extra is installed, and it accepts its options."""
    try:
        handler = get_handler(**conf.handler_options())
    except ImproperlyInstalled as err:
        return [Error(str(err), id=f"{ID}.E002", obj="CLOUDEVENTS_HANDLER")]
    except (ImportError, TypeError) as err:
        return [
            Error(
                f"CLOUDEVENTS_HANDLER {conf.handler()!r} cannot be used: {err}",
                hint=f"One of {sorted(SHORT_NAMES)}, an import string or a callable.",
                id=f"{ID}.E001",
                obj="CLOUDEVENTS_HANDLER",
            )
        ]
    except ImproperlyConfigured as err:
        return [Error(str(err), id=f"{ID}.E003", obj="CLOUDEVENTS_HANDLER_OPTIONS")]
    if isinstance(handler, http_handler.Handler) and not handler.current_sink():
        var = conf.env()["SINK_VAR"]
        return [
            Warning(
                f"{var} is not set: CloudEvents will not be delivered.",
                hint=f"A Knative SinkBinding or ContainerSource sets {var}; "
                "outside Knative, set it yourself or choose another handler.",
                id=f"{ID}.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_env(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``CLOUDEVENTS_ENV`` is a dict naming both variables."""
    configured = conf.env_setting()
    if configured is None:
        return []
    missing = set(conf.DEFAULT_ENV) - set(
        configured if isinstance(configured, dict) else ()
    )
    if not isinstance(configured, dict) or missing:
        return [
            Error(
                "CLOUDEVENTS_ENV must be a dict with the keys SINK_VAR and SOURCE_VAR.",
                hint=f"The default is {conf.DEFAULT_ENV}.",
                id=f"{ID}.E004",
                obj="CLOUDEVENTS_ENV",
            )
        ]
    return []


@register(Tags.compatibility)
def check_delivery(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    if conf.delivery() not in conf.DELIVERY_MODES:
        return [
            Error(
                f"CLOUDEVENTS_DELIVERY must be one of {conf.DELIVERY_MODES}.",
                id=f"{ID}.E006",
                obj="CLOUDEVENTS_DELIVERY",
            )
        ]
    return []


@register(Tags.compatibility)
def check_outbox(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``CLOUDEVENTS_OUTBOX`` is a dict of known keys with positive numbers."""
    configured = conf.outbox_setting()
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [_outbox_error("must be a dict")]
    errors = [
        _outbox_error(f"unknown key {key!r}")
        for key in sorted(set(configured) - set(conf.OUTBOX_DEFAULTS))
    ]
    for key, value in configured.items():
        if key == "LOCK_TIMEOUT" and value is None:
            continue  # no bound
        if key in conf.OUTBOX_DEFAULTS and key not in ("BACKGROUND", "RELAY"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(_outbox_error(f"{key} must be a number"))
            elif value <= 0:
                errors.append(_outbox_error(f"{key} must be positive"))
            elif key == "LOCK_TIMEOUT" and not value <= conf.LOCK_TIMEOUT_MAX:
                errors.append(  # nan and inf too: PostgreSQL refuses them
                    _outbox_error(
                        f"LOCK_TIMEOUT must be a finite number of seconds up to "
                        f"{conf.LOCK_TIMEOUT_MAX} (PostgreSQL's limit)"
                    )
                )
    if configured.get("RELAY", True) is not True:
        errors += _without_relay(configured)
    return errors


def _without_relay(configured: dict[str, Any]) -> list[Error]:
    """``RELAY`` False: what needs a relay must be off."""
    if configured["RELAY"] is not False:
        return [_outbox_error("RELAY must be True or False")]
    errors = []
    if configured.get("BACKGROUND"):
        errors.append(_outbox_error("BACKGROUND sends events: it needs RELAY True"))
    if conf.delivery() != "outbox":
        errors.append(
            _outbox_error("RELAY False needs CLOUDEVENTS_DELIVERY 'outbox' (rows)")
        )
    captured = sorted(model._meta.label for model, _ in capture.captured_models())
    if captured:
        errors.append(
            _outbox_error(
                "RELAY False: the relay completes the rows of trigger capture "
                f"({', '.join(captured)}); capture them with signals"
            )
        )
    return errors


@register(Tags.database)
def check_relay(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[Any]:
    """Events wait in the outbox and no relay runs (asked with ``databases`` only).

    ``manage.py check --database default`` and ``migrate`` pass them; a plain
    ``check`` (and ``runserver``) do not, and then no query is made.
    """
    from .emit import outbox
    from .models import OutboxEvent, RelayHeartbeat

    found = []
    for alias in databases or ():
        try:
            if not _migrated(alias, OutboxEvent, RelayHeartbeat):
                continue  # not migrated yet (migrate runs the checks first)
            message = outbox.waiting(outbox.health(alias))
        except DatabaseError:
            continue  # Django's own database checks report a database they cannot use
        if message:
            found.append(
                Warning(
                    message,
                    hint="By default the web process only writes events to the "
                    "outbox (CLOUDEVENTS_OUTBOX['BACKGROUND'] is off): the relay "
                    "sends them. See the README section 'Delivery'.",
                    id=f"{ID}.W005",
                    obj=f"DATABASES[{alias!r}]",
                )
            )
    return found


def _migrated(alias: str, *models: Any) -> bool:
    """True if the database has the tables of ``models`` (DatabaseError if it
    cannot be asked)."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    return {model._meta.db_table for model in models} <= tables


@register(Tags.database)
def check_capture_triggers(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[Any]:
    """Trigger-captured models have their triggers, as the settings give them.

    Asked with ``databases`` only (``check --database``, ``migrate``). A model
    whose app has migrations left to apply is not looked at: ``migrate`` is
    about to install its triggers.
    """
    from django.db.migrations.loader import MigrationLoader

    found = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue  # E012 says it
        models = [
            (model, options)
            for model, options in capture.captured_models()
            if router.db_for_write(model) == alias
        ]
        if not models:
            continue
        try:
            loader = MigrationLoader(connection, ignore_no_migrations=True)
            waiting = {
                app
                for app, name in loader.graph.leaf_nodes()
                if (app, name) not in loader.applied_migrations
            }
            for model, options in models:
                if model._meta.app_label in waiting:
                    continue
                trigger = capture.trigger_for(model, options)
                wrong = capture.problems(trigger, alias)
                if wrong:
                    found.append(
                        Warning(
                            f"CLOUDEVENTS_MODELS[{model._meta.label!r}]: the capture "
                            f"triggers on {alias!r} are not as the settings ask: "
                            f"{'; '.join(wrong)}. Its changes are not all captured.",
                            hint="Run manage.py makemigrations, then migrate.",
                            id=f"{ID}.W009",
                            obj=f"CLOUDEVENTS_MODELS[{model._meta.label!r}]",
                        )
                    )
        except DatabaseError:
            continue  # Django's own database checks report a database they cannot use
    return found


def _outbox_error(message: str) -> Error:
    return Error(
        f"CLOUDEVENTS_OUTBOX: {message}.", id=f"{ID}.E008", obj="CLOUDEVENTS_OUTBOX"
    )


@register(Tags.compatibility)
def check_overrides(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Knative's K_CE_OVERRIDES is usable (what is not is skipped when emitting)."""
    _cleaned, problems = events.parse_overrides(
        os.environ.get(events.OVERRIDES_VAR, "")
    )
    return [
        Warning(f"{events.OVERRIDES_VAR}: {problem}; it is ignored.", id=f"{ID}.W002")
        for problem in problems
    ]


@register(Tags.models)
def check_models(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Every ``CLOUDEVENTS_MODELS`` entry names a model, its fields and signals."""
    configured = conf.models()
    if not isinstance(configured, dict):
        return [_model_error("CLOUDEVENTS_MODELS must be a dict", None)]
    errors = []
    for label, options in configured.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            errors.append(_model_error(f"unknown model {label!r}", label))
            continue
        if not isinstance(options, dict):
            errors.append(_model_error("options must be a dict", label))
            continue
        for key in sorted(set(options) - MODEL_OPTIONS):
            errors.append(_model_error(f"unknown option {key!r}", label))
        for name in options.get("signals", ()):
            if name not in SIGNALS:
                errors.append(_model_error(f"unknown signal {name!r}", label))
        for key in ("fields", "exclude"):
            for field in options.get(key) or ():
                try:
                    model._meta.get_field(field)
                except FieldDoesNotExist:
                    errors.append(_model_error(f"{key}: no field {field!r}", label))
        errors.extend(_capture_errors(model, label, options))
        errors.extend(
            _model_error(f"extensions: {problem}", label)
            for problem in _extension_problems(model, options)
        )
        for key in ("changed_fields", "previous_values"):
            if not isinstance(options.get(key, False), bool):
                errors.append(_model_error(f"{key} must be True or False", label))
        if options.get("data") is not None:
            try:
                function = data_function(options["data"])
            except ImportError as err:
                errors.append(_model_error(f"data: {err}", label))
            else:
                if not callable(function):
                    errors.append(_model_error("data must be callable", label))
    return errors


RESERVED = frozenset({"data", "djangoapp", "djangomodel", "partitionkey"})


def _extension_problems(model: Any, options: dict[str, Any]) -> list[str]:
    """``"extensions"``: field names, or {attribute name: field name}, whose
    attribute names follow the spec and whose fields are sent."""
    declared = options.get("extensions")
    if declared is None:
        return []
    if isinstance(declared, str) or not isinstance(declared, list | tuple | dict):
        return ["a list of field names, or a dict of attribute name: field name"]
    pairs = (
        declared.items() if isinstance(declared, dict) else [(n, n) for n in declared]
    )
    problems = []
    for name, field in pairs:
        if not isinstance(name, str) or not events.EXTENSION_NAME.match(name):
            problems.append(f"{name!r} is not an attribute name ([a-z0-9]+)")
        elif name in events.CORE_ATTRIBUTES or name in RESERVED:
            problems.append(f"{name!r} is an attribute the bridge sets")
        elif len(name) > 20:
            problems.append(
                f"{name!r}: attribute names should be 20 characters at most"
            )
        if not isinstance(field, str):
            problems.append(f"{field!r} is not a field name")
            continue
        try:
            model._meta.get_field(field)
        except FieldDoesNotExist:
            problems.append(f"no field {field!r}")
            continue
        sent = options.get("fields")
        if (sent is not None and field not in sent) or field in options.get(
            "exclude", ()
        ):
            problems.append(f"{field!r} is not sent (fields/exclude)")
    return problems


def _capture_errors(model: Any, label: str, options: dict[str, Any]) -> list[Any]:
    """A ``capture`` option names a mode, and trigger capture can work for the model."""
    mode = options.get("capture", capture.SIGNALS)
    if mode not in capture.CAPTURE_MODES:
        modes = " or ".join(repr(name) for name in capture.CAPTURE_MODES)
        return [_model_error(f"capture must be {modes}, not {mode!r}", label)]
    if mode != capture.TRIGGER:
        return []
    errors = []
    for key in ("signals", "data"):
        if key in options:
            errors.append(
                _model_error(f"{key!r} does not apply to capture 'trigger'", label)
            )
    if _connected_by_hand(model):
        errors.append(
            _model_error(
                "send_cloudevent is also connected to it by hand: with capture "
                "'trigger' each change would be sent twice (disconnect it)",
                label,
            )
        )
    reason = capture.unfit(model)
    if reason is not None:
        errors.append(
            _model_error(f"capture 'trigger' cannot capture it: {reason}", label)
        )
    alias = router.db_for_write(model)
    vendor = connections[alias].vendor
    if vendor != "postgresql":
        errors.append(
            Error(
                f"CLOUDEVENTS_MODELS[{label!r}]: capture 'trigger' needs PostgreSQL; "
                f"the database {alias!r} is {vendor}.",
                hint='Use "capture": "signals" (the default) on this database.',
                id=f"{ID}.E012",
                obj=f"CLOUDEVENTS_MODELS[{label!r}]",
            )
        )
    return errors


def _connected_by_hand(model: Any) -> bool:
    """True if ``send_cloudevent`` is connected to one of the model's signals."""
    from .emit.sources import send_cloudevent

    # A receiver's key in Signal.receivers: (id(function), id(sender)).
    wanted = (id(send_cloudevent), id(model))
    return any(
        entry[0] == wanted
        for signal in SIGNALS.values()
        for entry in getattr(signal, "receivers", ())
    )


def _model_error(message: str, label: str | None) -> Error:
    where = f"CLOUDEVENTS_MODELS[{label!r}]" if label else "CLOUDEVENTS_MODELS"
    return Error(f"{where}: {message}.", id=f"{ID}.E005", obj=where)


@register(Tags.security)
def check_receiver_auth(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The receiver's auth settings are usable; a routed, open receiver warns."""
    from .receive import auth

    options = conf.receiver()
    errors: list[Any] = [
        Error(
            f"CLOUDEVENTS_RECEIVER: {problem}.",
            hint="See the README section 'Authenticating senders'.",
            id=f"{ID}.E007",
            obj="CLOUDEVENTS_RECEIVER",
        )
        for problem in auth_problems(options)
    ]
    issuer = options["OIDC_ISSUER"]
    if not errors and isinstance(issuer, str) and insecure(issuer):
        errors.append(
            Warning(
                "CLOUDEVENTS_RECEIVER['OIDC_ISSUER'] is plain http: anyone on the "
                "path can hand the receiver their own signing keys.",
                hint="Use the issuer's https URL (http is fine on loopback only).",
                id=f"{ID}.W004",
                obj="CLOUDEVENTS_RECEIVER",
            )
        )
    if errors or options["SECRET"] or issuer:
        return errors
    if not receiver_routed():
        return []  # emit-only project: nothing listens
    return [
        Warning(
            "The CloudEvents receiver accepts events from anyone.",
            hint="Set CLOUDEVENTS_RECEIVER['OIDC_ISSUER'] and 'OIDC_AUDIENCE' "
            "(Knative sender identity) or 'SECRET'; if the network already "
            "restricts senders, add this id to SILENCED_SYSTEM_CHECKS.",
            id=auth.OPEN_CHECK,
            obj="CLOUDEVENTS_RECEIVER",
        )
    ]


@register(Tags.compatibility)
def check_deferred(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Deferred processing's keys of ``CLOUDEVENTS_RECEIVER`` are usable."""
    from . import work

    options = conf.receiver()
    found = []
    if options["MODE"] not in ("inline", "deferred"):
        found.append('MODE must be "inline" or "deferred"')
    for key in ("MAX_ATTEMPTS", "BACKOFF", "BACKOFF_MAX", "POLL_INTERVAL"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            found.append(f"{key} must be a number, 0 or more")
        elif key == "MAX_ATTEMPTS" and (value < 1 or not isinstance(value, int)):
            found.append(f"{key} must be a whole number, 1 or more")
    if not isinstance(options["ORDERING"], bool):
        found.append("ORDERING must be True or False")
    backend = options["TASK_BACKEND"]
    if not (backend is None or backend is False or isinstance(backend, str)):
        found.append("TASK_BACKEND must be a task backend's alias, None or False")
    elif isinstance(backend, str) and work.tasks_api() is None:
        found.append("TASK_BACKEND needs Django 6, or django-tasks on Django 5.2")
    errors: list[Any] = [
        Error(
            f"CLOUDEVENTS_RECEIVER: {problem}.",
            id=f"{ID}.E009",
            obj="CLOUDEVENTS_RECEIVER",
        )
        for problem in found
    ]
    if not errors and work.deferred() and conf.handler() == "http" and not conf.sink():
        errors.append(
            Warning(
                "In deferred mode, reply events go out through the handler, and "
                f"{conf.env()['SINK_VAR']} is not set: replies are kept on their "
                "target runs, not sent.",
                hint="Set the sink (a Knative SinkBinding), or route replies with "
                "MODE 'inline'.",
                id=f"{ID}.W006",
                obj="CLOUDEVENTS_RECEIVER",
            )
        )
    return errors


@register(Tags.models)
def check_watches(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Watch classes name installed models; the watch settings are usable."""
    from .watches.base import InstanceWatchEvent, registered

    found = []
    for cls in registered():
        if issubclass(cls, InstanceWatchEvent):
            try:
                cls.model()
            except (ImproperlyConfigured, LookupError, ValueError) as err:
                found.append((cls.label(), f"content_type is not a model: {err}"))
    options = conf.notifications()
    rate = options["ACTIVATION_RATE"]
    if not (
        isinstance(rate, list | tuple)
        and len(rate) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in rate)
    ):
        found.append(
            ("CLOUDEVENTS_NOTIFICATIONS", "ACTIVATION_RATE must be (mails, seconds)")
        )
    for key in ("ACTIVATION_MAX_AGE", "PENDING_WATCH_DAYS"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            found.append(
                ("CLOUDEVENTS_NOTIFICATIONS", f"{key} must be a positive number")
            )
    return [
        Error(f"{where}: {problem}.", id=f"{ID}.E013", obj=where)
        for where, problem in found
    ]


def receiver_routed(patterns: Sequence[Any] | None = None) -> bool:
    """True if the URLconf routes a CloudEvents receiver view."""
    if patterns is None:
        try:
            patterns = get_resolver().url_patterns
        except (AttributeError, ImportError, ImproperlyConfigured):
            # No ROOT_URLCONF (a relay-only settings module), or one that does
            # not import: Django's own URL checks report the latter.
            return False
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if receiver_routed(pattern.url_patterns):
                return True
        else:
            view_class = getattr(pattern.callback, "view_class", None)
            if getattr(view_class, "cloudevents_receiver", False):
                return True
    return False


def auth_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with the auth keys of ``CLOUDEVENTS_RECEIVER``."""
    from .receive import auth, policies

    found = [
        f"unknown key {key!r}"
        for key in sorted(set(options) - set(conf.RECEIVER_DEFAULTS))
    ]
    secret = options["SECRET"]
    if not (
        secret is None
        or (isinstance(secret, str) and secret)
        or (
            isinstance(secret, list | tuple)
            and all(isinstance(item, str) and item for item in secret)
        )
    ):
        found.append("SECRET must be a non-empty string or a list of them")
    found += policies.problems(options["POLICIES"])
    found += [
        f"{key} must be an attribute name (lowercase letters and digits) or None"
        for key in ("CORRELATION_ATTRIBUTE", "REPLY_ATTRIBUTE")
        if options[key] is not None
        and not (
            isinstance(options[key], str) and events.EXTENSION_NAME.match(options[key])
        )
    ]
    issuer = options["OIDC_ISSUER"]
    if issuer is None:
        found += [
            f"{key} is set but OIDC_ISSUER is not"
            for key in ("OIDC_AUDIENCE", "OIDC_SUBJECTS")
            if options[key] is not None
        ]
        return found
    if not (isinstance(issuer, str) and urlsplit(issuer).scheme in ("http", "https")):
        found.append("OIDC_ISSUER must be an http(s) URL")
    audience = options["OIDC_AUDIENCE"]
    if not (isinstance(audience, str) and audience):
        found.append("OIDC_AUDIENCE is required with OIDC_ISSUER")
    subjects = options["OIDC_SUBJECTS"]
    if subjects is not None and not (
        isinstance(subjects, list | tuple)
        and all(isinstance(item, str) for item in subjects)
    ):
        found.append("OIDC_SUBJECTS must be a list of strings (or None)")
    for key in ("OIDC_FETCH_TIMEOUT", "OIDC_STALE_SECONDS"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            found.append(f"{key} must be a number of seconds")
        elif key == "OIDC_FETCH_TIMEOUT" and not value:
            found.append(f"{key} must be more than 0")
    for key in ("OIDC_CA_FILE", "OIDC_TOKEN_FILE"):
        path = options[key]
        if path and path != conf.RECEIVER_DEFAULTS[key] and not os.path.exists(path):
            found.append(f"{key} {path!r} does not exist")
    if auth.jwt is None:  # pragma: no cover - the tests install the [oidc] extra
        found.append("OIDC needs PyJWT: pip install 'django-cloudevents-bridge[oidc]'")
    return found


def insecure(url: str) -> bool:
    """True for an http URL whose host is not a loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


@register(Tags.compatibility)
def check_notifications(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``CLOUDEVENTS_NOTIFICATIONS``: a usable BASE_URL, channels that import."""
    configured = conf.notifications_setting()
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [_notifications_error("must be a dict")]
    options = conf.notifications()
    errors: list[Any] = []
    base = options["BASE_URL"]
    parts = urlsplit(base) if isinstance(base, str) else None
    if base is None:
        errors.append(
            Warning(
                'CLOUDEVENTS_NOTIFICATIONS["BASE_URL"] is not set: notification '
                "e-mails cannot get their unsubscribe links, and are not sent.",
                hint='The site\'s absolute URL, e.g. "https://example.com".',
                id=f"{ID}.W007",
                obj="CLOUDEVENTS_NOTIFICATIONS",
            )
        )
    elif (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        errors.append(
            _notifications_error(
                f"BASE_URL {base!r} must be an absolute http(s) URL with no query "
                'or fragment, e.g. "https://example.com"'
            )
        )
    elif insecure(base):
        errors.append(
            Warning(
                f'CLOUDEVENTS_NOTIFICATIONS["BASE_URL"] {base!r} is not https: '
                "RFC 8058 one-click unsubscribe links must be.",
                id=f"{ID}.W008",
                obj="CLOUDEVENTS_NOTIFICATIONS",
            )
        )
    channels = options["CHANNELS"]
    if not isinstance(channels, dict):
        errors.append(
            _notifications_error(
                'CHANNELS must be a dict of dotted paths or {"BACKEND", "OPTIONS"}'
            )
        )
        channels = {}
    from .notifications.channels import get_channel

    for name, path in conf.channels().items():
        try:
            get_channel(name).check()
        except Exception as err:
            errors.append(
                Error(
                    f"Notification channel {name!r} ({path!r}) cannot be used: {err}",
                    hint="A dotted path to a BaseChannel subclass, or "
                    '{"BACKEND": path, "OPTIONS": {keyword arguments}}.',
                    id=f"{ID}.E011",
                    obj="CLOUDEVENTS_NOTIFICATIONS",
                )
            )
    for key in ("MAX_ATTEMPTS", "BATCH", "BACKOFF", "BACKOFF_MAX", "LEASE"):
        value = options[key]
        whole = key in ("MAX_ATTEMPTS", "BATCH")
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else int | float)
            or value < (1 if whole else 0)
        ):
            kind = "a whole number, 1 or more" if whole else "a number, 0 or more"
            errors.append(_notifications_error(f"{key} must be {kind}"))
    return errors


def _notifications_error(message: str) -> Error:
    return Error(
        f"CLOUDEVENTS_NOTIFICATIONS: {message}.",
        id=f"{ID}.E010",
        obj="CLOUDEVENTS_NOTIFICATIONS",
    )


@register(Tags.compatibility)
def check_subscriptions_rendering(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``CLOUDEVENTS_SUBSCRIPTIONS["DEFAULT_RENDERING_STYLE"]`` names a style."""
    configured = conf.subscriptions_setting()
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [_rendering_error("CLOUDEVENTS_SUBSCRIPTIONS must be a dict")]
    name = configured.get("DEFAULT_RENDERING_STYLE")
    if name is None:
        return []
    try:
        if not isinstance(name, str):
            raise ValidationError("not a string")
        validate_slug(name)
    except ValidationError:
        return [
            _rendering_error(
                "CLOUDEVENTS_SUBSCRIPTIONS['DEFAULT_RENDERING_STYLE'] must be the "
                f"name (a slug) of a RenderingStyle, or None; not {name!r}"
            )
        ]
    return []


def _rendering_error(message: str) -> Error:
    return Error(f"{message}.", id=f"{ID}.E017", obj="CLOUDEVENTS_SUBSCRIPTIONS")


@register(Tags.database)
def check_rendering(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[Any]:
    """The default rendering style exists, and every context renderer's templates
    and hints are usable (asked with ``databases`` only, like check_relay)."""
    from .models import ContextRenderer, RenderingStyle
    from .subscriptions.rendering import renderer_problems

    found: list[Any] = []
    default = conf.default_rendering_style()
    for alias in databases or ():
        try:
            if not _migrated(alias, ContextRenderer, RenderingStyle):
                continue  # not migrated yet (migrate runs the checks first)
            styles = RenderingStyle.objects.using(alias)
            if default and not styles.filter(name=default).exists():
                found.append(
                    Warning(
                        f"The default rendering style {default!r} does not exist "
                        f"in DATABASES[{alias!r}]: events are rendered with the "
                        "built-in text where no renderer of a medium's style fits.",
                        hint="Create it (admin: Rendering styles), or change "
                        "CLOUDEVENTS_SUBSCRIPTIONS['DEFAULT_RENDERING_STYLE'].",
                        id=f"{ID}.W012",
                        obj="CLOUDEVENTS_SUBSCRIPTIONS",
                    )
                )
            renderers = list(ContextRenderer.objects.using(alias).order_by("name"))
        except DatabaseError:
            continue  # Django's own database checks report a database they cannot use
        for renderer in renderers:
            problems = renderer_problems(renderer)
            if problems:
                found.append(
                    Error(
                        f"Context renderer {renderer.name!r}: "
                        + "; ".join(
                            f"{field}: {problem}"
                            for field, listed in problems.items()
                            for problem in listed
                        )
                        + ".",
                        hint="Fix it in the admin (Rendering styles); meanwhile "
                        "what is broken is left out when events are rendered.",
                        id=f"{ID}.E018",
                        obj=renderer,
                    )
                )
    return found


@register(Tags.models)
def check_subscription_resolvers(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Every registered membership, follows and people QuerySet compiles."""
    from django.db import DEFAULT_DB_ALIAS

    from .subscriptions import resolvers

    registry = resolvers.registry
    errors = []
    relations: list[tuple[str, Any]] = [
        *(
            (f"membership {m.left.__name__} > {m.right.__name__}", m.pairs)
            for m in registry.memberships
        ),
        *(
            (f"follows {m.left.__name__} > {m.right.__name__}", m.pairs)
            for m in registry.follows
        ),
        *((f"people {p.model.__name__}", p.rows) for p in registry.people.values()),
    ]
    for label, build in relations:
        try:
            build().query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
        except Exception as err:
            errors.append(
                Error(
                    f"Subscriptions resolver: the {label} QuerySet does not "
                    f"compile: {err}",
                    hint="Name the key columns of the registered QuerySet.",
                    id=f"{ID}.E016",
                    obj=label,
                )
            )
    return errors


def _shared_channel(first: Any, other: Any) -> Warning:
    return Warning(
        f"Mediums {first.name!r} and {other.name!r} send through the same channel "
        f"{other.channel!r}: a person reached on both gets one message per event, "
        f"rendered for {first.name!r} (the first created).",
        hint="One notification per person, event and channel is the rule (the "
        "ledger's). Configure a second channel (CLOUDEVENTS_NOTIFICATIONS"
        '["CHANNELS"]) for a medium that must send its own message.',
        id=f"{ID}.W013",
        obj=f"Medium {other.name}",
    )


@register(Tags.database)
def check_subscriptions(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Mediums name configured channels, sources' filters compile, and every
    subscriber type maps to people (``check --database``; reads the tables)."""
    from django.contrib.contenttypes.models import ContentType

    from . import filters
    from .subscriptions import resolvers

    databases = kwargs.get("databases") or []
    if "default" not in databases:
        return []
    from .models import Medium, Source, Subscription

    errors: list[Any] = []
    try:
        channels = conf.channels()
        first: dict[str, Any] = {}  # channel -> its first medium
        for medium in Medium.objects.exclude(channel="feed").order_by("pk"):
            if medium.channel in first:
                errors.append(_shared_channel(first[medium.channel], medium))
            first.setdefault(medium.channel, medium)
            if medium.channel not in channels:
                errors.append(
                    Error(
                        f"Medium {medium.name!r}: channel {medium.channel!r} is not "
                        "configured.",
                        hint='A name in CLOUDEVENTS_NOTIFICATIONS["CHANNELS"] '
                        '("email" is built in), or "feed".',
                        id=f"{ID}.E014",
                        obj=f"Medium {medium.name}",
                    )
                )
        for source in Source.objects.exclude(filter__isnull=True):
            if source.filter in ([], {}):
                continue
            try:
                filters.compile(source.filter or [])
            except filters.InvalidFilter as err:
                errors.append(
                    Error(
                        f"Source {source.name!r}: its filter does not compile: {err}",
                        hint="No event of the source is stored while it does not.",
                        id=f"{ID}.E015",
                        obj=f"Source {source.name}",
                    )
                )
        mapped = {
            ContentType.objects.get_for_model(model).pk
            for model in resolvers.registry.people
        }
        kinds = Subscription.objects.values_list(
            "entity_type_id", "sub_entity_type_id"
        ).distinct()
        for entity_type, sub_entity_type in kinds:
            kind = sub_entity_type or entity_type
            if kind not in mapped:
                name = ContentType.objects.get_for_id(kind)
                errors.append(
                    Warning(
                        f"Subscriptions of {name.app_label}.{name.model} reach "
                        "nobody: no people are registered for that model.",
                        hint="resolvers.register_people(model, user=..., email=...)",
                        id=f"{ID}.W010",
                        obj=f"{name.app_label}.{name.model}",
                    )
                )
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    return errors
