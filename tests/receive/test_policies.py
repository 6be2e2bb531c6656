"""Sender policies (Knative EventPolicy semantics), with tokens from a real
loopback OIDC issuer (the fixtures of test_auth.py) and the real receiver."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client

from django_cloudevents_bridge import checks as bridge_checks
from django_cloudevents_bridge.models import ReceivedEvent
from django_cloudevents_bridge.receive.policies import subject_matches
from tests.receive.test_auth import (  # noqa: F401 - an autouse fixture
    AUDIENCE,
    SECRET,
    SUBJECT,
    _fresh_cache,
    mint,
    reason,
)

pytestmark = pytest.mark.django_db

SHOP = "system:serviceaccount:shop:*"


def post(token: str, type_: str = "com.shop.order.paid", **attributes: str) -> Any:
    headers = {f"HTTP_CE_{name.upper()}": value for name, value in attributes.items()}
    return Client(enforce_csrf_checks=True).post(
        "/cloudevents/",
        data=b'{"order": 42}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID=uuid.uuid4().hex,
        HTTP_CE_SOURCE="/shop",
        HTTP_CE_TYPE=type_,
        **headers,
    )


def post_batch(token: str, types: list[str]) -> Any:
    body = [
        {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/shop", "type": t}
        for t in types
    ]
    return Client(enforce_csrf_checks=True).post(
        "/cloudevents/",
        data=json.dumps(body),
        content_type="application/cloudevents-batch+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def token(oidc, keys) -> str:
    return mint(keys.rsa, oidc.url)


@pytest.mark.parametrize(
    ("policies", "status"),
    [
        (None, 202),  # no policies: nothing checked
        ([], 403),  # deny all
        ([{"subjects": [SHOP]}], 202),  # EventPolicy's "*" suffix
        ([{"subjects": ["system:serviceaccount:shop:"]}], 202),  # OIDC_SUBJECTS' rule
        ([{"subjects": [SUBJECT]}], 202),
        ([{"subjects": ["system:serviceaccount:other:*"]}], 403),
        ([{"subjects": ["system:serviceaccount:sho*"]}], 202),
        ([{"subjects": ["system:serviceaccount:shop"]}], 403),  # exact only
        ([{"filters": [{"prefix": {"type": "com.shop."}}]}], 202),  # any sender
        ([{"subjects": [SHOP], "filters": {"exact": {"type": "com.shop.x"}}}], 403),
        (
            [
                {"subjects": ["system:serviceaccount:other:*"]},
                {"subjects": [SHOP], "filters": {"suffix": {"type": ".paid"}}},
            ],
            202,  # the second admits it
        ),
        ([{"subjects": [SHOP], "filters": {"cesql": "type LIKE '%.paid'"}}], 202),
        ([{"filters": {"exact": {"region": "eu"}}}], 403),  # missing: not admitted
    ],
)
def test_policies(settings, token, policies, status):
    settings.CLOUDEVENTS_RECEIVER["POLICIES"] = policies
    response = post(token)
    assert response.status_code == status
    if status == 403:
        assert reason(response).startswith("no policy admits event")
        assert SUBJECT in reason(response)
        assert not ReceivedEvent.objects.exists()  # refused before it is stored


def test_extension_attributes_can_be_filtered(settings, token):
    settings.CLOUDEVENTS_RECEIVER["POLICIES"] = [
        {"subjects": [SHOP], "filters": {"exact": {"region": "eu"}}}
    ]
    assert post(token, region="eu").status_code == 202
    assert post(token, region="us").status_code == 403


def test_every_event_of_a_batch_must_be_admitted(settings, token):
    settings.CLOUDEVENTS_RECEIVER["POLICIES"] = [
        {"subjects": [SHOP], "filters": {"prefix": {"type": "com.shop."}}}
    ]
    assert post_batch(token, ["com.shop.a", "com.shop.b"]).status_code == 202
    assert ReceivedEvent.objects.count() == 2
    response = post_batch(token, ["com.shop.c", "com.evil.d", "com.shop.e"])
    assert response.status_code == 403
    assert "'com.evil.d'" in reason(response)
    assert ReceivedEvent.objects.count() == 2  # none of the refused batch


def test_a_shared_secret_has_no_subject_for_policies(settings, oidc, keys):
    settings.CLOUDEVENTS_RECEIVER.update(
        SECRET=SECRET,
        POLICIES=[
            {"subjects": [SHOP]},
            {"filters": {"prefix": {"type": "com.public."}}},
        ],
    )
    assert post(mint(keys.rsa, oidc.url)).status_code == 202  # subject admitted
    assert post(SECRET).status_code == 403  # no subject: the first cannot admit
    assert post(SECRET, type_="com.public.ping").status_code == 202  # the second


def test_policies_also_apply_to_an_open_receiver(settings):
    settings.CLOUDEVENTS_RECEIVER = {
        "POLICIES": [{"filters": {"exact": {"type": "com.ok"}}}]
    }
    assert post("anything", type_="com.ok").status_code == 202
    response = post("anything", type_="com.other")
    assert response.status_code == 403
    assert "from this sender" in reason(response)


def test_oidc_subjects_accept_the_star_suffix_too(settings, token):
    settings.CLOUDEVENTS_RECEIVER["OIDC_SUBJECTS"] = [SHOP]
    assert post(token).status_code == 202
    settings.CLOUDEVENTS_RECEIVER["OIDC_SUBJECTS"] = ["system:serviceaccount:x:*"]
    assert post(token).status_code == 403


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a:b:*", "a:b:c", True),
        ("a:b:*", "a:b:", True),
        ("a:b:*", "a:bc", False),
        ("*", "anything", True),
        ("a:b:", "a:b:c", True),
        ("a:b", "a:b:c", False),
        ("a*b", "a*b", True),  # only a final "*" is a wildcard
        ("a*b", "axb", False),
    ],
)
def test_subject_patterns(pattern, subject, expected):
    assert subject_matches(subject, pattern) is expected


@pytest.mark.parametrize(
    ("policies", "problem"),
    [
        ({"subjects": [SHOP]}, "POLICIES must be a list"),
        (["x"], "POLICIES[0] must be a dict"),
        ([{"subject": [SHOP]}], "POLICIES[0]: unknown key 'subject'"),
        ([{"subjects": SHOP}], "POLICIES[0]: subjects must be a list"),
        ([{"subjects": [""]}], "POLICIES[0]: subjects must be a list"),
        ([{}, {"filters": {"exact": {"type": ""}}}], "POLICIES[1]: filters.exact"),
        ([{"filters": {"cesql": "type = "}}], "POLICIES[0]: filters.cesql"),
    ],
)
def test_bad_policies_fail_the_checks(settings, policies, problem):
    settings.CLOUDEVENTS_RECEIVER = {"SECRET": SECRET, "POLICIES": policies}
    messages = [error.msg for error in bridge_checks.check_receiver_auth()]
    assert any(problem in message for message in messages), messages


def test_good_policies_pass_the_checks(settings):
    settings.CLOUDEVENTS_RECEIVER = {
        "SECRET": SECRET,
        "POLICIES": [{"subjects": [SHOP], "filters": [{"prefix": {"type": "a."}}]}],
    }
    assert bridge_checks.check_receiver_auth() == []
    assert AUDIENCE  # the fixtures' audience is what the tokens carry
