"""The receiver's parsing, through the real view: vectors, spec examples, rejects.

Every request goes through ``Client(enforce_csrf_checks=True)`` to the receiver at
``/cloudevents/``; a group handler registered for every type records what a
dispatch target really gets (the SDK event).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.test import Client

from django_cloudevents_bridge import events
from django_cloudevents_bridge.bindings import http
from django_cloudevents_bridge.events import CloudEvent
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONFORMANCE = Path(__file__).parents[3] / "shared" / "cloudevents-spec" / "conformance"
URL = "/cloudevents/"
STRUCTURED = "application/cloudevents+json; charset=UTF-8"
BATCH = "application/cloudevents-batch+json; charset=UTF-8"
BASIC = {
    "ce-specversion": "1.0",
    "ce-type": "com.example.someevent",
    "ce-source": "/mycontext",
    "ce-id": "A234-1234-1234",
}
EVENT = {
    "specversion": "1.0",
    "type": "com.example.someevent",
    "source": "/mycontext",
    "id": "A234-1234-1234",
}


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def received() -> Iterator[list[CloudEvent]]:
    """The events a group handler for every type was called with, in order."""
    calls: list[CloudEvent] = []

    def record(event: CloudEvent) -> None:
        calls.append(event)

    register_group_handler(record, group=".")
    yield calls
    unregister_group_handler(record)


def post(
    client: Client,
    body: bytes | str = b"",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
):
    """POST raw bytes; no Content-Type at all when ``content_type`` is None."""
    headers = dict(headers or {})
    extra.setdefault("CONTENT_TYPE", content_type or "")
    if isinstance(body, str):
        body = body.encode()
    return client.generic("POST", URL, body, headers=headers, **extra)


def post_json(client: Client, document: Any, content_type: str = STRUCTURED):
    return post(client, json.dumps(document), content_type)


def attributes_of(event: CloudEvent) -> dict[str, str]:
    """Every attribute in its canonical string form (as a header would carry it)."""
    return {
        name: events.canonical(value)
        for name, value in event.get_attributes().items()
        if value is not None
    }


def assert_problem(response, status: int) -> None:
    """A short JSON reason, never an HTML page or a traceback."""
    assert response.status_code == status, response.content[:300]
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert 0 < len(body["error"]) <= 200
    assert "Traceback" not in body["error"]
    assert not any(name.lower().startswith("ce-") for name in response.headers)


# --- conformance vectors ------------------------------------------------------


def load_vectors(name: str) -> list[dict[str, Any]]:
    # BaseLoader: every scalar stays a string ("1.0", not 1.0; time not a datetime).
    with open(CONFORMANCE / name, encoding="utf-8") as file:
        return [doc for doc in yaml.load_all(file, Loader=yaml.BaseLoader) if doc]


def conformance_request(
    vector: dict[str, Any], mode: str
) -> tuple[bytes, str | None, dict[str, str]]:
    """Body, Content-Type and headers as cloudevents/conformance's pkg/http builds.

    Binary: the Data bytes as body, ``ce-<attr>`` headers with TrimSpace'd values
    (not percent-encoded), Content-Type from datacontenttype. Structured: a JSON
    envelope of the trimmed attributes with ``data`` set to Data parsed as JSON,
    sent as ``application/cloudevents+json; charset=UTF-8``. Both: the transport
    extensions as plain headers; empty values are left out.
    """
    context = dict(vector["ContextAttributes"])
    extensions = context.pop("Extensions", None) or {}
    attributes = {
        name: value.strip()
        for name, value in {**context, **extensions}.items()
        if value.strip()
    }
    data = vector.get("Data", "")
    headers = {
        name: value.strip()
        for name, value in (vector.get("TransportExtensions") or {}).items()
        if value.strip()
    }
    if mode == "structured":
        envelope: dict[str, Any] = dict(attributes)
        if data:
            envelope["data"] = json.loads(data)
        return json.dumps(envelope).encode(), STRUCTURED, headers
    content_type = attributes.pop("datacontenttype", None)
    for name, value in attributes.items():
        headers[f"ce-{name}"] = value
    return data.encode("utf-8"), content_type, headers


def expected_attributes(vector: dict[str, Any]) -> dict[str, str]:
    context = dict(vector["ContextAttributes"])
    extensions = context.pop("Extensions", None) or {}
    return {
        name: value.strip()
        for name, value in {**context, **extensions}.items()
        if value.strip()
    }


def expected_data(vector: dict[str, Any], mode: str) -> Any:
    """JSON parsed, text kept as text, anything else as bytes; untyped data is
    JSON if it parses (as the SDKs send and read dict data), else bytes."""
    data = vector.get("Data", "")
    if mode == "structured":
        return json.loads(data) if data else None
    media = vector["ContextAttributes"].get("datacontenttype", "").split(";")[0]
    if not data:
        return None
    if media.strip().endswith("json") or (not media.strip() and is_json(data)):
        return json.loads(data)
    if media.startswith("text/"):
        return data
    return data.encode("utf-8")


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def conformance_cases() -> list[Any]:
    cases = []
    for name in ("v1.yaml", "v1_minimum.yaml"):
        for index, vector in enumerate(load_vectors(name)):
            mode = vector.get("Mode") or "binary"  # the tool's default
            ident = vector["ContextAttributes"]["id"]
            cases.append(
                pytest.param(vector, mode, id=f"{name}-{index}-{ident}-{mode}")
            )
            # The same event in the other mode, where the tool can build it (its
            # structured mode needs JSON data).
            other = "binary" if mode == "structured" else "structured"
            if other == "binary" or is_json(vector.get("Data", "") or "null"):
                cases.append(
                    pytest.param(vector, other, id=f"{name}-{index}-{ident}-{other}")
                )
    return cases


def test_the_vectors_are_there() -> None:
    assert len(load_vectors("v1.yaml")) == 2
    assert len(load_vectors("v1_minimum.yaml")) == 6


@pytest.mark.parametrize(("vector", "mode"), conformance_cases())
def test_conformance_vector(client, received, vector, mode) -> None:
    body, content_type, headers = conformance_request(vector, mode)
    response = post(client, body, content_type, headers)
    assert response.status_code == 202, response.content
    assert len(received) == 1
    event = received[0]
    # Same attributes in both modes: binary maps datacontenttype to Content-Type.
    assert attributes_of(event) == expected_attributes(vector)
    data = event.get_data()
    want = expected_data(vector, mode)
    assert data == want
    assert type(data) is type(want)


def substitute(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def feature_scenarios() -> list[Any]:
    """Each example row of each Scenario Outline in the .feature file."""
    text = (CONFORMANCE / "http-protocol-binding.feature").read_text("utf-8")
    cases = []
    for outline in text.split("Scenario Outline:")[1:]:
        title = outline.splitlines()[0].strip()
        request, data = re.findall(r'"""\n(.*?)\n\s*"""', outline, re.DOTALL)
        table = re.search(r"Then the attributes are:\n(.*?)\n\s*And", outline, re.S)
        assert table
        rows = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.group(1).splitlines()
        ]
        examples = outline.split("Examples:")[1].strip().splitlines()
        placeholder = examples[0].strip().strip("|").strip()
        for line in examples[1:]:
            fill = {f"<{placeholder}>": line.strip().strip("|").strip()}
            attributes = {key: substitute(value, fill) for key, value in rows[1:]}
            cases.append(
                pytest.param(
                    substitute(textwrap.dedent(request), fill),
                    attributes,
                    json.loads(data),
                    id=substitute(title, fill),
                )
            )
    return cases


def test_the_feature_has_both_outlines() -> None:
    ids = [case.id for case in feature_scenarios()]
    assert ids == [
        "Binary content mode (application/json)",
        "Binary content mode (application/json; charset=utf-8)",
        "Structured content mode (application/cloudevents+json)",
        "Structured content mode (application/cloudevents+json; charset=utf-8)",
    ]


@pytest.mark.parametrize(("request_text", "attributes", "data"), feature_scenarios())
def test_feature_scenario(client, received, request_text, attributes, data) -> None:
    head, _, body = request_text.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    assert request_line.startswith("POST ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    # The test client sets Content-Length itself; Host is the transport's business.
    assert int(headers.pop("Content-Length")) == len(body.encode())
    headers.pop("Host")
    content_type = headers.pop("Content-Type")
    response = post(client, body, content_type, headers)
    assert response.status_code == 202, response.content
    (event,) = received
    assert attributes_of(event) == attributes
    assert event.get_data() == data


# --- spec examples --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),  # http binding 3.1.3.2
        ("Euro%20%e2%82%ac%20%f0%9f%98%80", "Euro € 😀"),  # lower case accepted
        ("%2520", "%20"),  # exactly one round of decoding
        ("Hello%20World%21", "Hello World!"),  # unnecessarily encoded '!'
        ('"Euro%20%E2%82%AC"', "Euro €"),  # an RFC 7230 quoted-string
        (r'"say \"hi\" \\ bye"', 'say "hi" \\ bye'),  # with quoted-pairs
        ("a&b=c", "a&b=c"),
    ],
)
def test_header_decoding(client, received, header, expected) -> None:
    response = post(client, headers={**BASIC, "ce-subject": header})
    assert response.status_code == 202, response.content
    assert received[0].get_subject() == expected


def test_extension_headers_are_decoded_too(client, received) -> None:
    response = post(
        client, headers={**BASIC, "ce-comexampleextension1": "a%20b", "CE-Other": "1"}
    )
    assert response.status_code == 202
    assert received[0].get_extension("comexampleextension1") == "a b"
    assert received[0].get_extension("other") == "1"  # header names are case-blind


def test_invalid_utf8_header_is_rejected(client, received) -> None:
    # The spec's own example: an overlong encoding of U+0020.
    assert_problem(post(client, headers={**BASIC, "ce-subject": "%C0%A0"}), 400)
    assert_problem(post(client, headers={**BASIC, "ce-id": "%FF"}), 400)
    assert received == []


def test_binary_data_base64_decodes_to_bytes(client, received) -> None:
    payload = bytes(range(256))
    document = {
        **EVENT,
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "datacontenttype": "application/vnd.apache.thrift.binary",
        "data_base64": base64.b64encode(payload).decode(),
    }
    assert post_json(client, document).status_code == 202
    event = received[0]
    assert event.get_data() == payload
    assert event.get_extension("comexampleothervalue") == 5
    assert event.get_time() is not None and event.get_time().year == 2018


def test_thrift_example_in_binary_mode(client, received) -> None:
    payload = b"\x80\x01\x00\x01\x00\x00\x00\x04ping"
    headers = {**BASIC, "ce-comexampleothervalue": "5"}
    response = post(client, payload, "application/vnd.apache.thrift.binary", headers)
    assert response.status_code == 202
    assert received[0].get_data() == payload
    # Binary mode carries every value as a string; it is not re-typed.
    assert received[0].get_extension("comexampleothervalue") == "5"


def test_xml_example_with_null_extension(client, received) -> None:
    document = {
        **EVENT,
        "comexampleextension1": "value",
        "unsetextension": None,
        "datacontenttype": "application/xml",
        "data": '<much wow="xml"/>',
    }
    assert post_json(client, document).status_code == 202
    event = received[0]
    assert event.get_data() == '<much wow="xml"/>'
    assert "unsetextension" not in event.get_attributes()


def test_null_subject_means_unset(client, received) -> None:
    document = {**EVENT, "subject": None, "time": None, "data": {"appinfoA": "abc"}}
    assert post_json(client, document).status_code == 202
    event = received[0]
    assert event.get_subject() is None
    assert "subject" not in event.get_attributes()
    assert event.get_time() is None  # not invented by the SDK either
    assert event.get_data() == {"appinfoA": "abc"}


def test_json_string_data_is_not_decoded_again(client, received) -> None:
    document = {**EVENT, "datacontenttype": "application/json", "data": '{"a": 1}'}
    assert post_json(client, document).status_code == 202
    assert received[0].get_data() == '{"a": 1}'


def test_explicit_null_data(client, received) -> None:
    assert post_json(client, {**EVENT, "data": None}).status_code == 202
    assert received[0].get_data() is None


@pytest.mark.parametrize(
    "content_type",
    ["TEXT/Plain; CharSet=utf-8", 'text/plain; charset="UTF-8"', "text/plain"],
)
def test_text_data_is_text(client, received, content_type) -> None:
    response = post(client, "Grüße".encode(), content_type, BASIC)
    assert response.status_code == 202
    assert received[0].get_data() == "Grüße"


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b'{"a": 1}', {"a": 1}),  # what both SDK lines send for dict data
        (b"[1, 2]", [1, 2]),
        (b"7", 7),
        (b'{"a": 1', b'{"a": 1'),  # not JSON: the bytes
        (b"\x00\xff", b"\x00\xff"),
        (b"NaN", b"NaN"),  # not strict JSON either
        (b"[" * 200 + b"]" * 200, b"[" * 200 + b"]" * 200),  # too deep to be data
    ],
)
def test_binary_without_content_type_is_json_if_it_parses(
    client, received, body, data
) -> None:
    assert post(client, body, None, BASIC).status_code == 202
    assert received[0].get_data() == data
    assert received[0].get_datacontenttype() is None


@pytest.mark.parametrize(
    "time",
    [
        "2018-04-05T17:31:00Z",
        "2018-04-05t17:31:00z",
        "2018-04-05T19:31:00.25+02:00",
        "2016-12-31T23:59:60Z",  # a leap second (RFC 3339 5.7)
    ],
)
def test_rfc3339_times(client, received, time) -> None:
    assert post(client, headers={**BASIC, "ce-time": time}).status_code == 202
    assert received[0].get_time().utcoffset() is not None


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
@pytest.mark.parametrize(
    "data, content_type",
    [
        ("hello € world", "application/json"),  # a JSON string, not JSON text
        ("hello € world", "text/plain"),
        ({"k": ["€", 1]}, "application/json"),
        (b"\x00\xff", "application/octet-stream"),
    ],
)
def test_what_the_bridge_sends_its_receiver_reads_back(
    client, received, data, content_type, structured
) -> None:
    event = events.new(
        "com.example.sent", data=data, datacontenttype=content_type, subject="€ s"
    )
    headers, body = http.to_http(event, structured=structured)
    response = post(client, body, headers.pop("Content-Type"), headers)
    assert response.status_code == 202, response.content
    assert received[0].get_data() == data
    assert attributes_of(received[0]) == attributes_of(event)


def test_batch_dispatches_every_event(client, received) -> None:
    batch = [
        {**EVENT, "id": "1", "data": {"n": 1}},
        {**EVENT, "id": "2", "datacontenttype": "text/plain", "data": "two"},
    ]
    assert post_json(client, batch, BATCH).status_code == 202
    assert [(e.get_id(), e.get_data()) for e in received] == [
        ("1", {"n": 1}),
        ("2", "two"),
    ]


def test_empty_batch_is_accepted(client, received) -> None:
    response = post(client, "[]", "application/cloudevents-batch+json")
    assert response.status_code == 202
    assert received == []


def test_structured_mode_ignores_ce_headers(client, received) -> None:
    headers = {"ce-id": "from-header", "ce-type": "other"}
    response = post(client, json.dumps(EVENT), STRUCTURED, headers)
    assert response.status_code == 202
    assert received[0].get_id() == EVENT["id"]
    assert received[0].get_type() == EVENT["type"]


def test_int32_bounds_are_accepted(client, received) -> None:
    document = {**EVENT, "low": -(2**31), "high": 2**31 - 1, "flag": True}
    assert post_json(client, document).status_code == 202
    assert received[0].get_extension("low") == -(2**31)
    assert received[0].get_extension("high") == 2**31 - 1
    assert received[0].get_extension("flag") is True


def test_long_extension_name_is_accepted(client, received) -> None:
    # "SHOULD NOT exceed 20 characters" is a SHOULD: receivers must not reject.
    name = "a" * 30
    assert post(client, headers={**BASIC, f"ce-{name}": "x"}).status_code == 202
    assert received[0].get_extension(name) == "x"


# --- negative cases (SPEC-NOTES 5.3 and more) -----------------------------------


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


BINARY_REJECTS = {
    "no-specversion": without(BASIC, "ce-specversion"),
    "specversion-0.2": {**BASIC, "ce-specversion": "0.2"},
    "specversion-2.0": {**BASIC, "ce-specversion": "2.0"},
    "specversion-1.0.2": {**BASIC, "ce-specversion": "1.0.2"},
    "no-id": without(BASIC, "ce-id"),
    "empty-id": {**BASIC, "ce-id": ""},
    "no-source": without(BASIC, "ce-source"),
    "empty-source": {**BASIC, "ce-source": ""},
    "no-type": without(BASIC, "ce-type"),
    "empty-type": {**BASIC, "ce-type": ""},
    "empty-subject": {**BASIC, "ce-subject": ""},
    "ce-datacontenttype": {**BASIC, "ce-datacontenttype": "application/json"},
    "invalid-utf8": {**BASIC, "ce-subject": "%C0%A0"},
    "extension-foo_bar": {**BASIC, "ce-foo_bar": "x"},
    "extension-foo-bar": {**BASIC, "ce-foo-bar": "x"},
    "extension-data": {**BASIC, "ce-data": "x"},
    "time-no-offset": {**BASIC, "ce-time": "2018-04-05T17:31:00"},
    "time-date-only": {**BASIC, "ce-time": "2018-04-05"},
    "time-words": {**BASIC, "ce-time": "yesterday"},
    "time-impossible": {**BASIC, "ce-time": "2018-13-45T17:31:00Z"},
    "time-leap-second-midday": {**BASIC, "ce-time": "2016-12-31T12:00:60Z"},
    "time-leap-second-past-9999": {**BASIC, "ce-time": "9999-12-31T23:59:60-01:00"},
    "dataschema-relative": {**BASIC, "ce-dataschema": "/schemas/v1.json"},
    "control-character": {**BASIC, "ce-subject": "a%00b"},
    "no-ce-headers": {},
}


@pytest.mark.parametrize(
    "content_type", ["appl\xffication/json", "application/json; charset=\xe9"]
)
def test_a_content_type_that_is_not_ascii_is_refused(client, received, content_type):
    assert_problem(post(client, b"{}", content_type, BASIC), 400)
    assert received == []


@pytest.mark.parametrize("structured", [False, True])
def test_a_tab_in_the_content_type_is_white_space(client, received, structured):
    if structured:
        body, content_type = (
            json.dumps(EVENT),
            "application/cloudevents+json;\tcharset=UTF-8",
        )
    else:
        body, content_type = '{"a": 1}', "application/json;\tcharset=utf-8"
    assert post(client, body, content_type, BASIC).status_code == 202
    if not structured:  # a String holds no tab
        assert received[0].get_datacontenttype() == "application/json; charset=utf-8"


@pytest.mark.parametrize("headers", BINARY_REJECTS.values(), ids=BINARY_REJECTS)
def test_binary_rejects(client, received, headers) -> None:
    assert_problem(post(client, b'{"a": 1}', "application/json", headers), 400)
    assert received == []


STRUCTURED_REJECTS = {
    "no-specversion": without(EVENT, "specversion"),
    "specversion-0.3": {**EVENT, "specversion": "0.3"},
    "specversion-number": {**EVENT, "specversion": 1.0},
    "no-id": without(EVENT, "id"),
    "null-id": {**EVENT, "id": None},
    "empty-id": {**EVENT, "id": ""},
    "number-id": {**EVENT, "id": 5},
    "no-source": without(EVENT, "source"),
    "empty-source": {**EVENT, "source": ""},
    "no-type": without(EVENT, "type"),
    "empty-type": {**EVENT, "type": ""},
    "data-and-data_base64": {**EVENT, "data": "x", "data_base64": "eA=="},
    "data-null-and-data_base64": {**EVENT, "data": None, "data_base64": "eA=="},
    "data-and-data_base64-null": {**EVENT, "data": "x", "data_base64": None},
    "both-data-members-null": {**EVENT, "data": None, "data_base64": None},
    "dataschema-relative": {**EVENT, "dataschema": "schemas/v1.json"},
    "data_base64-invalid": {**EVENT, "data_base64": "not base64!"},
    "data_base64-number": {**EVENT, "data_base64": 5},
    "extension-Foo": {**EVENT, "Foo": "x"},
    "extension-foo_bar": {**EVENT, "foo_bar": "x"},
    "extension-foo-bar": {**EVENT, "foo-bar": "x"},
    "extension-empty-name": {**EVENT, "": "x"},
    "int-above-int32": {**EVENT, "big": 2**31},
    "int-below-int32": {**EVENT, "small": -(2**31) - 1},
    "float-extension": {**EVENT, "ratio": 1.5},
    "object-extension": {**EVENT, "obj": {"othervalue": 5}},
    "list-extension": {**EVENT, "items": [1, 2]},
    "time-invalid": {**EVENT, "time": "2018-04-05 17:31"},
    "time-number": {**EVENT, "time": 1522949460},
    "empty-datacontenttype": {**EVENT, "datacontenttype": ""},
    "control-character": {**EVENT, "subject": "line\nbreak"},
    "lone-surrogate": {**EVENT, "subject": "\ud800"},
}


@pytest.mark.parametrize(
    "document", STRUCTURED_REJECTS.values(), ids=STRUCTURED_REJECTS
)
def test_structured_rejects(client, received, document) -> None:
    assert_problem(post_json(client, document), 400)
    assert_problem(post_json(client, [EVENT, document], BATCH), 400)
    assert received == []


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"\xff\xfe", b"[1]", b'"event"', b"5", b"null"],
    ids=["empty", "truncated", "text", "not-utf8", "array", "string", "number", "null"],
)
def test_structured_body_not_a_json_object(client, received, body) -> None:
    assert_problem(post(client, body, STRUCTURED), 400)
    assert received == []


@pytest.mark.parametrize(
    "body", [b"{}", b"[[]]", b"[5]", b'{"specversion": "1.0"}', b"not json"]
)
def test_batch_that_is_not_an_array_of_events(client, received, body) -> None:
    assert_problem(post(client, body, BATCH), 400)
    assert received == []


def test_batch_with_mixed_specversions(client, received) -> None:
    batch = [EVENT, {**EVENT, "id": "2", "specversion": "0.3"}]
    assert_problem(post_json(client, batch, BATCH), 400)
    assert received == []


@pytest.mark.parametrize("depth", [127, 129, 5000, 100_000])
def test_deeply_nested_json_is_400_not_a_crash(client, received, depth) -> None:
    data = "[" * depth + "]" * depth
    binary = post(client, data, "application/json", BASIC)
    structured = post(
        client,
        '{"specversion": "1.0", "type": "t", "source": "/s",'
        f' "id": "1", "data": {data}}}',
        STRUCTURED,
    )
    if depth < 128:  # the envelope is one more level in structured mode
        assert binary.status_code == structured.status_code == 202
        assert len(received) == 2
    else:
        assert_problem(binary, 400)
        assert_problem(structured, 400)
        assert received == []


def test_binary_json_data_that_is_not_json(client, received) -> None:
    assert_problem(post(client, b"{not json", "application/json", BASIC), 400)
    assert received == []


def test_text_data_not_in_its_charset(client, received) -> None:
    assert_problem(post(client, b"\xff", "text/plain; charset=utf-8", BASIC), 400)
    assert_problem(post(client, b"x", "text/plain; charset=nonesuch", BASIC), 400)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+avro",
        "application/cloudevents+protobuf",
        "application/cloudevents-batch+avro",
    ],
)
def test_unknown_event_format_is_415(client, received, content_type) -> None:
    assert_problem(post(client, b"\x00\x01", content_type, BASIC), 415)
    assert received == []


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "head"])
def test_other_methods_are_405(client, method) -> None:
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert set(re.split(r",\s*", response["Allow"])) == {"POST", "OPTIONS"}


def test_options_says_post(client) -> None:
    response = client.options(URL)
    assert response.status_code == 200
    assert "POST" in re.split(r",\s*", response["Allow"])
    assert not any(name.lower().startswith("ce-") for name in response.headers)


def test_webhook_abuse_protection_handshake(client) -> None:
    response = client.options(
        URL, headers={"WebHook-Request-Origin": "eventemitter.example.com"}
    )
    assert response.status_code == 200
    assert response["WebHook-Allowed-Origin"] == "eventemitter.example.com"


# --- size limit -------------------------------------------------------------------


@pytest.fixture
def small_limit(settings) -> int:
    settings.CLOUDEVENTS_RECEIVER = {"MAX_BYTES": 100}
    return 100


def test_body_over_the_limit_is_413(client, received, small_limit) -> None:
    assert_problem(post(client, b"x" * 101, "text/plain", BASIC), 413)
    document = {**EVENT, "data": "x" * 100}
    assert_problem(post_json(client, document), 413)
    assert_problem(post_json(client, [document], BATCH), 413)
    assert received == []


def test_body_at_the_limit_is_accepted(client, received, small_limit) -> None:
    assert post(client, b"x" * 100, "text/plain", BASIC).status_code == 202
    assert received[0].get_data() == "x" * 100


def test_lying_content_length_is_413(client, received, small_limit) -> None:
    # The declared length alone is enough to refuse, before reading.
    response = post(client, b"x", "text/plain", BASIC, CONTENT_LENGTH="1000000")
    assert_problem(response, 413)


def test_invalid_content_length_is_400(client, received) -> None:
    response = post(client, b"x", "text/plain", BASIC, CONTENT_LENGTH="lots")
    assert_problem(response, 400)


def asgi_post(headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
    """POST through Django's real ASGI handler, the body in chunks (no length)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected (no disconnect)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await ASGIHandler()(scope, receive, send)

    async_to_sync(run)()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )
    return start["status"], body


def test_chunked_body_without_content_length_is_413(received, small_limit) -> None:
    headers = [(b"content-type", b"text/plain")] + [
        (name.encode(), value.encode()) for name, value in BASIC.items()
    ]
    status, body = asgi_post(headers, [b"x" * 60, b"x" * 60])
    assert status == 413
    assert "error" in json.loads(body)
    assert received == []
    # Under the limit, the same path accepts (so the 413 was the size).
    status, _ = asgi_post(headers, [b"x" * 40, b"x" * 40])
    assert status == 202
    assert received[0].get_data() == "x" * 80


# --- fuzz: malformed input is a 4xx, never a 5xx --------------------------------


def mutate(rng: random.Random) -> Any:
    """A structured event with one attribute set to something odd."""
    odd = [
        None,
        "",
        0,
        -1,
        2**40,
        1.5,
        True,
        [],
        {},
        [EVENT],
        "\x00",
        "\ud800",
        "x" * 300,
        "%C0%A0",
        "2018-04-05T17:31:00Z",
        "1.0",
        "\u2028\ufffe",
    ]
    document: dict[str, Any] = {**EVENT, "data": {"k": "v"}}
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(
            [*EVENT, "time", "subject", "datacontenttype", "dataschema", "data"]
            + ["data_base64", "ext", "Ext", "x" * 25, "a-b"]
        )
        document[name] = rng.choice(odd)
    if rng.random() < 0.2:
        return [document]
    return document


def random_headers(rng: random.Random) -> dict[str, str]:
    headers = dict(BASIC) if rng.random() < 0.7 else {}
    alphabet = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\xe9\xff"
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(
            ["ce-id", "ce-source", "ce-type", "ce-specversion", "ce-time"]
            + ["ce-subject", "ce-dataschema", "ce-ext", "ce-x_y", "x-other"]
        )
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:
            value = "%" + "".join(rng.choice("0123456789abcdefABCDEFxz%") for _ in "ab")
        headers[name] = value
    return headers


def test_fuzz_never_5xx(client, received) -> None:
    rng = random.Random(20240601)
    content_types = [
        None,
        "",
        "application/json",
        "text/plain",
        "text/plain; charset=latin-1",
        "text/plain; charset=bogus",
        "application/octet-stream",
        STRUCTURED,
        BATCH,
        "application/cloudevents",
        "application/cloudevents+json;;;",
        "APPLICATION/CLOUDEVENTS+JSON",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "\xff/\xfe",
    ]
    for round_ in range(400):
        content_type = rng.choice(content_types)
        if rng.random() < 0.5:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            body = json.dumps(mutate(rng)).encode()
        response = post(client, body, content_type, random_headers(rng))
        status = response.status_code
        assert status < 500, (round_, status, content_type, body, response.content)
        assert status in (202, 400, 413, 415), (round_, status)
        if status >= 400:
            assert_problem(response, status)


def test_chunked_body_without_a_terminated_input_asks_for_a_length(client):
    # Django's test client and runserver cannot hand over a chunked body.
    response = client.post(
        "/cloudevents/",
        data=b'{"a": 1}',
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID="1",
        HTTP_CE_SOURCE="/s",
        HTTP_CE_TYPE="t",
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]
