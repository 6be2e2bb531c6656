"""Settings for the relay subprocess of ``bench.latency``: PostgreSQL, http, K_SINK.

The bench process passes the database in the ``PG*`` variables (as ``bench.settings``
reads them) and the sink in ``K_SINK``.
"""

import os

from bench.settings import postgres

SECRET_KEY = "bench-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_cloudevents_bridge",
    "bench",
]
DATABASES = {"default": postgres()}
CLOUDEVENTS_SOURCE = "urn:django:bench"
CLOUDEVENTS_HANDLER = "http"
CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": (1.0, 5.0), "oidc_token_path": None}
# Ten minutes: every event the sink gets within the bench was claimed because the
# INSERT's NOTIFY woke the relay, not because a poll came round.
CLOUDEVENTS_OUTBOX = {"POLL_INTERVAL": float(os.environ.get("BENCH_POLL", "600"))}
