"""Settings for relay subprocesses: the test settings, the test's database, a sink.

``tests.relay_proc`` starts ``python -m django cloudevents_relay`` with these and
passes the rest in the environment: ``RELAY_SQLITE`` (a SQLite file shared with the
test) or ``PGDATABASE`` (the PostgreSQL test database), ``K_SINK``, and
``RELAY_OUTBOX`` (JSON overrides of ``CLOUDEVENTS_OUTBOX``, e.g. a short lease).
"""

import json
import os

from tests.settings import *  # noqa: F403

if os.environ.get("RELAY_SQLITE"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["RELAY_SQLITE"],
        }
    }

CLOUDEVENTS_DELIVERY = "outbox"
CLOUDEVENTS_HANDLER = "http"
# A read timeout longer than any hold the tests put on the sink.
CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": (10.0, 15.0), "oidc_token_path": None}
CLOUDEVENTS_OUTBOX = json.loads(os.environ.get("RELAY_OUTBOX") or "{}")

if os.environ.get("DEFERRED_DIR"):  # worker processes of tests/receive/test_deferred.py
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.workerapp"]  # noqa: F405
    # DEFERRED_RECEIVER: JSON overrides, e.g. no backoff or fewer attempts.
    CLOUDEVENTS_RECEIVER = {
        "MODE": "deferred",
        **json.loads(os.environ.get("DEFERRED_RECEIVER") or "{}"),
    }

if os.environ.get("NOTIFY_SMTP_PORT"):  # tests/notifications/test_worker.py
    from tests.mail_settings import SMTP, mail_settings

    port = int(os.environ["NOTIFY_SMTP_PORT"])
    globals().update(mail_settings(SMTP, host="127.0.0.1", port=port, timeout=60))
    CLOUDEVENTS_NOTIFICATIONS = json.loads(os.environ["NOTIFY_SETTINGS"])
