"""Settings, read at call time so ``override_settings`` works.

This is the only module that reads ``django.conf.settings``. Defaults live here and
are never written into the settings object.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from django.conf import Settings, UserSettingsHolder, settings
from django.conf import global_settings as defaults
from django.utils.functional import empty


def _setting(name: str, default: Any = None) -> Any:
    """``getattr(settings, name, default)``, without an exception when it is unset.

    Several settings are read on every ``save()``, and most projects set few of
    them: Django raises and catches an AttributeError for every read of an unset
    one (microseconds apiece). So whether it is set is looked up first, in the
    objects ``settings`` reads from: ``override_settings`` layers (with their
    deleted names) over the project's settings. Nothing is cached here, so a
    setting changed in any way is seen at once.

    A setting read before is found first in ``settings``' own cache of the
    values read (``LazySettings`` keeps them in its ``__dict__`` and drops one
    when it is assigned or deleted, and all of them when an override begins or
    ends): one dict lookup for the settings a project sets.
    """
    lazy = _lazy_dict()
    cached = lazy.get(name, empty)
    if cached is not empty:
        return cached
    holder = lazy.get("_wrapped", empty)
    while isinstance(holder, UserSettingsHolder):
        if name in holder._deleted:
            return default
        if name in vars(holder):
            return getattr(settings, name)
        holder = holder.default_settings
    if holder is empty or not (isinstance(holder, Settings) or holder is defaults):
        return getattr(settings, name, default)  # a holder of another kind
    return getattr(settings, name) if name in vars(holder) else default


@functools.cache
def _lazy_dict() -> dict[str, Any]:
    """``vars(settings)``, the same dict for the process's life (``LazySettings``
    clears it, never replaces it): fetched once, as ``vars()`` goes through
    ``LazyObject.__getattribute__`` each time."""
    return vars(settings)


DEFAULT_ENV = {"SINK_VAR": "K_SINK", "SOURCE_VAR": "K_SOURCE"}
DELIVERY_MODES = ("outbox", "on_commit")

# Keys never sent, whatever a project configures: a password hash or an API token
# must not leave the database. A key is split into words (serialize.words). A
# word entry matches one word, or adjacent words run together ("apikey": api_key,
# apiKey, X-Api-Key); an entry holding "*" is an fnmatch glob, matched against the
# whole key and against each of its words (see serialize.is_sensitive).
ALWAYS_SENSITIVE = (
    "*password*",  # anywhere: userpassword, password_hash; no false friend
    "*passwd*",
    "*apikey*",
    "*privatekey*",
    "*token",  # ending a word: token, accessToken, usertoken; not tokens_used
    # "tokens" only after a word that makes it a credential: access_tokens,
    # refreshTokens, api_tokens; not max_tokens or tokens_used (counts)
    "accesstokens",
    "refreshtokens",
    "apitokens",
    "authtokens",
    "idtokens",
    "bearertokens",
    "sessiontokens",
    "*secret",  # client_secret, mysecret; not secretary
    "apikey",  # api_key, apiKey, X-Api-Key
    "apikeys",
    "privatekey",
    "privatekeys",
    "secrets",
    "secretkey",
    "passphrase",
    "password",  # words run together: pass_word, passWord
    "pass",  # a whole word only: smtp_pass; not passage, passenger or bypass
    "pwd",  # db_pwd
    "credential",
    "credentials",
    "auth",  # basic_auth, authToken; not author, oauth or authenticated
    "authorization",
    "bearer",
    "cookie",
    "cookies",
    "csrf",
    "xsrf",
    "sessionid",  # Django's session cookie; a plain "session" is no secret
    "sessionkey",
    "ssn",
)


def handler() -> Any:
    """``CLOUDEVENTS_HANDLER``: a short name, an import string or a callable."""
    return _setting("CLOUDEVENTS_HANDLER", "http")


def handler_options() -> dict[str, Any]:
    """``CLOUDEVENTS_HANDLER_OPTIONS``: keyword arguments for the handler class."""
    return dict(_setting("CLOUDEVENTS_HANDLER_OPTIONS", None) or {})


def env() -> dict[str, str]:
    """``CLOUDEVENTS_ENV``: names of the environment variables for sink and source."""
    configured = _setting("CLOUDEVENTS_ENV", None)
    if not isinstance(configured, dict):
        return dict(DEFAULT_ENV)
    return {**DEFAULT_ENV, **configured}


def env_setting() -> object:
    """``CLOUDEVENTS_ENV`` exactly as configured (None if unset), for the checks."""
    return _setting("CLOUDEVENTS_ENV", None)


def sink() -> str | None:
    """The sink URL from the environment (``K_SINK`` unless renamed); None if unset."""
    return os.environ.get(env()["SINK_VAR"]) or None


def source() -> str:
    """The event ``source``: env var (``K_SOURCE``), then ``CLOUDEVENTS_SOURCE``."""
    configured = _setting("CLOUDEVENTS_ENV", None)
    name = DEFAULT_ENV["SOURCE_VAR"]
    if isinstance(configured, dict):  # as env() reads it, without a new dict
        name = configured.get("SOURCE_VAR", name)
    from_env = os.environ.get(name)
    if from_env:
        return from_env
    configured = _setting("CLOUDEVENTS_SOURCE", None)
    if configured:
        return str(configured)
    return default_source()


def default_source() -> str:
    """``urn:django:<project>``, the project being the settings module's package."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(
        settings, "SETTINGS_MODULE", None
    )
    project = (module or "django").split(".")[0]
    return f"urn:django:{project}"


def models() -> dict[str, dict[str, Any]]:
    """``CLOUDEVENTS_MODELS``: ``{"app_label.Model": {options}}`` to connect."""
    return _setting("CLOUDEVENTS_MODELS", None) or {}


def delivery() -> str:
    """``CLOUDEVENTS_DELIVERY``: ``"outbox"`` (durable) or ``"on_commit"`` (direct)."""
    return _setting("CLOUDEVENTS_DELIVERY", "outbox")


OUTBOX_DEFAULTS: dict[str, Any] = {
    "BATCH_SIZE": 100,  # rows claimed per round
    "CONCURRENCY": 8,  # sends in flight at once in one relay
    "LEASE": 300.0,  # seconds a claim lasts before another relay may take it
    "MAX_ATTEMPTS": 15,  # then the event is parked
    "MAX_AGE": 3 * 24 * 3600.0,  # seconds; an older failing event is parked
    "BACKOFF": 1.0,  # first retry delay in seconds, doubled each attempt
    "BACKOFF_MAX": 600.0,  # longest delay between attempts
    "RETENTION": 7 * 24 * 3600.0,  # seconds delivered rows are kept
    # Seconds the relay waits when nothing is due. On PostgreSQL a NOTIFY from
    # the outbox INSERT wakes it at once; this is the fallback (SQLite: the way).
    "POLL_INTERVAL": 1.0,
    # Also try each event at once from a thread of the process that saved it.
    # Off: the request path writes the row and nothing else; the relay sends.
    "BACKGROUND": False,
    "LOCK_TIMEOUT": 5.0,  # seconds save() waits for a lock on the outbox table
    # False: no relay runs; a change-data-capture reader (Debezium's outbox event
    # router) reads the rows, and purge deletes every row older than RETENTION.
    "RELAY": True,
}
# PostgreSQL's largest lock_timeout (INT_MAX milliseconds): it refuses more.
LOCK_TIMEOUT_MAX = 2147483.647


def outbox_setting() -> object:
    """``CLOUDEVENTS_OUTBOX`` exactly as configured (None if unset), for the checks."""
    return _setting("CLOUDEVENTS_OUTBOX", None)


def outbox() -> dict[str, Any]:
    """``CLOUDEVENTS_OUTBOX``: tuning of the outbox and relay (see OUTBOX_DEFAULTS)."""
    configured = _setting("CLOUDEVENTS_OUTBOX", None) or {}
    return {**OUTBOX_DEFAULTS, **configured}


def sensitive_fields() -> tuple[str, ...]:
    """Built-in secret-like words and globs plus ``CLOUDEVENTS_SENSITIVE_FIELDS``."""
    extra = _setting("CLOUDEVENTS_SENSITIVE_FIELDS", None)
    if not extra:  # read for every event built: no new tuple then
        return ALWAYS_SENSITIVE
    if isinstance(extra, str):  # one name, not its letters
        extra = [extra]
    return ALWAYS_SENSITIVE + tuple(str(name) for name in extra)


RECEIVER_DEFAULTS: dict[str, Any] = {
    "MAX_BYTES": 1024 * 1024,  # larger requests get 413
    "MAX_BATCH": 100,  # events per batched request; more get 413
    # Authentication (receive/auth.py). Neither SECRET nor OIDC_ISSUER: open.
    "SECRET": None,  # a string, or a list to rotate: "Authorization: Bearer <it>"
    "OIDC_ISSUER": None,  # e.g. "https://kubernetes.default.svc": turns OIDC on
    "OIDC_AUDIENCE": None,  # required with OIDC_ISSUER: the Trigger's audience
    "OIDC_SUBJECTS": None,  # allowed "sub" values, "...:" a prefix; None: any
    # Sender policies (receive/policies.py): who may deliver which events.
    "POLICIES": None,  # a list of {"subjects": [...], "filters": ...}; None: all
    # Knative RequestReply: a reply carries the request's correlation id as this.
    "CORRELATION_ATTRIBUTE": "correlationid",  # None: replies are left alone
    "REPLY_ATTRIBUTE": "replyid",
    # For the discovery/JWKS fetch, if present: a CA trusted besides the system
    # roots, and a bearer token (over https, only to the issuer's own origin; the
    # default one only to a URL that is itself the API server).
    "OIDC_CA_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    "OIDC_TOKEN_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/token",
    # Seconds for the whole discovery + JWKS fetch; and how long after a fetch its
    # keys are still used while the issuer fails (they are refetched after 300 s).
    "OIDC_FETCH_TIMEOUT": 5.0,
    "OIDC_STALE_SECONDS": 3600.0,
    # Deferred processing (work.py): "inline" runs the targets in the request;
    # "deferred" validates, stores, answers 202 and runs them on a worker.
    "MODE": "inline",
    "TASK_BACKEND": None,  # django.tasks alias; None: "default" if TASKS is set
    "MAX_ATTEMPTS": 10,  # a deferred target run failing this often is parked
    "BACKOFF": 1.0,  # first retry delay in seconds, doubled each attempt
    "BACKOFF_MAX": 600.0,  # longest delay between attempts
    "POLL_INTERVAL": 1.0,  # seconds cloudevents_worker sleeps when nothing is due
    # Deferred runs of events with the same key (partitionkey, else subject, per
    # source) run in the order the events were stored.
    "ORDERING": False,
}


def receiver_setting() -> object:
    """``CLOUDEVENTS_RECEIVER`` exactly as configured (None if unset)."""
    return _setting("CLOUDEVENTS_RECEIVER", None)


def receiver() -> dict[str, Any]:
    """``CLOUDEVENTS_RECEIVER``: the receiver's settings (see RECEIVER_DEFAULTS)."""
    configured = _setting("CLOUDEVENTS_RECEIVER", None) or {}
    return {**RECEIVER_DEFAULTS, **configured}


def tasks_configured() -> bool:
    """True if the project sets ``TASKS`` (Django's tasks framework) itself."""
    return bool(settings.is_overridden("TASKS"))  # type: ignore[misc,unused-ignore]


def silenced_checks() -> list[str]:
    """Django's ``SILENCED_SYSTEM_CHECKS`` (what the bridge's own logs respect too)."""
    return list(_setting("SILENCED_SYSTEM_CHECKS", None) or [])


# Notifications (notifications/): one key per line, so that other features'
# keys merge simply.
NOTIFICATIONS_DEFAULTS: dict[str, Any] = {
    # The site's absolute base URL, e.g. "https://example.com": links in
    # messages (unsubscribe) are built on it, since the worker has no request.
    "BASE_URL": None,
    # name -> dotted path of a channel class, or {"BACKEND": path, "OPTIONS": {...}}
    # (keyword arguments of the class); "email" is built in
    "CHANNELS": {},
    "MAX_ATTEMPTS": 8,  # a delivery failing this often is parked
    "BACKOFF": 60.0,  # first retry delay in seconds, doubled each attempt
    "BACKOFF_MAX": 6 * 3600.0,  # longest delay between attempts
    "BATCH": 100,  # deliveries per batch (the e-mail channel: one connection each)
    "LEASE": 600.0,  # seconds a claimed batch is held before another worker may
    # Anonymous watches (watches/):
    "ACTIVATION_MAX_AGE": 3 * 24 * 3600,  # seconds an activation link works
    "ACTIVATION_RATE": (3, 3600),  # activation mails per address, per seconds
    "PENDING_WATCH_DAYS": 7,  # unconfirmed anonymous watches are purged after
    "EMAIL_VERIFIED": None,  # dotted path of f(user) -> bool, for claim_watches
}
BUILTIN_CHANNELS = {
    "email": "django_cloudevents_bridge.notifications.channels.email.Channel"
}


def notifications_setting() -> object:
    """``CLOUDEVENTS_NOTIFICATIONS`` exactly as configured (None if unset)."""
    return _setting("CLOUDEVENTS_NOTIFICATIONS", None)


def notifications() -> dict[str, Any]:
    """``CLOUDEVENTS_NOTIFICATIONS``: see NOTIFICATIONS_DEFAULTS."""
    configured = _setting("CLOUDEVENTS_NOTIFICATIONS", None) or {}
    return {**NOTIFICATIONS_DEFAULTS, **configured}


def channels() -> dict[str, str]:
    """Channel names to dotted paths: the built-in ones and ``CHANNELS``."""
    return {name: path for name, (path, _) in _channel_entries().items()}


def channel_options(name: str) -> dict[str, Any]:
    """The ``OPTIONS`` of a configured channel (keyword arguments of its class)."""
    return dict(_channel_entries()[name][1])


def _channel_entries() -> dict[str, tuple[Any, Any]]:
    """{name: (dotted path, options)}, as configured (checked by get_channel)."""
    configured = notifications()["CHANNELS"]
    entries: dict[str, tuple[Any, Any]] = {
        name: (path, {}) for name, path in BUILTIN_CHANNELS.items()
    }
    for name, value in (configured if isinstance(configured, dict) else {}).items():
        if isinstance(value, dict):
            options = value.get("OPTIONS") or {}
            entries[name] = (value.get("BACKEND"), options)
        else:
            entries[name] = (value, {})
    return entries


# Subscriptions (subscriptions/): one key per line, so that other features'
# keys merge simply.
SUBSCRIPTIONS_DEFAULTS: dict[str, Any] = {
    # The name of the RenderingStyle used by a Medium with none of its own, and
    # the fallback style when a medium's own style has no renderer for a source
    # (entity-event's DEFAULT_ENTITY_EVENT_RENDERING_STYLE); None: no default.
    "DEFAULT_RENDERING_STYLE": None,
}


def subscriptions_setting() -> object:
    """``CLOUDEVENTS_SUBSCRIPTIONS`` exactly as configured (None if unset)."""
    return _setting("CLOUDEVENTS_SUBSCRIPTIONS", None)


def subscriptions() -> dict[str, Any]:
    """``CLOUDEVENTS_SUBSCRIPTIONS``: see SUBSCRIPTIONS_DEFAULTS."""
    configured = _setting("CLOUDEVENTS_SUBSCRIPTIONS", None)
    return {
        **SUBSCRIPTIONS_DEFAULTS,
        **(configured if isinstance(configured, dict) else {}),
    }


def default_rendering_style() -> str | None:
    """The name of the default ``RenderingStyle``, or None (a bad value too: the
    checks report it, and rendering falls back to the built-in text)."""
    name = subscriptions()["DEFAULT_RENDERING_STYLE"]
    return name if isinstance(name, str) and name else None
