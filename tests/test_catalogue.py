"""The event catalogue: Knative EventTypes (checked against the real CRD schemas)
and JSON Schemas of the data (checked against events the bridge really sends)."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.files.base import ContentFile
from django.core.management import call_command
from jsonschema import Draft202012Validator, FormatChecker

from django_cloudevents_bridge import catalogue, log
from tests import k8s_schema
from tests.conftest import need
from tests.testapp.events import Purchase
from tests.testapp.models import Article, Choice, Everything, Profile, Question, Tag


@pytest.fixture(scope="module")
def validators() -> dict:
    if not k8s_schema.CRD_DIR.is_dir():
        need("Knative CRDs", f"{k8s_schema.CRD_DIR} (set KNATIVE_CRDS) is missing")
    return k8s_schema.load_validators()


def command(*args: str) -> str:
    out = StringIO()
    call_command("cloudevents_eventtypes", *args, stdout=out)
    return out.getvalue()


def validate(schema: dict[str, Any], data: Any) -> None:
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(data)


@pytest.mark.parametrize("version", catalogue.VERSIONS)
def test_event_types_pass_the_crd_schema(validators, version) -> None:
    listing = json.loads(command("--api-version", version, "--namespace", "shop"))
    items = listing["items"]
    assert listing["kind"] == "List" and items
    names = [item["metadata"]["name"] for item in items]
    assert len(names) == len(set(names))
    for item in items:
        assert k8s_schema.schema_errors(item, validators) == []
        assert k8s_schema.DNS_LABEL.match(item["metadata"]["name"])
        assert item["spec"]["reference"]["kind"] == "Broker"


def test_every_registered_model_signal_and_named_event_is_listed(settings) -> None:
    items = json.loads(command("--reply-type", "com.example.reply"))["items"]
    described = {
        (
            attr(item, "type"),
            attr(item, "djangomodel"),
        )
        for item in items
    }
    for label, options in settings.CLOUDEVENTS_MODELS.items():
        model_name = label.split(".")[1].lower()
        for signal in options.get("signals", ["post_save", "post_delete"]):
            assert (f"django.orm.{signal}", model_name) in described
    assert ("testapp.Signup", None) in described
    assert ("testapp.Purchase", None) in described
    assert ("com.example.reply", None) in described
    choice = next(i for i in items if attr(i, "djangomodel") == "choice")
    assert attr(choice, "subject") == "DCE:testapp.choice/{pk}"
    assert attr(choice, "source") == settings.CLOUDEVENTS_SOURCE


def attr(item: dict[str, Any], name: str) -> str | None:
    for attribute in item["spec"]["attributes"]:
        if attribute["name"] == name:
            return attribute.get("value")
    return None


def test_v1beta2_carries_the_schema_inline(settings) -> None:
    items = json.loads(command("--api-version", "v1beta2"))["items"]
    choice = next(
        i for i in items if i["metadata"]["name"] == "testapp-choice-post-save"
    )
    assert choice["spec"]["type"] == "django.orm.post_save"
    schema = json.loads(choice["spec"]["schemaData"])
    assert set(schema["properties"]["data"]["properties"]) == {
        "id",
        "question",
        "choice_text",
        "votes",
    }


@pytest.mark.django_db(transaction=True)
def test_model_schema_accepts_what_the_bridge_sends(sent_events) -> None:
    schema = catalogue.model_data_schema(Choice, {})
    question = Question.objects.create(
        question_text="q", pub_date=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    )
    sent_events.clear()
    choice = Choice.objects.create(question=question, choice_text="c")
    choice.delete()
    assert len(sent_events) == 2
    for event in sent_events:
        validate(schema, event.get_data())
    wrong = sent_events[0].get_data()
    wrong["data"]["votes"] = "many"
    with pytest.raises(Exception, match="is not of type 'integer'"):
        validate(schema, wrong)


@pytest.mark.django_db(transaction=True)
def test_schema_of_every_field_type_accepts_the_sent_row(
    sent_events, tmp_path, settings
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    question = Question.objects.create(
        question_text="q", pub_date=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    )
    row = Everything(
        char="ü", text="t", slug="s", email="a@example.com", url="https://e.x/",
        integer=-5, big=2**62, small=7, positive=8, positive_big=2**40,
        positive_small=9, floating=1.5, decimal=decimal.Decimal("12345678.1234"),
        boolean=True, nullable_boolean=None, date=datetime.date(2026, 2, 3),
        datetime=datetime.datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.UTC),
        time=datetime.time(4, 5, 6, 7), duration=datetime.timedelta(days=1, seconds=2),
        uuid=uuid.uuid4(), json={"nested": [1, None]}, binary=b"\x00\xff",
        ip="2001:db8::1", question=question, article=Article.objects.create(title="a"),
        tag=Tag.objects.create(name="t"),
    )  # fmt: skip
    row.file.save("hello.txt", ContentFile(b"hi"), save=False)
    sent_events.clear()
    row.save()
    empty = Everything.objects.create()  # the nulls and blanks
    schema = catalogue.model_data_schema(Everything, {})
    [first, second] = sent_events
    validate(schema, first.get_data())
    validate(schema, second.get_data())
    assert empty.pk
    fields = schema["properties"]["data"]["properties"]
    assert fields["decimal"]["type"] == ["string", "null"]
    assert fields["article"]["format"] == "uuid"  # a one-to-one: its target's pk
    assert fields["tag"]["type"] == ["string", "null"]
    assert fields["datetime"]["format"] == "date-time"


def test_secret_and_excluded_fields_are_not_in_the_schema() -> None:
    schema = catalogue.model_data_schema(Profile, {"exclude": ["nickname"]})
    fields = set(schema["properties"]["data"]["properties"])
    assert "username" in fields
    assert not fields & {"password", "api_token", "client_secret", "nickname"}
    chosen = catalogue.model_data_schema(Profile, {"fields": ["username", "password"]})
    assert set(chosen["properties"]["data"]["properties"]) == {"username"}
    anything = catalogue.model_data_schema(Profile, {"data": "tests.x.y"})
    assert anything["properties"]["data"] == {}  # a data function: unknown


@pytest.mark.django_db(transaction=True)
def test_named_event_schemas(sent_events) -> None:
    kinds = {kind.type: kind for kind in catalogue.named_kinds()}
    signup = kinds["testapp.Signup"]  # declares data_keys
    assert signup.schema is not None and signup.schema["required"] == ["email"]
    assert (
        signup.description
        == "A user signed up; pages may log it through the HTTP log view."
    )
    log("testapp.Signup", {"email": "a@example.com"})
    validate(signup.schema, sent_events[-1].get_data())
    with pytest.raises(Exception, match="'email' is a required property"):
        validate(signup.schema, {"name": "x"})
    purchase = kinds["testapp.Purchase"]  # declares data_schema
    assert purchase.schema == Purchase.data_schema
    log("testapp.Purchase", {"sku": "A-1", "quantity": 2})
    validate(purchase.schema, sent_events[-1].get_data())
    assert kinds["testapp.GiftPurchase"].schema == Purchase.data_schema  # inherited


def test_schema_files_and_urls(tmp_path: Path) -> None:
    out = command(
        "--schemas-dir", str(tmp_path), "--schema-url", "https://schemas.example/x/"
    )
    items = json.loads(out)["items"]
    choice = next(
        i for i in items if i["metadata"]["name"] == "testapp-choice-post-save"
    )
    url = attr(choice, "dataschema")
    assert url == "https://schemas.example/x/testapp-choice-post-save.json"
    written = json.loads((tmp_path / "testapp-choice-post-save.json").read_text())
    Draft202012Validator.check_schema(written)
    assert written["properties"]["db_table"] == {"const": "testapp_choice"}


def test_yaml_output_is_the_same_resources() -> None:
    documents = list(yaml.safe_load_all(command("--format", "yaml")))
    assert documents == json.loads(command())["items"]


def test_long_names_stay_dns_labels() -> None:
    name = catalogue.resource_name("com.example." + "very-long." * 10 + "Type")
    assert len(name) <= 63 and k8s_schema.DNS_LABEL.match(name)
    assert name != catalogue.resource_name("com.example." + "very-long." * 10 + "X")
