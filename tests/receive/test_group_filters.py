"""Group handlers with a Subscriptions API filter, besides (or instead of) the
type regex; handlers pinned to exact types are looked up by type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_cloudevents_bridge import events, filters
from django_cloudevents_bridge.targets import targets_for
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)

# targets_for() reads which types subscription sources have.
pytestmark = pytest.mark.django_db


@pytest.fixture
def register() -> Iterator[Callable[..., Callable[..., Any]]]:
    registered: list[Any] = []

    def add(name: str, group: str = "", **options: Any) -> Callable[..., Any]:
        def handler(event: Any) -> None:
            pass

        handler.__qualname__ = f"filtered.{name}"
        register_group_handler(handler, group, **options)
        registered.append(handler)
        return handler

    yield add
    for handler in registered:
        unregister_group_handler(handler)


def reached(type_: str, **extensions: str) -> list[str]:
    event = events.new(type_, source="/shop", extensions=extensions or None)
    return [
        target.name.rsplit(".", 1)[-1]
        for target in targets_for(event)
        if target.name.startswith("group:") and ".filtered." in target.name
    ]


def test_a_filter_instead_of_a_regex(register) -> None:
    register("paid", filter={"exact": {"type": "com.shop.order.paid"}})
    register("orders", filter={"prefix": {"type": "com.shop.order."}})
    register(
        "eu", filter=[{"prefix": {"type": "com.shop."}}, {"exact": {"region": "eu"}}]
    )
    assert reached("com.shop.order.paid") == ["paid", "orders"]
    assert reached("com.shop.order.paid", region="eu") == ["paid", "orders", "eu"]
    assert reached("com.shop.order.sent", region="eu") == ["orders", "eu"]
    assert reached("com.other") == []


def test_regex_and_filter_must_both_match(register) -> None:
    register("both", r"\.order\.", filter={"cesql": "EXISTS region"})
    assert reached("com.shop.order.paid") == []
    assert reached("com.shop.order.paid", region="us") == ["both"]
    assert reached("com.shop.invoice", region="us") == []


def test_registration_order_holds_across_indexed_and_scanned(register) -> None:
    register("first", r"^com\.shop\.")
    register("second", filter={"exact": {"type": "com.shop.x"}})  # indexed
    register("third", filter={"suffix": {"type": ".x"}})  # scanned
    register("fourth", filter={"any": [{"exact": {"type": "com.shop.x"}}]})  # indexed
    assert reached("com.shop.x") == ["first", "second", "third", "fourth"]
    assert reached("com.shop.y") == ["first"]


def test_unregister_and_register_again(register) -> None:
    handler = register("paid", filter={"exact": {"type": "com.shop.paid"}})
    register_group_handler(handler, filter={"exact": {"type": "com.shop.paid"}})
    assert reached("com.shop.paid") == ["paid"]  # the same registration once
    unregister_group_handler(handler)
    assert reached("com.shop.paid") == []
    register_group_handler(handler, filter={"exact": {"type": "com.shop.paid"}})
    assert reached("com.shop.paid") == ["paid"]


def test_a_bad_filter_fails_at_registration(register) -> None:
    with pytest.raises(filters.InvalidFilter):
        register("bad", filter={"exact": {"type": ""}})
    with pytest.raises(ValueError, match="a group pattern or a filter"):
        register("none")


def test_as_a_decorator(register) -> None:
    @register_group_handler(filter={"exact": {"type": "com.shop.decorated"}})
    def decorated(event: Any) -> None:
        pass

    try:
        names = [t.name for t in targets_for(events.new("com.shop.decorated"))]
        assert any(name.endswith(".decorated") for name in names)
    finally:
        unregister_group_handler(decorated)
