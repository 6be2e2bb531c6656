"""Source models for the tests: the tutorial's polls plus every field type."""

import datetime
import decimal
import uuid

from django.contrib.postgres.fields import (
    ArrayField,
    DateRangeField,
    DateTimeRangeField,
    DecimalRangeField,
    IntegerRangeField,
)
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save

from django_cloudevents_bridge import CapturingManager, send_cloudevent


class Question(models.Model):
    question_text = models.CharField(max_length=200)
    pub_date = models.DateTimeField("date published")

    def __str__(self) -> str:
        return self.question_text


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE)
    choice_text = models.CharField(max_length=200)
    votes = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.choice_text


# The seed package's README way: connected by hand, not through CLOUDEVENTS_MODELS.
post_save.connect(send_cloudevent, sender=Question)
post_delete.connect(send_cloudevent, sender=Question)


class Tag(models.Model):
    name = models.CharField(max_length=50, primary_key=True)

    def __str__(self) -> str:
        return self.name


class Article(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=100)
    tags = models.ManyToManyField(Tag, blank=True)

    def __str__(self) -> str:
        return self.title


class Profile(models.Model):
    """Secrets that must never leave the database, plus an excluded field."""

    username = models.CharField(max_length=50)
    password = models.CharField(max_length=128)
    api_token = models.CharField(max_length=64, blank=True)
    client_secret = models.CharField(max_length=64, blank=True)
    nickname = models.CharField(max_length=50, blank=True)
    ssn = models.CharField(max_length=11, blank=True)

    def __str__(self) -> str:
        return self.username


class Summary(models.Model):
    title = models.CharField(max_length=100)
    body = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.title


def summary_data(instance: Summary, signal_kwargs: dict) -> dict:
    return {"title": instance.title.upper(), "length": len(instance.body)}


class EveryFieldType(models.Model):
    """One of every field type Django ships (outside contrib.postgres and gis)."""

    char = models.CharField(max_length=20, blank=True)
    text = models.TextField(blank=True)
    slug = models.SlugField(blank=True)
    email = models.EmailField(blank=True)
    url = models.URLField(blank=True)
    integer = models.IntegerField(null=True)
    big = models.BigIntegerField(null=True)
    small = models.SmallIntegerField(null=True)
    positive = models.PositiveIntegerField(null=True)
    positive_big = models.PositiveBigIntegerField(null=True)
    positive_small = models.PositiveSmallIntegerField(null=True)
    floating = models.FloatField(null=True)
    decimal = models.DecimalField(max_digits=12, decimal_places=4, null=True)
    boolean = models.BooleanField(default=False)
    nullable_boolean = models.BooleanField(null=True)
    date = models.DateField(null=True)
    datetime = models.DateTimeField(null=True)
    time = models.TimeField(null=True)
    duration = models.DurationField(null=True)
    uuid = models.UUIDField(null=True)
    json = models.JSONField(null=True)
    binary = models.BinaryField(null=True)
    file = models.FileField(blank=True)
    image = models.ImageField(blank=True)
    file_path = models.FilePathField(path="/tmp", blank=True)
    ip = models.GenericIPAddressField(null=True)
    question = models.ForeignKey(Question, null=True, on_delete=models.SET_NULL)
    article = models.OneToOneField(Article, null=True, on_delete=models.SET_NULL)
    tag = models.ForeignKey(Tag, null=True, on_delete=models.SET_NULL)

    class Meta:
        abstract = True


class Everything(EveryFieldType):
    class Meta:
        verbose_name_plural = "everything"

    def __str__(self) -> str:
        return f"everything {self.pk}"


post_save.connect(send_cloudevent, sender=Everything)


def every_value() -> dict:
    """A value for each of EveryFieldType's own fields (not its links)."""
    return {
        "char": "ü",
        "text": "line\nbreak",
        "slug": "a-slug",
        "email": "a@example.com",
        "url": "https://example.com/",
        "integer": -5,
        "big": 2**62,
        "small": 7,
        "positive": 8,
        "positive_big": 2**40,
        "positive_small": 9,
        "floating": 1.5,
        "decimal": decimal.Decimal("12345678.1234"),
        "boolean": True,
        "nullable_boolean": None,
        "date": datetime.date(2026, 2, 3),
        "datetime": datetime.datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.UTC),
        "time": datetime.time(4, 5, 6),
        "duration": datetime.timedelta(days=1, seconds=2, microseconds=3),
        "uuid": uuid.uuid4(),
        "json": {"nested": [1, "two", None], "n": 1.5},
        "binary": b"\x00\xffbytes",
        "ip": "2001:db8::1",
    }


m2m_changed.connect(send_cloudevent, sender=Article.tags.through)


class StoredForm(models.Model):
    """Values the database computes: a generated column and a database default."""

    price = models.DecimalField(max_digits=8, decimal_places=2)
    doubled = models.GeneratedField(
        expression=models.F("price") * 2,
        output_field=models.DecimalField(max_digits=10, decimal_places=2),
        db_persist=True,
    )
    label = models.CharField(max_length=20, db_default="new")

    def __str__(self) -> str:
        return f"stored form {self.pk}"


post_save.connect(send_cloudevent, sender=StoredForm)
post_delete.connect(send_cloudevent, sender=StoredForm)


class PostgresStoredForm(models.Model):
    """PostgreSQL's own field types, whose event data must equal the stored row."""

    decimals = ArrayField(
        models.DecimalField(max_digits=6, decimal_places=2), null=True
    )
    integers = IntegerRangeField(null=True)
    days = DateRangeField(null=True)
    amounts = DecimalRangeField(null=True, default_bounds="[]")
    moments = DateTimeRangeField(null=True)
    clock = models.TimeField(null=True)

    class Meta:
        required_db_vendor = "postgresql"

    def __str__(self) -> str:
        return f"postgres stored form {self.pk}"


post_save.connect(send_cloudevent, sender=PostgresStoredForm)


class CapturedParent(models.Model):
    name = models.CharField(max_length=20, blank=True)

    class Meta:
        required_db_vendor = "postgresql"

    def __str__(self) -> str:
        return self.name


class Captured(EveryFieldType):
    """Captured by database triggers (tests/settings.py, on PostgreSQL only).

    Every field type, PostgreSQL's own, a secret-looking column, an excluded one,
    and a parent whose deletion cascades.
    """

    # Links to models of every database: nothing done when those rows go (on
    # SQLite, where this model has no table, a cascade would query it).
    question = models.ForeignKey(
        Question, models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )
    article = models.OneToOneField(
        Article, models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )
    tag = models.ForeignKey(
        Tag, models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )
    parent = models.ForeignKey(CapturedParent, null=True, on_delete=models.CASCADE)
    api_token = models.CharField(max_length=64, blank=True)
    notes = models.TextField(blank=True)  # excluded in the settings
    decimals = ArrayField(
        models.DecimalField(max_digits=6, decimal_places=2), null=True
    )
    integers = IntegerRangeField(null=True)
    moments = DateTimeRangeField(null=True)
    doubled = models.GeneratedField(
        expression=models.F("integer") * 2,
        output_field=models.IntegerField(),
        db_persist=True,
    )

    class Meta:
        required_db_vendor = "postgresql"

    def __str__(self) -> str:
        return f"captured {self.pk}"


class Entry(models.Model):
    """Bulk writes emit events (CapturingManager; tests/settings.py registers it)."""

    title = models.CharField(max_length=50)
    amount = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    secret_key = models.CharField(max_length=50, blank=True)

    objects = CapturingManager()

    def __str__(self) -> str:
        return self.title


# Subscribers that are not users (tests/subscriptions): a string-keyed team of
# UUID-keyed members, registered with the resolver by the tests.
class Team(models.Model):
    slug = models.CharField(max_length=50, primary_key=True)

    def __str__(self) -> str:
        return self.slug


class Member(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    email = models.EmailField(blank=True)
    # A user's key, not a foreign key: testapp has no migrations, and its
    # tables are created before auth's.
    user_id = models.IntegerField(null=True, blank=True)
    teams = models.ManyToManyField(Team, related_name="members", blank=True)
    follows = models.ManyToManyField(Team, related_name="followers", blank=True)

    def __str__(self) -> str:
        return str(self.id)
