"""Credentials taken out of text that is logged or stored (``last_error``, ``error``).

A sink's error page may echo the request it got, ``Authorization`` header and all;
an exception message may quote a URL with ``?token=...``. ``redact()`` replaces
what looks like a credential with ``[redacted]``: the exact credentials that were
sent (the caller knows them), ``Bearer``/``Basic``/... credentials, JWT-shaped
strings, and the values of ``key=value`` / ``key: value`` / ``"key": "value"``
pairs whose key names a secret (``authorization``, ``password``, ``token``,
``api_key``, ``secret``, ``cookie``, ...). It errs on the side of taking out too
much: the text is a diagnosis for a person, not data.

Every record of the package's logger goes through ``RedactingFilter``: its message
and its traceback (an exception's message can quote a URL with a token) are
redacted before any handler sees them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
MIN_SECRET = 4  # a shorter "secret" would take out ordinary words

_SCHEME = r"(?:bearer|basic|digest|negotiate)"
# A key that ends in a secret's name: "x-api-key", "password", "Authorization",
# "client_secret", "access_token", "smtp_pass" (not "Unauthorized",
# "tokens_used_by", "bypass").
_KEY = (
    r"(?:[\w.-]*?(?:authorization|auth|pass[_-]?word|passwd|pwd|secret|token|"
    r"api[_-]?key|access[_-]?key|private[_-]?key|credential|signature|"
    r"session[_-]?id|cookie)s?|(?:[\w.-]*?[_.-])?pass)(?![\w-])"
)
# A pair's value: a quoted string (escaped quotes and all), a flat [list] or
# {object}, or a bare word; after a scheme ("Token" too, as an Authorization
# value: Django REST framework's).
_VALUE = (
    rf"""(?:(?:token|{_SCHEME})\s+)?(?:"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|"""
    r"""\[[^\[\]]*\]?|\{[^{}]*\}?|[^\s&,;"'<>{}\[\]]+)"""
)
_PAIR = re.compile(
    rf"""(?P<key>(?<![\w.-])["']?{_KEY}["']?\s*[:=]\s*)(?P<value>{_VALUE})""",
    re.IGNORECASE,
)
_CREDENTIAL = re.compile(rf"\b(?P<scheme>{_SCHEME})\s+[\w\-.~+/]+=*", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+(?:\.[\w-]*)+")
_USERINFO = re.compile(r"(?<=//)[^/\s@:]*:[^/\s@]*@")  # https://user:password@host


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every credential in it replaced by ``[redacted]``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, REDACTED)
    text = _PAIR.sub(_pair, text)
    text = _CREDENTIAL.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    text = _USERINFO.sub(f"{REDACTED}@", text)
    return _JWT.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback, as text, before it is handled.

    The message is formatted and, if it holds a credential, replaced by its
    redacted text (``args`` emptied; otherwise ``msg`` and ``args`` are left as
    they are, for handlers that group by the template); an exception's
    traceback is formatted, redacted and kept as ``exc_text`` (which logging's
    ``Formatter`` prints), and ``exc_info`` is dropped so that no handler
    formats the raw exception again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(
                record.exc_info
            )
            record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_filter() -> None:
    """Put ``RedactingFilter`` on the package's logger (once)."""
    logging.getLogger("django_cloudevents_bridge").addFilter(_FILTER)


install_filter()


def sent_credentials(headers: Mapping[str, str]) -> list[str]:
    """The values of request headers that may be credentials, to ``redact()``.

    Those of headers named like a secret (``Authorization``, ``X-Api-Key``), and
    any value long enough to be a token; with the credential after a scheme
    (``Bearer <it>``) on its own too.
    """
    found = []
    for name, value in headers.items():
        if re.fullmatch(_KEY, name, re.IGNORECASE) or len(value) >= 16:
            found += [value, value.split(None, 1)[-1]]
    return found


def _pair(match: re.Match[str]) -> str:
    value = match["value"]
    if value.strip("\"'") == REDACTED:
        return match[0]
    return match["key"] + REDACTED
