"""Hostile input gets a short 4xx, never a 5xx: charsets, and a little fuzzing.

(Malformed chunked framing needs a real server: test_e2e.py sends it to gunicorn.)
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from encodings.aliases import aliases
from typing import Any

import pytest
from django.test import Client

from django_cloudevents_bridge.models import ReceivedEvent

pytestmark = pytest.mark.django_db(transaction=True)

RECEIVER = "/cloudevents/"
PUSH = "/cloudevents/pubsub/"
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "hostile-1",
    "ce-source": "/fuzz",
    "ce-type": "com.example.fuzz",
}
# Codecs Python knows that are no text charset: bytes-to-bytes codecs, and
# Python's own pseudo-encodings ("undefined" always raises UnicodeError).
NOT_TEXT = [
    "undefined",
    "rot13",
    "base64",
    "zlib",
    "hex",
    "bz2",
    "uu",
    "quopri",
    "idna",
    "punycode",
    "unicode_escape",
    "raw_unicode_escape",
    "no-such-charset",
]


def problem(response, status: int) -> str:
    """The reason of a short JSON error, asserting its form."""
    assert response.status_code == status, response.content[:300]
    reason = json.loads(response.content)["error"]
    assert 0 < len(reason) <= 200
    return reason


def push_envelope(data: bytes, attributes: dict[str, str]) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes}
    return json.dumps({"message": message, "subscription": "projects/p/s"}).encode()


# --- charsets ----------------------------------------------------------------------


@pytest.mark.parametrize("url", [RECEIVER, PUSH])
@pytest.mark.parametrize("charset", NOT_TEXT)
@pytest.mark.parametrize("body", [b"hello", b"\xff\xfe\x00+-"])
def test_a_charset_that_is_no_text_charset_is_a_400(url, charset, body):
    response = Client().generic(
        "POST",
        url,
        body,
        content_type=f"text/plain; charset={charset}",
        headers=HEADERS,
    )
    assert "charset" in problem(response, 400)
    assert not ReceivedEvent.objects.exists()


@pytest.mark.parametrize("charset", NOT_TEXT)
def test_a_pubsub_message_with_such_a_charset_is_a_400(charset):
    attributes = {
        **HEADERS,
        "content-type": f"text/plain; charset={charset}",
    }
    response = Client().generic(
        "POST",
        PUSH,
        push_envelope(b"hello", attributes),
        content_type="application/json",
    )
    assert "charset" in problem(response, 400)


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf-8", "Grüße"),
        ("ISO-8859-1", "Grüße"),
        ("utf-16", "Grüße"),
        ("utf-7", "a+b"),
    ],
)
def test_text_charsets_still_decode(charset, text):
    response = Client().generic(
        "POST",
        RECEIVER,
        text.encode(charset),
        content_type=f"text/plain; charset={charset}",
        headers=HEADERS,
    )
    assert response.status_code == 202
    stored = json.loads(ReceivedEvent.objects.get().event)
    assert stored["data"] == text


# --- fuzzing ---------------------------------------------------------------------

CASES = 400
CODECS = sorted(set(aliases.values()) | set(NOT_TEXT) | {"utf-8", "utf-7"})
CONTENT_TYPES = [
    "",
    "application/json",
    "application/json; charset=rot13",
    "text/plain",
    "text/plain; charset=",
    'text/plain; charset="utf-8',
    "text/plain; charset=utf-8; charset=undefined",
    "application/cloudevents+json",
    "application/cloudevents+json; charset=undefined",
    "application/cloudevents-batch+json",
    "application/cloudevents-batch+json;;;",
    "application/cloudevents+avro",
    "application/x-www-form-urlencoded; charset=zlib",
    "multipart/form-data; boundary=",
    "application/octet-stream",
    "a/b/c",
    "TEXT/PLAIN; CHARSET=BASE64",
]
CE_NAMES = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    "datacontenttype",
    "data",
    "ext",
    "Ünïcode",
    "a_b",
    "x" * 30,
]
JSON_OOPS = [
    b"NaN",
    b"1e999",
    b"-",
    b'{"a": 1, "a": 2}',
    b"[" * 5000 + b"]" * 5000,
    b'{"data_base64": null, "data": null}',
    b'"\\ud800"',
    b"\xef\xbb\xbf{}",
    b"null",
    b"[]",
    b"[null]",
    b"[[]]",
    b"{}",
]


def random_text(rng: random.Random, size: int = 12) -> str:
    """Header text as WSGI hands it over (latin-1), escapes and controls included."""
    pieces = [
        "%",
        "%ff",
        "%c3%28",
        "%00",
        '"',
        "\\",
        "\t",
        "\x7f",
        "\xe9",
        "1.0",
        "2018-04-05T17:31:00Z",
        "9999-99-99T99:99:99Z",
        "",
    ]
    out = []
    for _ in range(rng.randint(0, size)):
        if rng.random() < 0.5:
            out.append(rng.choice(pieces))
        else:
            out.append(chr(rng.randint(0x20, 0xFF)))
    return "".join(out)


def random_body(rng: random.Random, base: bytes) -> bytes:
    choice = rng.randint(0, 5)
    if choice == 0:
        return rng.choice(JSON_OOPS)
    data = bytearray(base)
    if choice == 1 and data:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 2:  # cut
        del data[rng.randint(0, len(data)) :]
    elif choice == 3:  # insert
        at = rng.randint(0, len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return bytes(data)


def base_requests() -> list[tuple[str, dict[str, str], str, bytes]]:
    """Well-formed requests in each mode: (url, headers, content type, body)."""
    event = {**{k[3:]: v for k, v in HEADERS.items()}, "data": {"a": 1}}
    named = {**event, "type": "testapp.Signup", "data": {"email": "a@b.c"}}
    return [
        (RECEIVER, HEADERS, "application/json", b'{"a": 1}'),
        (RECEIVER, HEADERS, "text/plain; charset=utf-8", "Grüße".encode()),
        (RECEIVER, HEADERS, "", b'{"email": "x"}'),
        (RECEIVER, {}, "application/cloudevents+json", json.dumps(named).encode()),
        (
            RECEIVER,
            {},
            "application/cloudevents-batch+json",
            json.dumps([event, {**event, "id": "2"}]).encode(),
        ),
        (
            PUSH,
            {},
            "application/json",
            push_envelope(b"hi", {**HEADERS, "content-type": "text/plain"}),
        ),
        (
            PUSH,
            {},
            "application/json",
            push_envelope(
                json.dumps(event).encode(),
                {"content-type": "application/cloudevents+json"},
            ),
        ),
        (PUSH, HEADERS, "application/json", b'{"message": {}}'),
    ]


def mutations(seed: int = 12) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """CASES requests: a base request with one to three random mutations."""
    rng = random.Random(seed)
    bases = base_requests()
    for _ in range(CASES):
        url, headers, content_type, body = rng.choice(bases)
        headers = dict(headers)
        extra: dict[str, Any] = {}
        for _ in range(rng.randint(1, 3)):
            kind = rng.randrange(7)
            if kind == 0:
                content_type = rng.choice(CONTENT_TYPES)
            elif kind == 1:
                charsets = CODECS if rng.random() < 0.5 else NOT_TEXT
                content_type = f"text/plain; charset={rng.choice(charsets)}"
            elif kind == 2:
                headers[f"ce-{rng.choice(CE_NAMES)}"] = random_text(rng)
            elif kind == 3 and headers:
                del headers[rng.choice(sorted(headers))]
            elif kind == 4:
                body = random_body(rng, body)
            elif kind == 5:
                extra["CONTENT_LENGTH"] = rng.choice(["-1", "abc", "1e3", "99999999"])
            else:
                content_type = random_text(rng, 20)
        extra["CONTENT_TYPE"] = content_type
        yield url, headers, {"body": body, **extra}


def test_fuzzed_requests_never_get_a_5xx():
    client = Client()
    statuses: dict[int, int] = {}
    for url, headers, request in mutations():
        body = request.pop("body")
        response = client.generic("POST", url, body, headers=headers, **request)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case = (url, headers, request, body[:200])
        assert response.status_code < 500, (case, response.content[:300])
        if response.status_code >= 400 and response.status_code != 404:
            problem(response, response.status_code)  # a short JSON reason
    # The mutations reached past the parser too, not only its first check.
    assert statuses.get(202, 0) + statuses.get(204, 0) > 0
    assert len(statuses) > 3


def test_every_python_codec_as_a_charset_is_answered_below_500():
    names = sorted(set(aliases) | set(aliases.values()) | set(NOT_TEXT))
    client = Client()
    # (Some are aliases of codecs this platform lacks, like mbcs: refused too.)
    for name in names:
        response = client.generic(
            "POST",
            RECEIVER,
            b"\xff\x00hello",
            content_type=f"text/plain; charset={name}",
            headers=HEADERS,
        )
        assert response.status_code in (202, 400), (name, response.content)
