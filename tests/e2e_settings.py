"""Settings for the gunicorn subprocess of the end-to-end tests (``tests.server``).

The test settings on the test's own database: the PostgreSQL test database when
``DATABASE=postgres`` (``PGDATABASE`` names it), else the SQLite file named by
``E2E_SQLITE`` (the test process copies its in-memory database there and back).
"""

import json
import os

from tests.settings import *  # noqa: F403

ALLOWED_HOSTS = ["127.0.0.1"]  # DEBUG is off, as in production
# As a project sets it up today: without ReceiverSlashMiddleware (the receiver
# answers without its trailing slash all the same).
MIDDLEWARE = [m for m in MIDDLEWARE if not m.endswith(".ReceiverSlashMiddleware")]  # noqa: F405

if os.environ.get("E2E_SQLITE"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["E2E_SQLITE"],
            "OPTIONS": {"timeout": 20},
        }
    }

if os.environ.get("E2E_RECEIVER"):  # a test's CLOUDEVENTS_RECEIVER, as JSON
    CLOUDEVENTS_RECEIVER = json.loads(os.environ["E2E_RECEIVER"])
