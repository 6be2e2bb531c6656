"""Emit overhead: ``Question.objects.create()`` with and without the bridge.

One row per call, on a SQLite file and on PostgreSQL, each variant twice: in
autocommit, and inside ``transaction.atomic()`` as a view under ATOMIC_REQUESTS
runs it. The difference matters for the outbox: in autocommit the model row and
the outbox row are two commits, inside ``atomic()`` they are one.

Every variant runs in every round on every database, in an order that rotates from
round to round, so drift on a shared machine hits all of them alike. Each round's
time is divided by the same round's no-bridge time on the same database in the
same transaction mode; the table shows the median of those ratios, which is the
number to compare between runs and machines.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connections, transaction
from django.db.models.signals import post_save
from django.test import override_settings
from django.utils import timezone

from bench import seed
from bench.models import Question
from bench.relay import sample_events, truncate
from bench.settings import POSTGRES
from bench.sink import Process
from django_cloudevents_bridge.bindings import jsonformat
from django_cloudevents_bridge.emit import outbox
from django_cloudevents_bridge.emit.handlers import locmem
from django_cloudevents_bridge.emit.sources import send_cloudevent
from django_cloudevents_bridge.models import OutboxEvent, RelayHeartbeat

WARMUP_OPS = 50
LABELS = {"default": "SQLite", POSTGRES: "PostgreSQL"}
MODES = ("autocommit", "atomic")
TARGET = 0.25  # DESIGN: default settings within 0.25x of the floor, PostgreSQL
OUTBOX = "bridge, outbox, default settings"  # the variant TARGET is about
FLOOR = "floor: the outbox INSERT alone"  # a prebuilt row, no event built
BACKGROUND_WAIT = 30.0  # seconds for the background sender to finish a batch


@dataclass(frozen=True)
class Variant:
    """One way of running ``create()``: ``enabled()`` sets it up for a batch."""

    label: str
    enabled: Callable[[], AbstractContextManager[Any]]
    posts: bool = False  # every create POSTs one event to the sink
    outbox: bool = False  # writes outbox rows: emptied after every batch
    vendors: tuple[str, ...] = ("sqlite", "postgresql")  # databases it runs on


@dataclass
class Cell:
    """What one variant measured on one database: per round, and per create."""

    round_ns: list[int] = field(default_factory=list)
    create_ns: list[int] = field(default_factory=list)


@contextmanager
def bridge(
    delivery: str,
    handler: str,
    options: dict[str, Any],
    outbox_options: dict[str, Any] | None = None,
) -> Iterator[None]:
    """The bridge connected as its README says, delivering through ``handler``."""
    # override_settings sends setting_changed, which resets the shared handler.
    with override_settings(
        CLOUDEVENTS_DELIVERY=delivery,
        CLOUDEVENTS_HANDLER=handler,
        CLOUDEVENTS_HANDLER_OPTIONS=options,
        CLOUDEVENTS_OUTBOX=outbox_options,
    ):
        post_save.connect(send_cloudevent, sender=Question)
        try:
            yield
        finally:
            post_save.disconnect(send_cloudevent, sender=Question)
            locmem.sent.clear()


@contextmanager
def floor() -> Iterator[None]:
    """The outbox row alone: one prebuilt row INSERTed from ``post_save``.

    No event is built or encoded and no setting is read: the outbox's plain
    INSERT (``outbox.write()`` goes through ``dce_outbox_write()`` on
    PostgreSQL, for its lock bound), so this is the least that any outbox
    written in the caller's transaction costs here. Each row still gets its own
    id and its object's subject, as the bridge's do (the indexes cost what they
    cost the bridge). The outbox variant's distance from it is the bridge's own Python.
    """
    [event] = sample_events(1)
    document = jsonformat.to_json(event).decode()
    ids = itertools.cycle([str(uuid.uuid4()) for _ in range(4096)])
    prefix = f"DCE:{Question._meta.label_lower}/"

    def insert(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
        connection = connections[using]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        returning = connection.features.can_return_columns_from_insert
        values = (next(ids), event.get_source(), event.get_type())
        with connection.cursor() as cursor:
            cursor.execute(
                outbox._insert_sql(using, returning),
                (*values, f"{prefix}{instance.pk}", document, now, now),
            )

    post_save.connect(insert, sender=Question, weak=False)
    try:
        yield
    finally:
        post_save.disconnect(insert, sender=Question)


@contextmanager
def seed_design() -> Iterator[None]:
    """django-signals-cloudevents: build and POST in ``save()``, a new connection."""
    post_save.connect(seed.send_cloudevent, sender=Question)
    try:
        yield
    finally:
        post_save.disconnect(seed.send_cloudevent, sender=Question)


def variants(sink_url: str) -> list[Variant]:
    """The variants, baseline first."""
    http = {"sink": sink_url, "timeout": (1.0, 5.0), "oidc_token_path": None}
    return [
        Variant("no bridge", nullcontext),
        Variant(
            "bridge, on_commit, http",
            partial(bridge, "on_commit", "http", http),
            posts=True,
        ),
        Variant(
            "bridge, on_commit, locmem",
            partial(bridge, "on_commit", "locmem", {}),
        ),
        # The default settings: one more INSERT in the caller's transaction (on
        # PostgreSQL its trigger queues the relay's NOTIFY) and nothing else.
        Variant(OUTBOX, partial(bridge, "outbox", "http", http), outbox=True),
        Variant(FLOOR, floor, outbox=True),
        # BACKGROUND on: after each commit the background thread of this process
        # POSTs the row (written claimed by it) and records it; the creates share
        # the GIL and the database with it. What it has not finished when the
        # timed creates end is waited for, untimed, before the next variant.
        # PostgreSQL only: on SQLite the claim (SELECT, then UPDATE, in a
        # deferred transaction) fails with "database is locked" while the creates
        # write, so most events would be left to the relay and the number would
        # not mean what it says.
        Variant(
            "bridge, outbox, BACKGROUND on",
            partial(bridge, "outbox", "http", http, {"BACKGROUND": True}),
            posts=True,
            outbox=True,
            vendors=("postgresql",),
        ),
        Variant("seed: requests.post in save()", seed_design, posts=True),
    ]


TABLES = (Question, OutboxEvent, RelayHeartbeat)


def create_tables(aliases: Sequence[str]) -> None:
    """The bench's tables, and the outbox's as its migrations create it."""
    notify = importlib.import_module(
        "django_cloudevents_bridge.migrations.0004_relay_heartbeat"
    )
    writer = importlib.import_module(
        "django_cloudevents_bridge.migrations.0010_outbox_writer"
    )
    for alias in aliases:
        drop_tables([alias])  # left behind by an interrupted run
        with connections[alias].schema_editor() as editor:
            for model in TABLES:
                editor.create_model(model)
            # The NOTIFY trigger (PostgreSQL): part of every outbox INSERT.
            notify._on_postgresql(notify.CREATE)(None, editor)
            # The function save() writes its row through (PostgreSQL).
            writer._on_postgresql(writer.CREATE)(None, editor)


def drop_tables(aliases: Sequence[str]) -> None:
    for alias in aliases:
        connection = connections[alias]
        with connection.cursor() as cursor:
            for model in TABLES:
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"DROP TABLE IF EXISTS {table}")


def measure(alias: str, ops: int, atomic: bool = False) -> tuple[int, list[int]]:
    """Run ``ops`` creates on ``alias``: total and per-create nanoseconds.

    With ``atomic``, each create in its own ``transaction.atomic()`` block.
    """
    objects = Question.objects.db_manager(alias)
    clock = time.perf_counter_ns
    block = partial(transaction.atomic, using=alias) if atomic else nullcontext
    latencies = []
    started = clock()
    for _ in range(ops):
        before = clock()
        with block():
            objects.create(question_text="What's new?", pub_date=timezone.now())
        latencies.append(clock() - before)
    return clock() - started, latencies


def settle(alias: str, variant: Variant) -> None:
    """Untimed, after a batch: let the background sender finish, empty the outbox."""
    if variant.outbox:
        if not outbox.background.wait(BACKGROUND_WAIT):
            logging.getLogger("django_cloudevents_bridge").error(
                "bench: the background sender did not finish in %.0f s",
                BACKGROUND_WAIT,
            )
        truncate(alias)


Key = tuple[str, str, int]  # database alias, transaction mode, variant index


def run(
    aliases: Sequence[str], variants: Sequence[Variant], rounds: int, ops: int
) -> tuple[dict[Key, Cell], int]:
    """Interleaved rounds after a warm-up one: the cells, and the POSTs expected."""
    combos = [(mode, i) for mode in MODES for i in range(len(variants))]
    cells = {(alias, *combo): Cell() for alias in aliases for combo in combos}
    posts = 0
    for number in range(-1, rounds):
        count = WARMUP_OPS if number < 0 else ops
        shift = max(number, 0)  # no variant always runs first, or right after another
        order = [combos[(shift + i) % len(combos)] for i in range(len(combos))]
        for alias in aliases[::-1] if number % 2 else aliases:
            for mode, index in order:
                variant = variants[index]
                if connections[alias].vendor not in variant.vendors:
                    continue
                atomic = mode == "atomic"
                with variant.enabled():
                    measure(alias, 1, atomic)  # a connection opened here is not timed
                    settle(alias, variant)
                    gc.collect()
                    elapsed, latencies = measure(alias, count, atomic)
                    settle(alias, variant)
                posts += (count + 1) * variant.posts
                if number >= 0:
                    cells[alias, mode, index].round_ns.append(elapsed)
                    cells[alias, mode, index].create_ns.extend(latencies)
        progress("." if number >= 0 else "warm-up ")
    progress("\n")
    return cells, posts


def progress(text: str) -> None:
    """A dot per round on a terminal; nothing in a log."""
    if sys.stderr.isatty():
        print(text, end="", file=sys.stderr, flush=True)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median, third quartile."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, middle, high


def ratio(cell: Cell, baseline: Cell) -> tuple[float, float, float]:
    """Quartiles over rounds of (this round's time / the baseline's)."""
    pairs = zip(cell.round_ns, baseline.round_ns, strict=True)
    return quartiles([ns / base for ns, base in pairs])


def rows(
    database: str,
    mode: str,
    cells: Sequence[Cell],
    variants: Sequence[Variant],
    ops: int,
) -> Iterator[str]:
    """One table row per variant; the first variant is the baseline."""
    for variant, cell in zip(variants, cells, strict=True):
        if not cell.round_ns:
            continue  # not run on this database
        rate = statistics.median(ops * 1e9 / ns for ns in cell.round_ns)
        latency = statistics.median(cell.create_ns) / 1000
        low, middle, high = ratio(cell, cells[0])
        yield (
            f"  {database:<11}{mode:<11}{variant.label:<33}{rate:>10,.0f}"
            f"{latency:>10.0f}{middle:>8.2f}x  {low:.2f}-{high:.2f}"
        )


class Problems(logging.Handler):
    """Keeps what the bridge logs: it never raises, so a failure would be silent."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def main(
    aliases: Sequence[str],
    server: Process,
    rounds: int,
    ops: int,
    *,
    skipped: str | None = None,
) -> tuple[list[str], bool]:
    """Measure every variant on every database; the table's lines, and success."""
    choices = variants(server.url)
    os.environ["K_SINK"] = server.url  # where the seed design reads it
    problems = Problems()
    logger = logging.getLogger("django_cloudevents_bridge")
    logger.addHandler(problems)
    try:
        cells, expected = run(aliases, choices, rounds, ops)
        delivered = server.count()
    finally:
        logger.removeHandler(problems)
    lines = [
        "Emit overhead: Question.objects.create(), one row per call, in autocommit"
        " and each in its own atomic() block",
        f"{rounds} rounds x {ops} creates per variant, mode and database,"
        " interleaved, after a warm-up round",
        "sink: a keep-alive HTTP/1.1 server answering 202, in a subprocess",
        "",
        f"  {'database':<11}{'mode':<11}{'variant':<33}{'creates/s':>10}"
        f"{'us/create':>10}{'x base':>9}  IQR of x",
    ]
    for alias in aliases:
        for mode in MODES:
            group = [cells[alias, mode, i] for i in range(len(choices))]
            lines += rows(LABELS[alias], mode, group, choices, ops)
    if skipped:
        lines.append(f"  {'PostgreSQL':<11}{skipped}")
    lines += [
        "",
        "creates/s: median over rounds. us/create: median of every timed create.",
        "x base: median over rounds of (round time / the same round's no-bridge time",
        "on the same database in the same mode); lower is better.",
        "floor: the same outbox row, prebuilt, INSERTed from post_save with no event",
        "built or encoded: the least any outbox in the caller's transaction costs",
        "(on PostgreSQL with the NOTIFY trigger, as the bridge's own INSERT).",
        "default settings: CLOUDEVENTS_OUTBOX unset (BACKGROUND off: no thread, no",
        "HTTP in this process; the relay sends). BACKGROUND on: PostgreSQL only; on",
        "SQLite its claim fails with 'database is locked' while the creates write.",
    ]
    if POSTGRES in aliases:
        labels = [variant.label for variant in choices]
        index, lowest = labels.index(OUTBOX), labels.index(FLOOR)
        for mode in MODES:
            base = cells[POSTGRES, mode, 0]
            value = ratio(cells[POSTGRES, mode, index], base)[1]
            alone = ratio(cells[POSTGRES, mode, lowest], base)[1]
            verdict = "met" if value - alone <= TARGET else "MISSED"
            lines.append(
                f"Target default settings within {TARGET}x of the floor on"
                f" PostgreSQL, {mode}: {value:.2f}x vs {alone:.2f}x, {verdict}."
            )
    lines += [
        f"The sink accepted {delivered} of {expected} POSTs; the bridge logged"
        f" {len(problems.records)} warnings or errors.",
    ]
    lines += [f"  bridge log: {r.getMessage()}" for r in problems.records[:3]]
    return lines, delivered == expected and not problems.records
