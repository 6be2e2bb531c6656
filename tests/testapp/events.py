"""Named events of the test app (autodiscovered: tests.testapp is installed)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError

from django_cloudevents_bridge import BaseEvent, ValidationError, handler

# What the handlers did, in order: (handler, event name, data). Cleared by a fixture.
calls: list[tuple[str, str, object]] = []


class Signup(BaseEvent):
    """A user signed up; pages may log it through the HTTP log view."""

    http_log = True
    data_keys = ("email",)  # for the catalogue (manage.py cloudevents_eventtypes)

    def clean(self) -> None:
        self.require_data_keys(self.data_keys)
        if "@" not in str(self.data["email"]):
            raise ValidationError("email is not an address", code="invalid")
        self.data["email"] = self.data["email"].lower()

    @handler
    def welcome(self) -> None:
        calls.append(("welcome", self.name, self.data))

    @handler
    def count(self) -> None:
        calls.append(("count", self.name, self.data))


class Purchase(BaseEvent):
    """Not opted in to HTTP logging; clean() raises Django's own ValidationError."""

    data_schema = {  # for the catalogue
        "type": "object",
        "required": ["sku", "quantity"],
        "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
    }

    def clean(self) -> None:
        self.require_data_keys(["sku", "quantity"])
        if int(self.data["quantity"]) < 1:
            raise DjangoValidationError({"quantity": "must be at least 1"})


class GiftPurchase(Purchase):
    """Inherits Purchase's clean(); adds a handler method."""

    @handler
    def wrap(self) -> None:
        calls.append(("wrap", self.name, self.data))


class Order(BaseEvent):
    """An inline handler and an always-deferred one (a slow mailer)."""

    def clean(self) -> None:
        self.require_data_keys(["sku"])

    @handler
    def reserve(self) -> None:
        calls.append(("reserve", self.name, self.data))

    @handler(deferred=True)
    def confirm(self) -> None:
        calls.append(("confirm", self.name, self.data))


class Refund(BaseEvent):
    """Handlers narrowed by Subscriptions API filters: the EU desk sees only
    events whose ``region`` extension is ``eu``; the ledger sees every one."""

    @handler(filter={"exact": {"region": "eu"}})
    def eu_desk(self) -> None:
        calls.append(("eu_desk", self.name, self.data))

    @handler
    def ledger(self) -> None:
        calls.append(("ledger", self.name, self.data))
