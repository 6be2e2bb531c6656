"""E-mail connections on both sides of Django 6.1's ``MAILERS``.

Django 6.1 configures e-mail as named mailers (``settings.MAILERS``, read through
``django.core.mail.mailers``, like ``CACHES``) and deprecates ``get_connection()``,
``EMAIL_BACKEND``, ``EMAIL_HOST``... and ``EmailMessage.connection``. Older Django
has only those. This module is the one place that knows which kind it runs on,
by looking for ``mailers`` rather than at a version number.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

# django.core.mail.mailers (Django 6.1 and later), or None.
_mailers: Any = getattr(mail, "mailers", None)
HAS_MAILERS = _mailers is not None
DEFAULT_MAILER = "default"
BACKEND_DEPRECATED = (
    "The e-mail channel's 'backend' option is deprecated on Django 6.1 and later: "
    "configure MAILERS and name an entry with the 'mailer' option."
)


def connection(mailer: str | None = None, backend: str | None = None) -> Any:
    """A new, unopened e-mail backend instance to send a batch through.

    Django 6.1+: the mailer named ``mailer`` (default: the default mailer).
    Before: ``backend``, a dotted path (default: ``EMAIL_BACKEND``). On 6.1
    ``backend`` still works while the project has no ``MAILERS`` (Django's own
    transition), with a DeprecationWarning. ImproperlyConfigured says what
    does not fit the running Django.
    """
    if not HAS_MAILERS:
        if mailer is not None:
            raise ImproperlyConfigured(
                f"the e-mail mailer {mailer!r} needs Django 6.1 or later (MAILERS); "
                "on this Django use EMAIL_BACKEND or the 'backend' option"
            )
        return _backend(backend)
    if backend is None:
        return _mailers[mailer or DEFAULT_MAILER]
    if mailer is not None:
        raise ImproperlyConfigured(
            "give the e-mail channel 'mailer' or 'backend', not both"
        )
    if hasattr(settings, "MAILERS"):
        raise ImproperlyConfigured(
            f"the e-mail backend {backend!r} cannot be used with MAILERS: add it "
            "to MAILERS and name that entry with the 'mailer' option"
        )
    warnings.warn(BACKEND_DEPRECATED, DeprecationWarning, stacklevel=2)
    return _backend(backend)


def _backend(path: str | None) -> Any:
    """``get_connection(path)`` (deprecated by Django 6.1, which then warns), a path
    that does not import as ImproperlyConfigured."""
    try:
        return mail.get_connection(path, fail_silently=False)
    except ImportError as err:
        name = repr(path) if path else "EMAIL_BACKEND"
        raise ImproperlyConfigured(
            f"the e-mail backend {name} does not import: {err}"
        ) from err


def check(mailer: str | None = None, backend: str | None = None) -> None:
    """Raise ImproperlyConfigured if ``connection()`` cannot work; nothing is opened.

    Nothing named means Django's default, which Django's own checks cover (a
    ``MAILERS`` without ``"default"`` is its mail.W001).
    """
    if mailer is not None or backend is not None:
        connection(mailer, backend)
