"""The e-mail channel: Django's e-mail backend, one connection per batch.

The connection is a mailer of ``MAILERS`` on Django 6.1 and later (option
``mailer``; default: the default mailer), or ``EMAIL_BACKEND`` before (option
``backend``, a dotted path): see ``_mail``. A connection that cannot be made
(misconfigured) fails each delivery of the batch, to be retried.

Messages are ``EmailMessage``/``EmailMultiAlternatives`` (built by watches and
subscriptions), stored as JSON (never pickled): subject, body, addresses,
headers, alternatives and attachments given as ``(filename, content, mimetype)``.
Each message gets ``List-Unsubscribe`` with a signed one-click URL and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) when it is sent.

A worker that crashes between the SMTP server's acceptance of a message and the
ledger's update resends that one message (at most one per crash: each outcome is
recorded before the next message goes out).
"""

from __future__ import annotations

import base64
import contextlib
import smtplib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage, EmailMultiAlternatives

from .. import _mail, unsubscribe
from . import BaseChannel, Outcome, PermanentFailure

if TYPE_CHECKING:
    from ...models import Delivery

_ADDRESSES = ("to", "cc", "bcc", "reply_to")
_SUBTYPES = ("content_subtype", "mixed_subtype", "alternative_subtype")


def _content(content: Any) -> dict[str, str]:
    if isinstance(content, bytes):
        return {"content_base64": base64.b64encode(content).decode()}
    if isinstance(content, str):
        return {"content": content}
    raise TypeError(f"e-mail content must be str or bytes, not {type(content)}")


def _uncontent(item: dict[str, Any]) -> str | bytes:
    if "content_base64" in item:
        return base64.b64decode(item["content_base64"])
    return str(item["content"])


class Channel(BaseChannel):
    """E-mail through a mailer of ``MAILERS`` (``mailer``: its name; Django 6.1+)
    or a backend (``backend``: a dotted path; default ``EMAIL_BACKEND``)."""

    def __init__(
        self, backend: str | None = None, *, mailer: str | None = None
    ) -> None:
        # Only the types here: get_channel() runs in record()'s caller, which a
        # missing mailer must not break (check() and send() report it).
        for name, value in (("backend", backend), ("mailer", mailer)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"the e-mail channel's {name} must be a string")
        self.backend = backend
        self.mailer = mailer

    def check(self) -> None:
        _mail.check(self.mailer, self.backend)

    def dump(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, EmailMessage):
            raise TypeError(f"the e-mail channel sends EmailMessage, not {message!r}")
        attachments = []
        for attachment in message.attachments:
            if not isinstance(attachment, tuple):  # a MIMEBase: no JSON for it
                raise TypeError(
                    "e-mail attachments must be (filename, content, mimetype)"
                )
            filename, content, mimetype = attachment
            attachments.append(
                {"filename": filename, "mimetype": mimetype, **_content(content)}
            )
        alternatives = [
            {"mimetype": mimetype, **_content(content)}
            for content, mimetype in getattr(message, "alternatives", [])
        ]
        return {
            "subject": str(message.subject),
            "body": str(message.body),
            "from_email": str(message.from_email),
            **{name: [str(a) for a in getattr(message, name)] for name in _ADDRESSES},
            "headers": {str(k): str(v) for k, v in message.extra_headers.items()},
            "alternatives": alternatives,
            "attachments": attachments,
            **{n: getattr(message, n) for n in _SUBTYPES if hasattr(message, n)},
        }

    def load(self, data: dict[str, Any]) -> EmailMessage:
        message = EmailMultiAlternatives(
            subject=data["subject"],
            body=data["body"],
            from_email=data["from_email"],
            headers=dict(data.get("headers") or {}),
            **{name: list(data.get(name) or []) for name in _ADDRESSES},
        )
        for item in data.get("alternatives") or []:
            message.attach_alternative(_uncontent(item), item["mimetype"])
        for item in data.get("attachments") or []:
            message.attach(item["filename"], _uncontent(item), item["mimetype"])
        for name in _SUBTYPES:
            if name in data:
                setattr(message, name, data[name])
        return message

    def send(
        self, deliveries: Sequence[Delivery]
    ) -> Iterator[tuple[Delivery, Outcome]]:
        try:
            connection = _mail.connection(self.mailer, self.backend)
            links = unsubscribe.issue(deliveries)
        except Exception as err:  # no mailer, no BASE_URL: each delivery fails
            for delivery in deliveries:
                yield delivery, err
            return
        opened = False
        try:
            for delivery in deliveries:
                try:
                    message = self.message(delivery, links[delivery.pk])
                except Exception as err:  # an edited row: no retry mends it
                    yield delivery, PermanentFailure(f"{type(err).__name__}: {err}")
                    continue
                try:
                    if not opened:
                        connection.open()
                        opened = True
                    connection.send_messages([message])
                except Exception as err:
                    if not isinstance(err, smtplib.SMTPRecipientsRefused):
                        # The connection may be broken: the next message opens another.
                        with contextlib.suppress(Exception):
                            connection.close()
                        opened = False
                    yield delivery, permanent(err)
                else:
                    yield delivery, None
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def message(self, delivery: Delivery, link: str) -> EmailMessage:
        """The delivery's message with its one-click unsubscribe headers."""
        message = self.load(delivery.message)
        message.extra_headers["List-Unsubscribe"] = f"<{link}>"
        message.extra_headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if not message.recipients():
            raise ValueError("the message has no recipients")
        return message


def permanent(error: BaseException) -> BaseException:
    """The error, as a PermanentFailure if the server refused the message for good
    (5xx for every recipient, or for the data)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        if codes and all(code >= 500 for code in codes):
            return PermanentFailure(f"recipients refused: {error.recipients}")
    if isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500:
        return PermanentFailure(f"message refused: {error}")
    return error
