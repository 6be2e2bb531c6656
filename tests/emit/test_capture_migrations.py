"""Trigger capture through a project's own ``makemigrations`` and ``migrate``.

A small project (app ``shop``) is written to a temporary directory and run as
subprocesses on a PostgreSQL database of its own: the setting is added, changed,
a column renamed, the setting removed, and after each ``migrate`` the database
holds exactly the triggers the settings ask for. Rows are written with psycopg
directly (another program), and the project's own relay sends them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = """
import json, os
SECRET_KEY = "shop"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_cloudevents_bridge",
    "shop",
]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PORT": os.environ.get("PGPORT", "5432"),
    "USER": os.environ.get("PGUSER", "postgres"),
    "PASSWORD": os.environ.get("PGPASSWORD", ""),
    "NAME": os.environ["SHOP_DB"],
}}
CLOUDEVENTS_MODELS = json.loads(os.environ["SHOP_MODELS"])
CLOUDEVENTS_HANDLER = "http"
CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": (10.0, 10.0), "oidc_token_path": None}
CLOUDEVENTS_SOURCE = "/shop"
"""

MODELS = """
from django.db import models

class Order(models.Model):
    {number} = models.CharField(max_length=20)
    total = models.DecimalField(max_digits=8, decimal_places=2)
    password = models.CharField(max_length=128, blank=True)
    note = models.TextField(blank=True)
"""

TRIGGERED = {"shop.Order": {"capture": "trigger"}}


def server(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname=dbname,
        autocommit=True,
    )


class Project:
    def __init__(self, path: Path, dbname: str) -> None:
        self.path = path
        self.dbname = dbname
        (path / "shop" / "migrations").mkdir(parents=True)
        (path / "shop" / "__init__.py").write_text("")
        (path / "shop" / "migrations" / "__init__.py").write_text("")
        (path / "project_settings.py").write_text(SETTINGS)
        self.models(number="number")

    def models(self, number: str) -> None:
        (self.path / "shop" / "models.py").write_text(MODELS.format(number=number))

    def run(self, *args: str, models: dict, answers: str = "", sink: str = "") -> str:
        env = {
            "K_SINK": sink,
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.path), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "project_settings",
            "SHOP_DB": self.dbname,
            "SHOP_MODELS": json.dumps(models),
        }
        env.pop("DATABASE", None)
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.path,
            env=env,
            input=answers,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def migrate(self, models: dict, answers: str = "") -> str:
        """makemigrations + migrate; the new migration's text."""
        before = set(self.migration_files())
        self.run("makemigrations", "shop", models=models, answers=answers)
        new = sorted(set(self.migration_files()) - before)
        assert len(new) == 1, new
        self.run("migrate", models=models)
        # Stable: the settings and the models as they are need nothing more.
        self.run("makemigrations", "--check", "--dry-run", models=models)
        return (self.path / "shop" / "migrations" / new[0]).read_text()

    def migration_files(self) -> list[str]:
        return [p.name for p in (self.path / "shop" / "migrations").glob("0*.py")]

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        with server(self.dbname) as db:
            cursor = db.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def triggers(self) -> list[str]:
        rows = self.sql(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'shop_order'::regclass "
            "AND NOT tgisinternal ORDER BY tgname"
        )
        return [name for (name,) in rows]

    def functions(self) -> list[str]:
        rows = self.sql(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'dce_capture_%%' "
            "ORDER BY proname"
        )
        return [name for (name,) in rows]

    def captured(self) -> list[dict]:
        """The documents of the captured rows, oldest first."""
        rows = self.sql(
            "SELECT event FROM django_cloudevents_bridge_outboxevent "
            "WHERE source = '' ORDER BY id"
        )
        return [json.loads(event) for (event,) in rows]


@pytest.fixture
def project(tmp_path):
    dbname = f"test_{os.environ.get('PGDATABASE', 'test')}_shop"
    try:
        admin = server("postgres")
    except psycopg.OperationalError as err:  # pragma: no cover - CI has it
        pytest.fail(f"PostgreSQL is required: {err}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{dbname}"')
    yield Project(tmp_path, dbname)
    with server("postgres") as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


ALL = [f"dce_capture_shop_order_{suffix}" for suffix in ("del", "ins", "upd")]


def test_migrations_keep_exactly_the_triggers_the_settings_ask_for(project, sink):
    project.run("makemigrations", "shop", models=TRIGGERED)
    # Not migrated yet: migrate is about to install them, no warning.
    assert "W009" not in project.run("check", "--database", "default", models=TRIGGERED)
    (project.path / "shop" / "migrations" / "0001_initial.py").unlink()
    first = project.migrate(TRIGGERED)
    assert "django_cloudevents_bridge.emit.capture.CaptureTrigger" in first
    assert project.triggers() == ALL
    project.sql(
        "INSERT INTO shop_order (number, total, password, note) "
        "VALUES ('A1', 5, 'pw', 'hi')"
    )
    [created] = project.captured()
    assert created["data"] == {"id": 1, "number": "A1", "total": "5.00", "note": "hi"}

    # A changed setting: the excluded column leaves the trigger. Until the
    # migration is made and applied, the check says the triggers are stale.
    excluding = {"shop.Order": {"capture": "trigger", "exclude": ["note"]}}
    stale = project.run("check", "--database", "default", models=excluding)
    assert "cloudevents_bridge.W009" in stale
    assert "dce_capture_shop_order_ins is out of date" in stale
    second = project.migrate(excluding)
    assert "W009" not in project.run("check", "--database", "default", models=excluding)
    assert "RemoveConstraint" in second and "AddConstraint" in second
    assert project.triggers() == ALL
    project.sql("UPDATE shop_order SET note = 'changed', total = 6")
    updated = project.captured()[-1]
    assert updated["data"] == {"id": 1, "number": "A1", "total": "6.00"}
    assert updated["changed"] == ["total"]

    # A renamed field (its column too): the triggers read the new column and
    # write the new field name.
    project.models(number="reference")
    third = project.migrate(excluding, answers="y\n")
    assert "RenameField" in third
    assert project.triggers() == ALL
    project.sql(
        "INSERT INTO shop_order (reference, total, password, note) "
        "VALUES ('B2', 7.5, 'pw', '')"
    )
    assert project.captured()[-1]["data"] == {
        "id": 2,
        "reference": "B2",
        "total": "7.50",
    }

    # The project's relay sends what the triggers wrote, as the signal path would.
    project.run("cloudevents_relay", "--once", models=excluding, sink=sink.url)
    received = [r.event for r in sink.wait_for(3)]
    assert [e.get_type() for e in received] == ["django.orm.post_save"] * 3
    assert {e.get_source() for e in received} == {"/shop"}
    received.sort(key=lambda event: event.get_subject())  # per subject in order
    assert [e.get_subject() for e in received] == [
        "DCE:shop.order/1",
        "DCE:shop.order/1",
        "DCE:shop.order/2",
    ]
    last = received[-1].get_data()
    assert last["data"] == {"id": 2, "reference": "B2", "total": "7.50"}
    assert last["db_table"] == "shop_order"
    assert last["signal_kwargs"]["created"] is True

    # The setting removed: no trigger, no function, nothing captured.
    fourth = project.migrate({})
    assert "RemoveConstraint" in fourth and "AddConstraint" not in fourth
    assert project.triggers() == [] and project.functions() == []
    project.sql(
        "INSERT INTO shop_order (reference, total, password, note) "
        "VALUES ('C3', 1, '', '')"
    )
    assert len(project.captured()) == 3
    # The setting back without a migration: missing.
    missing = project.run("check", "--database", "default", models=TRIGGERED)
    assert "dce_capture_shop_order_upd is missing" in missing

    # Migrating back puts them back.
    project.run("migrate", "shop", "0003", models={})
    assert project.triggers() == ALL


RENAMED = """
from django.db import models

class Purchase(models.Model):
    number = models.CharField(max_length=20{column})
    total = models.DecimalField(max_digits=8, decimal_places=2)
    password = models.CharField(max_length=128, blank=True)
    note = models.TextField(blank=True)
"""


def test_a_renamed_model_and_a_new_column_name_keep_their_triggers(project):
    project.migrate(TRIGGERED)
    models = project.path / "shop" / "models.py"
    purchases = {"shop.Purchase": {"capture": "trigger"}}
    # The model renamed (its table too): the old triggers go, new ones come.
    models.write_text(RENAMED.format(column=""))
    assert "RenameModel" in project.migrate(purchases, answers="y\n")
    # A column renamed (db_column): AlterField renames it after the triggers
    # are made, which find it by its new name when they first run.
    models.write_text(RENAMED.format(column=', db_column="no"'))
    assert "AlterField" in project.migrate(purchases)
    rows = project.sql(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'shop_purchase'::regclass "
        "AND NOT tgisinternal ORDER BY tgname"
    )
    assert [name for (name,) in rows] == [
        f"dce_capture_shop_purchase_{suffix}" for suffix in ("del", "ins", "upd")
    ]
    assert "dce_capture_shop_order_ins" not in project.functions()
    project.sql(
        "INSERT INTO shop_purchase (no, total, password, note) VALUES ('P', 2, '', '')"
    )
    [document] = project.captured()
    assert document["model"] == "shop.purchase"
    assert document["data"] == {"id": 1, "number": "P", "total": "2.00", "note": ""}
    assert "W009" not in project.run("check", "--database", "default", models=purchases)


def test_a_deleted_model_leaves_no_capture_function(project):
    project.migrate(TRIGGERED)
    assert len(project.functions()) == 3
    (project.path / "shop" / "models.py").write_text("")
    assert "DeleteModel" in project.migrate({})
    assert project.functions() == []
