"""E-mail settings as the running Django reads them: ``MAILERS`` on Django 6.1 and
later, ``EMAIL_BACKEND``/``EMAIL_HOST``/... before (deprecated by 6.1).

The settings modules take ``mail_settings()``'s dict; tests change them with
``use_mail(settings, ...)`` on pytest-django's ``settings`` fixture.
"""

from __future__ import annotations

from typing import Any

from django_cloudevents_bridge.notifications._mail import DEFAULT_MAILER, HAS_MAILERS

SMTP = "django.core.mail.backends.smtp.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
_EMAIL_SETTINGS = {
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "timeout": "EMAIL_TIMEOUT",
}


def mail_settings(backend: str, **options: Any) -> dict[str, Any]:
    """The default mailer: ``backend`` with ``options`` (SMTP: host, port, timeout)."""
    if HAS_MAILERS:
        return {"MAILERS": {DEFAULT_MAILER: {"BACKEND": backend, "OPTIONS": options}}}
    return {
        "EMAIL_BACKEND": backend,
        **{_EMAIL_SETTINGS[k]: options[k] for k in options},
    }


def use_mail(settings: Any, backend: str, **options: Any) -> None:
    """``mail_settings()`` on the ``settings`` fixture (undone after the test)."""
    for name, value in mail_settings(backend, **options).items():
        setattr(settings, name, value)
