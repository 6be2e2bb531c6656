"""Trigger capture (PostgreSQL): the outbox row written by the database itself.

A model with ``"capture": "trigger"`` in ``CLOUDEVENTS_MODELS`` gets three
triggers, written in the same statement as the change: AFTER INSERT and AFTER
DELETE per statement (transition tables: one INSERT ... SELECT for a whole
``bulk_create()``), AFTER UPDATE per row (old and new row paired exactly, so the
changed fields are known). They catch what signals miss: bulk operations,
``QuerySet.update()``, raw SQL, cascades, other programs.

The triggers travel as a :class:`CaptureTrigger` in the model's
``Meta.constraints``, added at start-up from the settings (:func:`install`). So
the project's own ``makemigrations`` writes ``AddConstraint`` /
``RemoveConstraint`` operations for them, and ``migrate`` leaves exactly the
triggers the settings ask for: a renamed column, a changed ``fields`` /
``exclude`` (or ``CLOUDEVENTS_SENSITIVE_FIELDS``) changes the constraint, which
Django drops and creates again; a removed setting removes it.

A trigger writes a row whose ``source`` is empty and whose ``event`` is a small
JSON document of the stored values (field names, not column names); the relay
turns it into the CloudEvent the signal path sends (:func:`document`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.constraints import BaseConstraint

from .. import conf, events
from ..bindings import jsonformat
from . import changes, serialize, sources
from ._stored import UNCONVERTED

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor

    from ..models import OutboxEvent

TRIGGER = "trigger"
SIGNALS = "signals"
CAPTURE_MODES = (SIGNALS, TRIGGER)
# json_build_object() takes at most 100 arguments: 50 fields per call.
_PER_CALL = 50
# Field kinds whose JSON form PostgreSQL would change: how the trigger writes them.
_AS_TEXT = "text"  # numeric: as text, so every stored digit (and the scale) stays
_AS_BASE64 = "base64"  # bytea: base64, as the signal path sends bytes
_AS_RANGE = "range"  # a range: {"lower", "upper", "bounds"} or {"empty": true}


def capture_mode(options: Any) -> str:
    """A ``CLOUDEVENTS_MODELS`` entry's capture mode: ``signals`` unless it says."""
    if isinstance(options, dict):
        return str(options.get("capture", SIGNALS))
    return SIGNALS


def captured_models() -> list[tuple[type[models.Model], dict[str, Any]]]:
    """The models ``CLOUDEVENTS_MODELS`` captures with triggers, with their options
    (those trigger capture cannot work for are left out: see ``unfit``)."""
    found = []
    for label, options in conf.models().items():
        if capture_mode(options) != TRIGGER:
            continue
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # reported by the system check cloudevents_bridge.E005
        if unfit(model) is None:
            found.append((model, options))
    return found


def unfit(model: type[models.Model]) -> str | None:
    """Why trigger capture cannot work for a model (None: it can).

    Its triggers see one table's rows, so every field must be in the model's
    own table, with a one-column primary key for the subject.
    """
    opts = model._meta
    if opts.proxy or opts.parents:
        return "a proxy or multi-table inheritance child keeps fields elsewhere"
    if opts.auto_created:
        return "an auto-created many-to-many through model has no migrations"
    if opts.app_label == "django_cloudevents_bridge":
        return "the bridge's own tables are never captured"
    if opts.pk is None or not getattr(opts.pk, "column", None):
        return "a composite primary key has no one column for the subject"
    return None


def install() -> None:
    """Put each trigger-captured model's :class:`CaptureTrigger` in its constraints.

    Called once the models are loaded (``AppConfig.ready()``), before any command
    reads them: ``makemigrations`` then sees the triggers the settings ask for.
    A constraint of ours on a model no longer captured is taken out again.
    """
    wanted = {model: trigger_for(model, opts) for model, opts in captured_models()}
    for model in apps.get_models():
        opts = model._meta
        mine = [c for c in opts.constraints if isinstance(c, CaptureTrigger)]
        if not mine and model not in wanted:
            continue
        kept = [c for c in opts.constraints if not isinstance(c, CaptureTrigger)]
        if model in wanted:
            kept.append(wanted[model])
        opts.constraints = kept
        # ModelState.from_model() reads constraints only if Meta declared them.
        opts.original_attrs["constraints"] = kept


def trigger_for(model: type[models.Model], options: dict[str, Any]) -> CaptureTrigger:
    """The :class:`CaptureTrigger` for a model and its ``CLOUDEVENTS_MODELS`` entry."""
    opts = model._meta
    plan = serialize.plan_for(model, options)
    return CaptureTrigger(
        name=trigger_name(opts.label_lower),
        model=opts.label_lower,
        table=opts.db_table,
        pk=str(opts.pk.column),
        fields=[[name, str(field.column), _kind(field)] for name, field, _ in plan],
        previous=bool(options.get(changes.PREVIOUS)),
    )


def trigger_name(label_lower: str) -> str:
    """``dce_capture_<app>_<model>``, shortened with a hash past 50 characters
    (PostgreSQL's names stop at 63, and ``_ins`` / ``_upd`` / ``_del`` follow)."""
    name = "dce_capture_" + label_lower.replace(".", "_")
    if len(name) <= 50:
        return name
    digest = hashlib.sha256(label_lower.encode()).hexdigest()[:8]
    return f"{name[:41]}_{digest}"


def _kind(field: Any) -> str:
    """How the trigger writes a field's value (see ``_AS_*``); "" as it is."""
    if getattr(field, "generated", False):
        field = field.output_field
    if field.is_relation and field.concrete:
        field = field.target_field
    kind = field.get_internal_type()
    if kind == "DecimalField":
        return _AS_TEXT
    if kind == "BinaryField":
        return _AS_BASE64
    if kind.endswith("RangeField"):
        return _AS_RANGE
    return ""


class CaptureTrigger(BaseConstraint):
    """A model's capture triggers, as a constraint the migration framework tracks.

    Not a constraint on the data: ``validate()`` accepts everything. Its
    arguments describe the triggers completely (the columns and how each is
    written), so any change that needs new triggers changes the constraint.
    """

    def __init__(
        self,
        *,
        name: str,
        model: str,
        table: str,
        pk: str,
        fields: Sequence[Sequence[str]],
        previous: bool = False,
    ) -> None:
        super().__init__(name=name)
        self.model = model
        self.table = table
        self.pk = pk
        self.fields = [list(field) for field in fields]
        self.previous = previous  # updates carry the old row's fields too

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        path = f"{type(self).__module__}.{type(self).__name__}"
        kwargs: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "table": self.table,
            "pk": self.pk,
            "fields": self.fields,
        }
        if self.previous:
            kwargs["previous"] = True
        return path, (), kwargs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaptureTrigger):
            return NotImplemented
        return self.deconstruct() == other.deconstruct()

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<CaptureTrigger: {self.model} ({len(self.fields)} fields)>"

    def validate(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to validate: the triggers record changes, they refuse none."""

    # "" where there is nothing to run: the schema editor skips empty SQL.

    def constraint_sql(
        self,
        model: type[models.Model] | None,
        schema_editor: BaseDatabaseSchemaEditor | None,
    ) -> str:
        # In CREATE TABLE: the triggers need the table, so they come after it.
        sql = self.create_sql(model, schema_editor)
        if sql and schema_editor is not None:
            schema_editor.deferred_sql.append(sql)
        return ""

    def create_sql(
        self,
        model: type[models.Model] | None,
        schema_editor: BaseDatabaseSchemaEditor | None,
    ) -> str:
        return self._sql(create_sql, model, schema_editor)

    def remove_sql(
        self,
        model: type[models.Model] | None,
        schema_editor: BaseDatabaseSchemaEditor | None,
    ) -> str:
        return self._sql(drop_sql, model, schema_editor)

    def _sql(
        self,
        build: Callable[[CaptureTrigger, str, Any], str],
        model: type[models.Model] | None,
        schema_editor: BaseDatabaseSchemaEditor | None,
    ) -> str:
        """``build``'s SQL for the table, on PostgreSQL; elsewhere nothing to do."""
        if schema_editor is None or model is None:
            return ""
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return build(self, model._meta.db_table, schema_editor.quote_name)


def create_sql(trigger: CaptureTrigger, table: str, qn: Any) -> str:
    """The functions and triggers of one model, on ``table`` (as it is named now).

    The function bodies use the trigger's own column list: PL/pgSQL resolves
    them when a trigger first runs, so a column renamed later in the same
    migration is found by its new name.
    """
    statements = []
    for name, (body, when, each) in functions(trigger, qn).items():
        quoted = qn(name)
        statements += [
            f"CREATE OR REPLACE FUNCTION {quoted}() RETURNS trigger LANGUAGE plpgsql "
            f"AS $dce${body}$dce$",
            f"DROP TRIGGER IF EXISTS {quoted} ON {qn(table)}",
            f"CREATE TRIGGER {quoted} {when} ON {qn(table)} {each} "
            f"EXECUTE FUNCTION {quoted}()",
        ]
    return ";\n".join(statements)


def functions(trigger: CaptureTrigger, qn: Any) -> dict[str, tuple[str, str, str]]:
    """Each trigger's name (also its function's): the function body, when it
    fires, and for what (each row, or each statement with a transition table)."""
    from ..models import OutboxEvent

    outbox = qn(OutboxEvent._meta.db_table)
    columns = ", ".join(
        qn(name)
        for name in (
            "event_id",
            "source",
            "type",
            "subject",
            "event",
            "status",
            "attempts",
            "created_at",
            "next_attempt_at",
            "locked_by",
            "last_error",
        )
    )
    pending = OutboxEvent.Status.PENDING.value

    def values(row: str, kind: str, extra: str) -> str:
        prefix = _text(f"DCE:{trigger.model}/")
        subject = f"left({prefix} || {row}.{qn(trigger.pk)}::text, 1024)"
        document = (
            f"json_build_object('model', {_text(trigger.model)}{extra}, "
            f"'data', {_object(trigger.fields, row, qn)})::text"
        )
        return (
            f"gen_random_uuid()::text, '', 'django.orm.{kind}', {subject}, "
            f"{document}, '{pending}', 0, statement_timestamp(), "
            "statement_timestamp(), '', ''"
        )

    changed = ", ".join(
        f"CASE WHEN OLD.{qn(column)} IS DISTINCT FROM NEW.{qn(column)} "
        f"THEN {_text(name)} END"
        for name, column, _how in trigger.fields
    )
    changed_fields = (
        f"array_remove(ARRAY[{changed}]::text[], NULL)" if changed else "'{}'::text[]"
    )
    inserted = values("n", "post_save", ", 'created', true")
    old = f", 'old', {_object(trigger.fields, 'OLD', qn)}" if trigger.previous else ""
    updated = values(
        "NEW", "post_save", f", 'created', false, 'changed', {changed_fields}{old}"
    )
    deleted = values("o", "post_delete", "")
    bodies = {
        "ins": (
            f"INSERT INTO {outbox} ({columns}) SELECT {inserted} FROM dce_new n",
            "AFTER INSERT",
            "REFERENCING NEW TABLE AS dce_new FOR EACH STATEMENT",
        ),
        "upd": (
            f"INSERT INTO {outbox} ({columns}) VALUES ({updated})",
            "AFTER UPDATE",
            "FOR EACH ROW",
        ),
        "del": (
            f"INSERT INTO {outbox} ({columns}) SELECT {deleted} FROM dce_old o",
            "AFTER DELETE",
            "REFERENCING OLD TABLE AS dce_old FOR EACH STATEMENT",
        ),
    }
    return {
        f"{trigger.name}_{suffix}": (f" BEGIN {body}; RETURN NULL; END ", when, each)
        for suffix, (body, when, each) in bodies.items()
    }


def problems(trigger: CaptureTrigger, using: str) -> list[str]:
    """What the database on ``using`` lacks of the trigger: [] if it is as wanted.

    A trigger or function missing or disabled, or a function whose body is not
    the one the settings give (a setting changed without a new migration).
    """
    connection = connections[using]
    wanted = functions(trigger, connection.ops.quote_name)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, p.prosrc, t.tgenabled FROM pg_proc p LEFT JOIN "
            "pg_trigger t ON t.tgfoid = p.oid AND t.tgrelid = to_regclass(%s) "
            "WHERE p.proname = ANY(%s)",
            [connection.ops.quote_name(trigger.table), list(wanted)],
        )
        found = {name: (source, enabled) for name, source, enabled in cursor}
    found_problems = []
    for name, (body, _when, _each) in wanted.items():
        if name not in found or found[name][1] is None:
            found_problems.append(f"{name} is missing")
        elif found[name][0] != body:
            found_problems.append(f"{name} is out of date")
        elif found[name][1] == "D":
            found_problems.append(f"{name} is disabled")
    return found_problems


def drop_sql(trigger: CaptureTrigger, table: str, qn: Any) -> str:
    """Drop a model's triggers and their functions."""
    statements = []
    for suffix in ("ins", "upd", "del"):
        each = qn(f"{trigger.name}_{suffix}")
        statements += [
            f"DROP TRIGGER IF EXISTS {each} ON {qn(table)}",
            f"DROP FUNCTION IF EXISTS {each}()",
        ]
    return ";\n".join(statements)


def after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """``post_migrate``: the capture functions of deleted models go too."""
    drop_orphans(using)


def drop_orphans(using: str) -> list[str]:
    """Drop capture functions no trigger uses any more; their names.

    ``DeleteModel`` drops a captured model's table, and its triggers with it,
    but not their functions (a constraint is not removed from a deleted model).
    Run after ``migrate`` (``post_migrate``). A function a later migration needs
    again is made again (``CREATE OR REPLACE``).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.proname LIKE %s AND "
            "pg_function_is_visible(p.oid) AND p.prorettype = 'trigger'::regtype "
            "AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid) "
            "ORDER BY p.proname",
            ["dce\\_capture\\_%"],
        )
        names = [name for (name,) in cursor.fetchall()]
        for name in names:
            quoted = connection.ops.quote_name(name)
            cursor.execute(f"DROP FUNCTION IF EXISTS {quoted}()")
    return names


def _text(value: str) -> str:
    """A SQL string literal (names come from models, but quote them anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _object(fields: Sequence[Sequence[str]], row: str, qn: Any) -> str:
    """``json_build_object(...)`` of the fields, merged as jsonb past 50 fields."""
    parts = [
        f"{_text(name)}, {_value(f'{row}.{qn(column)}', kind)}"
        for name, column, kind in fields
    ]
    calls = [
        "json_build_object(" + ", ".join(parts[start : start + _PER_CALL]) + ")"
        for start in range(0, len(parts), _PER_CALL)
    ] or ["json_build_object()"]
    if len(calls) == 1:
        return calls[0]
    return "(" + " || ".join(f"{call}::jsonb" for call in calls) + ")::json"


def _value(column: str, kind: str) -> str:
    if kind == _AS_TEXT:
        return f"{column}::text"
    if kind == _AS_BASE64:
        return f"translate(encode({column}, 'base64'), chr(10), '')"
    if kind == _AS_RANGE:
        bounds = (
            f"(CASE WHEN lower_inc({column}) THEN '[' ELSE '(' END || "
            f"CASE WHEN upper_inc({column}) THEN ']' ELSE ')' END)"
        )
        return (
            f"CASE WHEN {column} IS NULL THEN NULL WHEN isempty({column}) THEN "
            f"'{{\"empty\": true}}' ELSE json_build_object('lower', lower({column}), "
            f"'upper', upper({column}), 'bounds', {bounds})::text END"
        )
    return column


# The relay's side: a captured row -> the CloudEvent.


def is_captured(row: OutboxEvent) -> bool:
    """True for a row a capture trigger wrote (its ``source`` is the relay's)."""
    return not row.source


def document(row: OutboxEvent) -> str:
    """A captured row's CloudEvent in the JSON event format, as the relay sends it."""
    return jsonformat.to_json(to_event(row)).decode()


def _sent_form(
    stored: dict[str, Any], plan: Sequence[tuple[str, Any, Any]], connection: Any
) -> dict[str, Any]:
    """A trigger's JSON of a row's fields as the signal path's ``data`` has them."""
    data: dict[str, Any] = {}
    for name, _field, convert in plan:
        if name not in stored:
            continue
        value = stored[name]
        if value is not None:
            with contextlib.suppress(*UNCONVERTED):  # then sent as it is
                value = convert(value, connection)
        data[name] = serialize.to_json_safe(value)
    return data


def to_event(row: OutboxEvent) -> events.CloudEvent:
    """The CloudEvent the signal path would send for a captured row.

    Same type, subject, extensions, data layout and field names; each value
    goes through the field's own conversion, so it reads as the signal path
    writes it. ``source`` is the relay's (``K_SOURCE``, ``CLOUDEVENTS_SOURCE``);
    ``signal_kwargs`` has no ``update_fields`` or ``raw`` (both null); an update
    also carries ``changed_fields`` (and ``previous_values`` where the model
    asks). Fields the settings now leave out (or that look like secrets) are
    left out here too.
    """
    captured = json.loads(row.event)
    model: type[models.Model] = apps.get_model(captured["model"])
    opts = model._meta
    using = row._state.db or DEFAULT_DB_ALIAS
    options = conf.models().get(opts.label) or {}
    plan = serialize.plan_for(model, options)
    connection = connections[using]
    data = _sent_form(captured["data"], plan, connection)
    signal_kwargs: dict[str, Any] = {"using": using}
    if "created" in captured:
        signal_kwargs = {
            "created": captured["created"],
            "update_fields": None,
            "raw": None,
            "using": using,
        }
    payload: dict[str, Any] = {
        "data": data,
        "signal_kwargs": signal_kwargs,
        "db_table": opts.db_table,
    }
    if "changed" in captured:
        changed = [name for name in captured["changed"] if name in data]
        payload[changes.CHANGED] = changed
        if "old" in captured and options.get(changes.PREVIOUS):
            old = _sent_form(captured["old"], plan, connection)
            payload[changes.PREVIOUS] = {name: old.get(name) for name in changed}
    return events.new(
        row.type,
        id=row.event_id,
        time=row.created_at,
        subject=row.subject,
        extensions=sources.model_extensions(opts, data),
        data=payload,
    )
