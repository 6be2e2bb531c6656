"""Test settings: SQLite by default, PostgreSQL with DATABASE=postgres."""

import os
from importlib.util import find_spec

from tests.mail_settings import SMTP, mail_settings

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    # testapp has PostgreSQL fields: Django 6.1 checks (postgres.E005) that this
    # app is installed, which stopped every worker/relay subprocess from starting.
    "django.contrib.postgres",
    "django_cloudevents_bridge",
    "tests.testapp",
    "django_tasks_db",  # a real task backend for deferred mode's tests
]
MIDDLEWARE = [
    "django_cloudevents_bridge.middleware.ReceiverSlashMiddleware",
    "django.middleware.common.CommonMiddleware",  # APPEND_SLASH, as most projects
    "django.contrib.sessions.middleware.SessionMiddleware",
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
ROOT_URLCONF = "tests.urls"
# pytest-django's live_server (a real HTTP server: the one-click unsubscribe
# tests) serves static files: it needs a STATIC_URL.
STATIC_URL = "/static/"

if os.environ.get("DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "test"),
        }
    }
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    }

# django.tasks (the django-tasks backport on Django 5.2): tasks run at once
# ("default"), or wait in the database for django-tasks-db's worker ("db").
# Deferred mode's tests pick one with CLOUDEVENTS_RECEIVER["TASK_BACKEND"].
TASKS = {
    "default": {
        "BACKEND": "django.tasks.backends.immediate.ImmediateBackend"
        if find_spec("django.tasks")
        else "django_tasks.backends.immediate.ImmediateBackend"
    },
    "db": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}

# E-mail: Django's old default (SMTP to localhost), as MAILERS on Django 6.1 and
# later. The test runner swaps in locmem; the smtp fixture points it at a server.
globals().update(mail_settings(SMTP, host="localhost"))

CLOUDEVENTS_HANDLER = "locmem"
# Most emit tests watch the handler directly; the outbox tests switch to "outbox".
CLOUDEVENTS_DELIVERY = "on_commit"
CLOUDEVENTS_SOURCE = "/tests"
CLOUDEVENTS_MODELS = {
    "testapp.Choice": {"signals": ["post_save", "post_delete"]},
    "testapp.Article": {"signals": ["post_save", "post_delete", "m2m_changed"]},
    "testapp.Profile": {"exclude": ["nickname"]},
    "testapp.Entry": {"signals": ["post_save", "post_delete"]},
    "testapp.Summary": {
        "fields": ["title"],
        "data": "tests.testapp.models.summary_data",
    },
}

if os.environ.get("DATABASE") == "postgres":
    # Trigger capture is PostgreSQL's (elsewhere a system-check error, E012).
    CLOUDEVENTS_MODELS["testapp.Captured"] = {
        "capture": "trigger",
        "exclude": ["notes"],
        "previous_values": True,
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_cloudevents_bridge": {"level": "DEBUG"}},
}

# The receive tests post without credentials; tests/receive/test_auth.py covers W003.
SILENCED_SYSTEM_CHECKS = ["cloudevents_bridge.W003"]
