"""Trigger manifests from registered handlers (checked against the real CRD)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from django_cloudevents_bridge import catalogue, events, filters
from django_cloudevents_bridge.targets import targets_for
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)
from tests import k8s_schema
from tests.conftest import need

# Triggers include subscription sources, which are rows.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def validators() -> dict:
    if not k8s_schema.CRD_DIR.is_dir():
        need("Knative CRDs", f"{k8s_schema.CRD_DIR} (set KNATIVE_CRDS) is missing")
    return k8s_schema.load_validators()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^django\.orm\.", {"prefix": {"type": "django.orm."}}),
        (r"^com\.shop\.paid$", {"exact": {"type": "com.shop.paid"}}),
        (r"\.created$", {"suffix": {"type": ".created"}}),
        (r"order", {"cesql": "type LIKE '%order%'"}),
        (r"a_b%c", {"cesql": "type LIKE '%a\\_b\\%c%'"}),
        (r"it's", {"cesql": "type LIKE '%it\\'s%'"}),
        (r"^com\.(a|b)\.", None),
        (r"^com\..*\.paid$", None),
        (r"^\d+$", None),
        (r"^", None),
        (r"", None),
        (r"x\$", {"cesql": "type LIKE '%x$%'"}),  # an escaped "$" is a character
    ],
)
def test_regex_to_filter(pattern, expected) -> None:
    assert catalogue.regex_filter(pattern) == expected


@pytest.mark.parametrize(
    "pattern", [r"^django\.orm\.", r"^com\.shop\.paid$", r"\.created$", "order", "a_b"]
)
@pytest.mark.parametrize(
    "type_",
    ["django.orm.post_save", "com.shop.paid", "x.created", "order", "a_b", "axb"],
)
def test_a_translated_regex_matches_what_the_regex_matches(pattern, type_) -> None:
    import re

    spec = catalogue.regex_filter(pattern)
    assert spec is not None
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": type_}
    assert filters.compile(spec).matches(event) is bool(re.search(pattern, type_))


@pytest.fixture
def handlers() -> Iterator[list[Any]]:
    registered: list[Any] = []

    def paid(event: Any) -> None: ...
    def everything(event: Any) -> None: ...
    def shop_eu(event: Any) -> None: ...

    register_group_handler(paid, r"^com\.shop\.order\.paid$")
    register_group_handler(everything, r"^com\.(shop|store)\.")
    register_group_handler(shop_eu, r"^com\.shop\.", filter={"exact": {"region": "eu"}})
    registered += [paid, everything, shop_eu]
    yield registered
    for handler in registered:
        unregister_group_handler(handler)


def command(*args: str) -> str:
    out = StringIO()
    call_command("cloudevents_triggers", "--service", "shop", *args, stdout=out)
    return out.getvalue()


def test_triggers_pass_the_crd_and_route_what_the_handlers_take(
    handlers, validators
) -> None:
    items = json.loads(command("--format", "json", "--namespace", "shop"))["items"]
    for item in items:
        assert k8s_schema.schema_errors(item, validators) == []
        assert item["spec"]["subscriber"]["ref"]["name"] == "shop"
        assert item["spec"]["subscriber"]["uri"] == "/cloudevents/"
    by_name = {item["metadata"]["name"]: item for item in items}
    paid = next(n for n in by_name if n.endswith("paid"))
    assert by_name[paid]["spec"]["filters"] == [
        {"exact": {"type": "com.shop.order.paid"}}
    ]
    eu = next(n for n in by_name if n.endswith("shop-eu"))
    assert by_name[eu]["spec"]["filters"] == [
        {"prefix": {"type": "com.shop."}},
        {"exact": {"region": "eu"}},
    ]
    everything = next(n for n in by_name if n.endswith("everything"))
    assert "filters" not in by_name[everything]["spec"]  # a regex it cannot say
    signup = next(n for n in by_name if n.endswith("testapp-signup"))
    assert by_name[signup]["spec"]["filters"] == [{"exact": {"type": "testapp.Signup"}}]


def test_every_event_a_handler_takes_passes_its_trigger(handlers, db) -> None:
    """Cluster routing never drops what in-process dispatch would handle (the
    subscriptions target reads its sources' types from the database)."""
    triggers = [t for t, _ in catalogue.triggers(service="shop")]
    for type_, extensions in [
        ("com.shop.order.paid", {}),
        ("com.shop.order.paid", {"region": "eu"}),
        ("com.store.x", {}),
        ("testapp.Signup", {}),
    ]:
        event = events.new(type_, source="/s", extensions=extensions or None)
        if not targets_for(event):
            continue
        assert any(
            filters.compile(t["spec"].get("filters", [])).matches(event)
            for t in triggers
        ), type_


def test_yaml_has_a_comment_for_what_cannot_be_expressed(handlers) -> None:
    text = command()
    assert "cannot be expressed as a filter" in text
    assert "'^com\\\\.(shop|store)\\\\.'" in text or "(shop|store)" in text
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert documents == json.loads(command("--format", "json"))["items"]


def test_without_pyyaml_the_default_is_a_json_list(handlers, monkeypatch) -> None:
    """PyYAML is no dependency: a fresh install prints JSON, which kubectl takes."""
    import sys

    from django.core.management import CommandError

    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    listing = json.loads(command())
    assert listing["kind"] == "List" and listing["items"]
    with pytest.raises(CommandError, match="PyYAML"):
        command("--format", "yaml")
