"""The example project's settings: everything that differs per deployment is an env var.

DATABASE_URL (sqlite:///path or postgres://user:password@host:port/name; default
a SQLite file next to this project), K_SINK (injected by Knative), CLOUDEVENTS_SOURCE,
DJANGO_SECRET_KEY, DEBUG, ALLOWED_HOSTS, and the receiver's auth:
CLOUDEVENTS_SECRET, CLOUDEVENTS_OIDC_ISSUER, CLOUDEVENTS_OIDC_AUDIENCE,
CLOUDEVENTS_OIDC_SUBJECTS (comma-separated).
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "example-only-not-secret"
DEBUG = os.environ.get("DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "*").split(",")
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "polls_project.urls"
WSGI_APPLICATION = "polls_project.wsgi.application"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cloudevents_bridge",
    "polls",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def database(url: str) -> dict:
    """A DATABASES entry from a URL (sqlite:///path or postgres://...)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": parts.path[1:] if parts.path.startswith("//") else parts.path,
            # Several processes write (web workers, the relay): take the write
            # lock at BEGIN and let readers run beside the writer (WAL).
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"unsupported DATABASE_URL scheme {parts.scheme!r}")


DATABASES = {
    "default": database(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
# Each request is one transaction: a change and its event commit together.
ATOMIC_REQUESTS = True
DATABASES["default"]["ATOMIC_REQUESTS"] = True

# --- django-cloudevents-bridge ---
CLOUDEVENTS_SOURCE = os.environ.get("CLOUDEVENTS_SOURCE", "urn:django:polls")
CLOUDEVENTS_MODELS = {
    "polls.Question": {"signals": ["post_save", "post_delete"]},
    "polls.Choice": {"signals": ["post_save", "post_delete"]},
}
CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": (2.0, 5.0)}
# Receiver auth (k8s/settings.yaml): OIDC is on when CLOUDEVENTS_OIDC_ISSUER is set.
CLOUDEVENTS_RECEIVER: dict = {}
if os.environ.get("CLOUDEVENTS_SECRET"):
    CLOUDEVENTS_RECEIVER["SECRET"] = os.environ["CLOUDEVENTS_SECRET"]
if os.environ.get("CLOUDEVENTS_OIDC_ISSUER"):
    CLOUDEVENTS_RECEIVER["OIDC_ISSUER"] = os.environ["CLOUDEVENTS_OIDC_ISSUER"]
    CLOUDEVENTS_RECEIVER["OIDC_AUDIENCE"] = os.environ.get("CLOUDEVENTS_OIDC_AUDIENCE")
    subjects = os.environ.get("CLOUDEVENTS_OIDC_SUBJECTS", "")
    if subjects:
        CLOUDEVENTS_RECEIVER["OIDC_SUBJECTS"] = subjects.split(",")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cloudevents_bridge": {"handlers": ["console"], "level": "WARNING"}
    },
}
