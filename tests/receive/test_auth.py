"""Receiver authentication, against a real OIDC issuer on a loopback port.

The issuer serves its discovery document and JWKS over HTTP (or HTTPS with a
trustme CA); tokens are signed with keys generated here, and events are posted to
the real receiver with CSRF checks on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client

from django_cloudevents_bridge import checks as bridge_checks
from django_cloudevents_bridge import conf
from django_cloudevents_bridge.receive import auth
from django_cloudevents_bridge.receive import oidc as key_cache
from tests import server as e2e

pytestmark = pytest.mark.django_db

AUDIENCE = "django/receiver/default/orders"
SUBJECT = "system:serviceaccount:shop:my-trigger-oidc-eventing.knative.dev-trigger"
SECRET = "s3cret-for-tests-only"
urlpatterns: list[Any] = []  # a URLconf without the receiver (check W003)


# --- a real issuer ------------------------------------------------------------


class Issuer:
    """Discovery at ``/.well-known/openid-configuration``, keys at ``/keys``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.keys: list[dict[str, Any]] = []  # the JWKS "keys", changed by tests
        self.issuer: str | None = None  # the discovery "issuer"; default: url
        self.documents: dict[str, bytes] = {}  # path -> body served instead
        self.hits: Counter[str] = Counter()
        self.delay = 0.0  # seconds before each answer
        self.down = False  # answer 503 to everything
        self.gate: threading.Event | None = None  # /keys waits for it to be set
        self.at_gate = threading.Event()  # set while /keys waits for the gate
        self.trickle: float | None = None  # /keys: seconds between its 100 pieces
        self.hung_up = threading.Event()  # the client left before the whole body
        self.authorization: list[str | None] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.scheme = "https"
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> Issuer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                time.sleep(issuer.delay)
                issuer.authorization.append(self.headers.get("Authorization"))
                if issuer.down:
                    self.send_error(503)
                    return
                if self.path == "/keys" and issuer.gate is not None:
                    issuer.at_gate.set()
                    issuer.gate.wait()
                body = issuer.documents.get(self.path)
                if body is None and self.path == "/.well-known/openid-configuration":
                    document = {
                        "issuer": issuer.issuer or issuer.url,
                        "jwks_uri": f"{issuer.url}/keys",
                    }
                    body = json.dumps(document).encode()
                elif body is None and self.path == "/keys":
                    body = json.dumps({"keys": issuer.keys}).encode()
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path == "/keys" and issuer.trickle is not None:
                    self._trickle(body, issuer.trickle)
                else:
                    self.wfile.write(body)

            def _trickle(self, body: bytes, interval: float) -> None:
                size = -(-len(body) // 100)
                try:
                    for start in range(0, len(body), size):
                        self.wfile.write(body[start : start + size])
                        self.wfile.flush()
                        time.sleep(interval)
                except OSError:
                    issuer.hung_up.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@dataclass(frozen=True)
class Key:
    kid: str
    private: Any
    algorithm: str

    def jwk(self) -> dict[str, Any]:
        codec = jwt.algorithms.get_default_algorithms()[self.algorithm]
        data = json.loads(codec.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class Keys:
    rsa: Key
    rotated: Key  # the issuer's next key
    ec: Key
    attacker: Key  # not the issuer's, but claims the kid of ``rsa``


@pytest.fixture(scope="module")
def keys() -> Keys:
    def rsa_key() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return Keys(
        rsa=Key("rsa-1", rsa_key(), "RS256"),
        rotated=Key("rsa-2", rsa_key(), "RS256"),
        ec=Key("ec-1", ec.generate_private_key(ec.SECP256R1()), "ES256"),
        attacker=Key("rsa-1", rsa_key(), "RS256"),
    )


def mint(key: Key, iss: str, /, *, kid: Any = "default", **claims: Any) -> str:
    """A token as Knative's sender would send it; a claim set to None is left out."""
    now = int(time.time())
    payload = {
        "iss": iss,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {} if kid is None else {"kid": key.kid if kid == "default" else kid}
    return jwt.encode(payload, key.private, algorithm=key.algorithm, headers=headers)


def unsigned(header: dict[str, Any], payload: dict[str, Any], key: bytes = b"") -> str:
    """A token built by hand: ``alg`` none (no key) or HS256 keyed with ``key``."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature) if key else ''}"


def post(token: str | None = None, *, authorization: str | None = None) -> Any:
    """POST a valid binary-mode event to the receiver, as a broker would."""
    headers = {}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    return Client(enforce_csrf_checks=True).post(
        "/cloudevents/",
        data=b'{"order": 42}',
        content_type="application/json",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID=uuid.uuid4().hex,
        HTTP_CE_SOURCE="/apis/v1/namespaces/shop/pingsources/orders",
        HTTP_CE_TYPE="dev.knative.sources.ping",
        **headers,
    )


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    key_cache.clear_cache()
    yield
    key_cache.clear_cache()


@pytest.fixture
def issuer(keys: Keys) -> Iterator[Issuer]:
    server = Issuer().start()
    server.keys = [keys.rsa.jwk(), keys.ec.jwk()]
    yield server
    server.stop()


@pytest.fixture
def oidc(settings, issuer: Issuer) -> Issuer:
    """The receiver verifies tokens from ``issuer``."""
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
    }
    return issuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The cache's clock, moved by hand."""
    fake = Clock()
    monkeypatch.setattr(key_cache, "monotonic", fake)
    return fake


def reason(response: Any) -> str:
    return json.loads(response.content)["error"]


# --- every auth mode ----------------------------------------------------------


@pytest.fixture(params=["secret", "oidc", "both"])
def credential(request, settings, issuer: Issuer, keys: Keys) -> str:
    """A valid credential for the auth mode under test."""
    options: dict[str, Any] = {}
    if request.param in ("secret", "both"):
        options["SECRET"] = SECRET
    if request.param in ("oidc", "both"):
        options.update(OIDC_ISSUER=issuer.url, OIDC_AUDIENCE=AUDIENCE)
    settings.CLOUDEVENTS_RECEIVER = options
    return SECRET if request.param == "secret" else mint(keys.rsa, issuer.url)


def test_a_valid_credential_is_accepted(credential):
    assert post(credential).status_code == 202


def test_no_credential_is_401_with_a_bearer_challenge(credential):
    response = post()
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert reason(response) == "missing bearer token"


@pytest.mark.parametrize("wrong", ["nonsense", SECRET + "x", "a.b.c"])
def test_a_wrong_credential_is_401(credential, wrong):
    response = post(wrong)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_another_scheme_is_not_a_bearer_credential(credential):
    assert post(authorization=f"Basic {credential}").status_code == 401
    assert post(authorization=f"bearer {credential}").status_code == 202


# --- OIDC: what a token must be -----------------------------------------------


def test_a_token_signed_with_ec_p256_is_accepted(oidc, keys):
    assert post(mint(keys.ec, oidc.url)).status_code == 202


def test_aud_may_be_a_list_containing_the_audience(oidc, keys):
    token = mint(keys.rsa, oidc.url, aud=["someone-else", AUDIENCE])
    assert post(token).status_code == 202


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"aud": "broker/other"}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
        ({"iat": int(time.time()) + 3600}, "token not yet valid"),
        ({"sub": None}, "token has no 'sub' claim"),
        ({"exp": None}, "token has no 'exp' claim"),
    ],
    ids=["expired", "audience", "issuer", "nbf", "iat", "no-sub", "no-exp"],
)
def test_an_invalid_token_is_401(oidc, keys, claims, expected):
    response = post(mint(keys.rsa, oidc.url, **claims))
    assert response.status_code == 401
    assert reason(response) == expected


def test_a_little_clock_skew_is_tolerated(oidc, keys):
    soon = int(time.time()) + auth.LEEWAY // 2
    assert post(mint(keys.rsa, oidc.url, iat=soon, nbf=soon)).status_code == 202
    late = int(time.time()) - auth.LEEWAY // 2
    assert post(mint(keys.rsa, oidc.url, exp=late)).status_code == 202


def test_a_signature_by_another_key_is_401(oidc, keys):
    response = post(mint(keys.attacker, oidc.url))  # claims kid "rsa-1"
    assert response.status_code == 401
    assert reason(response) == "bad signature"


def test_alg_none_is_401(oidc, keys):
    claims = jwt.decode(mint(keys.rsa, oidc.url), options={"verify_signature": False})
    token = unsigned({"alg": "none", "kid": keys.rsa.kid}, claims)
    response = post(token)
    assert response.status_code == 401
    assert reason(response) == "token algorithm not allowed"


def test_hs256_keyed_with_the_public_key_is_401(oidc, keys):
    # The classic confusion attack: the public key is no secret.
    claims = jwt.decode(mint(keys.rsa, oidc.url), options={"verify_signature": False})
    token = unsigned(
        {"alg": "HS256", "kid": keys.rsa.kid}, claims, keys.rsa.public_pem()
    )
    response = post(token)
    assert response.status_code == 401
    assert reason(response) == "token algorithm not allowed"


def test_a_token_without_kid_is_tried_with_each_key_of_its_algorithm(oidc, keys):
    oidc.keys = [keys.rotated.jwk(), keys.rsa.jwk()]
    assert post(mint(keys.rsa, oidc.url, kid=None)).status_code == 202
    assert post(mint(keys.attacker, oidc.url, kid=None)).status_code == 401


def test_iss_must_equal_the_discovery_documents_issuer(oidc, keys):
    # Knative tolerates a discovery issuer that differs from the base URL.
    oidc.issuer = "https://kubernetes.default.svc.cluster.local"
    assert post(mint(keys.rsa, oidc.issuer)).status_code == 202
    assert post(mint(keys.rsa, oidc.url)).status_code == 401


def test_unusable_jwks_entries_are_skipped(oidc, keys):
    oidc.keys = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "rsa-1", "alg": "HS256"},
        {**keys.rsa.jwk(), "use": "enc"},
        {"kty": "RSA", "kid": "broken"},
        {**keys.rotated.jwk(), "alg": "PS256", "kid": "rsa-1"},
        keys.rsa.jwk(),
    ]
    assert post(mint(keys.rsa, oidc.url)).status_code == 202


# --- OIDC: who may send ---------------------------------------------------------


@pytest.mark.parametrize(
    ("subjects", "status"),
    [
        (None, 202),  # allow-all
        ([SUBJECT], 202),
        (["system:serviceaccount:shop:"], 202),  # allow-same-namespace
        (["system:serviceaccount:shop"], 403),  # no ':': exact, not a prefix
        (["system:serviceaccount:other:"], 403),
        ([], 403),  # deny-all
    ],
)
def test_subjects(settings, oidc, keys, subjects, status):
    settings.CLOUDEVENTS_RECEIVER["OIDC_SUBJECTS"] = subjects
    response = post(mint(keys.rsa, oidc.url))
    assert response.status_code == status
    if status == 403:
        assert reason(response) == f"subject {SUBJECT!r} is not allowed"


def test_with_both_modes_the_secret_has_no_subject_to_check(settings, oidc, keys):
    settings.CLOUDEVENTS_RECEIVER.update(SECRET=SECRET, OIDC_SUBJECTS=[])
    assert post(SECRET).status_code == 202
    assert post(mint(keys.rsa, oidc.url)).status_code == 403


def test_a_list_of_secrets_allows_rotation(settings):
    settings.CLOUDEVENTS_RECEIVER = {"SECRET": ["old-secret", "new-secret"]}
    assert post("old-secret").status_code == 202
    assert post("new-secret").status_code == 202
    assert post("other").status_code == 401


# --- OIDC: fetching and caching keys ------------------------------------------


def test_discovery_and_keys_are_cached(oidc, keys, clock):
    for _ in range(3):
        assert post(mint(keys.rsa, oidc.url)).status_code == 202
    assert oidc.hits == {"/.well-known/openid-configuration": 1, "/keys": 1}
    clock.advance(key_cache.CACHE_SECONDS)
    assert post(mint(keys.rsa, oidc.url)).status_code == 202
    assert oidc.hits == {"/.well-known/openid-configuration": 2, "/keys": 2}


def test_a_rotated_key_is_fetched_when_its_kid_is_first_seen(oidc, keys, clock):
    assert post(mint(keys.rsa, oidc.url)).status_code == 202
    oidc.keys = [keys.rotated.jwk()]  # the issuer rotates
    clock.advance(key_cache.REFETCH_SECONDS)
    assert post(mint(keys.rotated, oidc.url)).status_code == 202
    assert oidc.hits["/keys"] == 2
    # The old key is gone now.
    response = post(mint(keys.rsa, oidc.url))
    assert response.status_code == 401
    assert reason(response) == "unknown signing key"


def test_unknown_kids_refetch_at_most_every_few_seconds(oidc, keys, clock):
    assert post(mint(keys.rsa, oidc.url)).status_code == 202
    for n in range(5):
        assert post(mint(keys.rsa, oidc.url, kid=f"random-{n}")).status_code == 401
    assert oidc.hits["/keys"] == 1
    clock.advance(key_cache.REFETCH_SECONDS)
    assert post(mint(keys.rsa, oidc.url, kid="random")).status_code == 401
    assert oidc.hits["/keys"] == 2


def test_concurrent_requests_with_a_cold_cache_fetch_once(oidc, keys):
    oidc.delay = 0.1
    options = conf.receiver()
    start = threading.Barrier(8)
    found: list[Any] = []

    def verify() -> None:
        start.wait()
        found.append(key_cache.signing_keys(options, keys.rsa.kid, "RS256"))

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert oidc.hits == {"/.well-known/openid-configuration": 1, "/keys": 1}
    assert [len(keys) for _issuer, keys in found] == [1] * 8


def test_an_unreachable_issuer_is_our_transient_failure(settings, keys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings.CLOUDEVENTS_RECEIVER = {"OIDC_ISSUER": url, "OIDC_AUDIENCE": AUDIENCE}
    response = post(mint(keys.rsa, url))
    assert response.status_code == 503  # Knative retries
    assert response["Retry-After"] == "5"
    # Credentials are checked against what is configured first.
    assert post().status_code == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/.well-known/openid-configuration", b"<html>not json</html>"),
        ("/.well-known/openid-configuration", b'{"issuer": "x"}'),
        ("/.well-known/openid-configuration", b'{"issuer": 1, "jwks_uri": []}'),
        (
            "/.well-known/openid-configuration",
            b'{"issuer": "x", "jwks_uri": "file:///etc/passwd"}',
        ),
        ("/.well-known/openid-configuration", b'["issuer", "jwks_uri"]'),
        ("/.well-known/openid-configuration", b"[" * 100_000 + b"]" * 100_000),
        ("/keys", b'{"no": "keys"}'),
        ("/keys", b"x" * (key_cache.MAX_DOCUMENT + 1)),
        ("/keys", b'{"keys": "abc"}'),
        ("/keys", b'{"keys": [null]}'),
        ("/keys", b'{"keys": {"kty": "RSA"}}'),
        ("/keys", b'{"keys": ["RSA"]}'),
        ("/keys", b"null"),
        ("/keys", b'"keys"'),
        ("/keys", b'{"keys": ' * 50_000 + b"[]" + b"}" * 50_000),
        ("/keys", b'{"keys": [{"kty": {"RSA": 1}, "n": [], "e": null}]}'),
    ],
    ids=[
        "not-json",
        "no-jwks-uri",
        "wrong-types",
        "file-uri",
        "discovery-a-list",
        "discovery-deeply-nested",
        "no-keys",
        "huge",
        "keys-a-string",
        "keys-null",
        "keys-an-object",
        "key-a-string",
        "jwks-null",
        "jwks-a-string",
        "jwks-deeply-nested",
        "key-of-wrong-types",
    ],
)
def test_a_broken_issuer_is_503_with_retry_after(oidc, keys, path, body):
    oidc.documents[path] = body
    response = post(mint(keys.rsa, oidc.url))
    if body.startswith(b'{"keys": [{"kty": {'):
        # A JWKS of the right shape whose only key is unusable: no such key.
        assert response.status_code == 401
        return
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert reason(response) == "authentication unavailable"


def test_a_trickling_issuer_is_cut_off_by_the_fetch_deadline(
    settings, oidc, keys, caplog
):
    # 100 pieces, one every 0.1 s: 10 s for the JWKS, twenty times the deadline;
    # no single read waits longer than 0.1 s, so only a total deadline ends it.
    settings.CLOUDEVENTS_RECEIVER["OIDC_FETCH_TIMEOUT"] = 0.5
    oidc.trickle = 0.1
    response = post(mint(keys.rsa, oidc.url))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert oidc.hung_up.wait(30)  # the receiver left before the body was whole
    assert "no answer within 0.5 s (total)" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_trickling_issuer_does_not_hold_gunicorns_workers(
    django_db_setup, tmp_path, issuer, keys
):
    # 100 pieces, one every 0.5 s: 50 s for the JWKS, beyond gunicorn's 30 s
    # timeout and the client's 20 s; the deadline is 1 s.
    issuer.trickle = 0.5
    options = {
        "OIDC_ISSUER": issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_FETCH_TIMEOUT": 1,
    }
    server = e2e.Server(
        tmp_path,
        e2e.SharedDatabase(tmp_path),
        environment={"E2E_RECEIVER": json.dumps(options)},
    ).start()
    token = mint(keys.rsa, issuer.url)
    try:
        for _ in range(4):  # each worker fetches once, then remembers the failure
            response = requests.post(
                f"{server.url}/cloudevents/",
                data=b"{}",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-id": uuid.uuid4().hex,
                    "ce-source": "/tests",
                    "ce-type": "t",
                },
                timeout=20,
            )
            assert response.status_code == 503, server.tail()
            assert response.headers["Retry-After"] in {"1", "2", "3", "4", "5"}
    finally:
        server.stop()
    assert issuer.hung_up.wait(30)
    assert "no answer within 1 s (total)" in server.log.read_text()


def test_a_failed_fetch_is_remembered_for_a_few_seconds(oidc, keys, clock):
    oidc.documents["/keys"] = b'{"keys": "abc"}'
    token = mint(keys.rsa, oidc.url)
    response = post(token)
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    clock.advance(key_cache.FAILURE_SECONDS - 1)
    response = post(token)  # answered from the failure, not from the issuer
    assert (response.status_code, response["Retry-After"]) == (503, "1")
    assert oidc.hits == {"/.well-known/openid-configuration": 1, "/keys": 1}
    del oidc.documents["/keys"]
    clock.advance(1)
    assert post(token).status_code == 202
    assert oidc.hits["/keys"] == 2


def test_concurrent_requests_behind_a_failing_fetch_do_not_fetch_again(oidc, keys):
    oidc.delay = 0.1
    oidc.down = True
    options = conf.receiver()
    start = threading.Barrier(8)
    failed: list[int] = []

    def verify() -> None:
        start.wait()
        try:
            key_cache.signing_keys(options, keys.rsa.kid, "RS256")
        except key_cache.AuthUnavailable as err:
            failed.append(err.retry_after)

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failed) == 8
    assert oidc.hits == {"/.well-known/openid-configuration": 1}


def test_keys_in_hand_are_used_while_the_issuer_is_down(settings, oidc, keys, clock):
    settings.CLOUDEVENTS_RECEIVER["OIDC_STALE_SECONDS"] = 1800
    token = mint(keys.rsa, oidc.url)
    assert post(token).status_code == 202
    oidc.down = True
    clock.advance(key_cache.CACHE_SECONDS)
    assert post(token).status_code == 202  # the fetch failed: the keys in hand
    assert oidc.hits["/.well-known/openid-configuration"] == 2
    # A key they lack may be the issuer's new one: that needs the issuer.
    response = post(mint(keys.rotated, oidc.url))
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    clock.advance(1800 - key_cache.CACHE_SECONDS - 1)
    assert post(token).status_code == 202
    clock.advance(1)  # the keys are 1800 s old: no longer used
    response = post(token)
    # The issuer failed a second ago (the fetch of the request before).
    assert (response.status_code, response["Retry-After"]) == (503, "4")
    oidc.down = False
    clock.advance(key_cache.FAILURE_SECONDS)
    assert post(token).status_code == 202


def test_keys_in_hand_do_not_wait_for_a_slow_fetch(settings, oidc, keys, clock):
    settings.CLOUDEVENTS_RECEIVER["OIDC_FETCH_TIMEOUT"] = 30
    token = mint(keys.rsa, oidc.url)
    assert post(token).status_code == 202
    clock.advance(key_cache.CACHE_SECONDS)
    oidc.gate = threading.Event()
    options = conf.receiver()
    fetched: list[Any] = []
    fetching = threading.Thread(
        target=lambda: fetched.append(key_cache.signing_keys(options, "rsa-1", "RS256"))
    )
    fetching.start()
    try:
        assert oidc.at_gate.wait(30)  # that thread is fetching the keys
        assert post(token).status_code == 202
        assert fetching.is_alive()  # answered without waiting for that fetch
    finally:
        oidc.gate.set()
        fetching.join(30)
    assert [len(found) for _issuer, found in fetched] == [1]


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": str(int(time.time()) + 600)},
        {"nbf": str(int(time.time()))},
        {"iat": str(int(time.time()))},
        {"iat": True},
        {"nbf": False},
        {"exp": {"$date": 1}},
    ],
    ids=["exp-string", "nbf-string", "iat-string", "iat-true", "nbf-false", "exp-obj"],
)
def test_a_time_claim_that_is_not_a_number_is_401(oidc, keys, claims):
    response = post(mint(keys.rsa, oidc.url, **claims))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_time_claims_may_be_fractional(oidc, keys):
    now = time.time()
    token = mint(keys.rsa, oidc.url, iat=now, nbf=now, exp=now + 600.5)
    assert post(token).status_code == 202


# --- HTTPS, the cluster CA and the discovery token ----------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_issuer(ca, keys) -> Iterator[Issuer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = Issuer(tls=context).start()
    server.keys = [keys.rsa.jwk()]
    yield server
    server.stop()


@pytest.fixture
def ca_file(ca, tmp_path) -> str:
    path = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def token_file(tmp_path) -> str:
    path = tmp_path / "token"
    path.write_text("pod-service-account-token\n")
    return str(path)


def test_https_discovery_with_a_ca_file_and_a_token(
    settings, tls_issuer, keys, ca_file, token_file
):
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": tls_issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_CA_FILE": ca_file,
        "OIDC_TOKEN_FILE": token_file,
    }
    assert post(mint(keys.rsa, tls_issuer.url)).status_code == 202
    assert tls_issuer.authorization == ["Bearer pod-service-account-token"] * 2


def test_https_discovery_verifies_the_certificate(settings, tls_issuer, keys):
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": tls_issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
    }
    assert post(mint(keys.rsa, tls_issuer.url)).status_code == 503
    assert tls_issuer.hits == {}  # the handshake failed


def test_a_token_is_never_sent_in_clear_text(settings, oidc, keys, token_file):
    settings.CLOUDEVENTS_RECEIVER["OIDC_TOKEN_FILE"] = token_file
    assert post(mint(keys.rsa, oidc.url)).status_code == 202
    assert oidc.authorization == [None, None]


@pytest.mark.parametrize(
    ("kubernetes_host", "sent"),
    [
        (None, None),
        ("10.0.0.1", None),
        ("127.0.0.1", "Bearer pod-service-account-token"),
    ],
)
def test_the_default_token_goes_only_to_the_api_server(
    settings, monkeypatch, tls_issuer, keys, ca_file, token_file, kubernetes_host, sent
):
    # Stand-ins for the pod's own files, where Kubernetes mounts them.
    monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_TOKEN_FILE", token_file)
    monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_CA_FILE", ca_file)
    if kubernetes_host is None:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    else:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", kubernetes_host)
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": tls_issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
    }
    assert post(mint(keys.rsa, tls_issuer.url)).status_code == 202
    assert tls_issuer.authorization == [sent, sent]


@pytest.fixture
def tls_other(ca, keys) -> Iterator[Issuer]:
    """Another TLS server, as ``https://localhost:<its port>``: the JWKS elsewhere."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = Issuer(tls=context).start()
    server.keys = [keys.rsa.jwk()]
    yield server
    server.stop()


def test_the_api_servers_own_jwks_endpoint_gets_the_default_token(
    settings, monkeypatch, tls_issuer, tls_other, keys, ca_file, token_file
):
    # A real API server names its keys at its node address, which no host name
    # check recognises; the path is its own, and its keys need the token.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    port = tls_other.server.server_address[1]
    jwks = f"https://localhost:{port}/openid/v1/jwks"
    tls_issuer.documents["/.well-known/openid-configuration"] = json.dumps(
        {"issuer": tls_issuer.url, "jwks_uri": jwks}
    ).encode()
    tls_other.documents["/openid/v1/jwks"] = json.dumps(
        {"keys": [keys.rsa.jwk()]}
    ).encode()
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": tls_issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
    }
    monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_TOKEN_FILE", token_file)
    monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_CA_FILE", ca_file)
    assert post(mint(keys.rsa, tls_issuer.url)).status_code == 202
    assert tls_other.hits == {"/openid/v1/jwks": 1}
    assert tls_other.authorization == ["Bearer pod-service-account-token"]


@pytest.mark.parametrize("token", ["default", "configured"])
def test_no_token_goes_to_a_jwks_uri_elsewhere(
    settings, monkeypatch, tls_issuer, tls_other, keys, ca_file, token_file, token
):
    # The issuer passes for the API server; its discovery document names keys on
    # another host (default token) or another port (configured token file).
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    port = tls_other.server.server_address[1]
    host = "localhost" if token == "default" else "127.0.0.1"
    tls_issuer.documents["/.well-known/openid-configuration"] = json.dumps(
        {"issuer": tls_issuer.url, "jwks_uri": f"https://{host}:{port}/keys"}
    ).encode()
    settings.CLOUDEVENTS_RECEIVER = {
        "OIDC_ISSUER": tls_issuer.url,
        "OIDC_AUDIENCE": AUDIENCE,
    }
    if token == "default":
        monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_TOKEN_FILE", token_file)
        monkeypatch.setitem(conf.RECEIVER_DEFAULTS, "OIDC_CA_FILE", ca_file)
    else:
        settings.CLOUDEVENTS_RECEIVER.update(
            OIDC_TOKEN_FILE=token_file, OIDC_CA_FILE=ca_file
        )
    assert post(mint(keys.rsa, tls_issuer.url)).status_code == 202
    assert tls_issuer.authorization == ["Bearer pod-service-account-token"]
    assert tls_other.hits == {"/keys": 1}
    assert tls_other.authorization == [None]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://kubernetes.default.svc", True),
        ("https://kubernetes.default.svc.cluster.local", True),
        ("https://kubernetes.default", True),
        ("https://kubernetes.default.svc.example.com", True),  # custom cluster domain
        ("https://kubernetes.default.svcx", False),
        ("https://accounts.google.com", False),
        ("https://", False),
    ],
)
def test_api_server(monkeypatch, url, expected):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert key_cache.api_server(url) is expected


def test_tokens_and_secrets_are_never_logged(settings, oidc, keys, caplog):
    caplog.set_level("DEBUG")
    settings.CLOUDEVENTS_RECEIVER["SECRET"] = SECRET
    oidc.keys = [keys.rsa.jwk(), {"kty": "RSA", "kid": "broken"}]
    token = mint(keys.rsa, oidc.url)
    expired = mint(keys.rsa, oidc.url, exp=int(time.time()) - 3600)
    for credential in (SECRET, SECRET + "x", token, expired, "a.b.c"):
        post(credential)
    oidc.documents["/keys"] = b"broken"
    key_cache.clear_cache()
    assert post(token).status_code == 503
    assert caplog.records  # the skipped key and the failed fetch were logged
    for credential in (SECRET, token, expired):
        assert credential not in caplog.text


# --- system checks --------------------------------------------------------------


def test_an_open_receiver_accepts_events_and_warns(settings):
    settings.CLOUDEVENTS_RECEIVER = {}
    assert post().status_code == 202
    [warning] = bridge_checks.check_receiver_auth()
    assert warning.id == "cloudevents_bridge.W003"


@pytest.mark.parametrize("silenced", [False, True])
def test_an_open_receiver_says_so_in_the_log_once(
    settings, monkeypatch, caplog, silenced
):
    # A WSGI server runs no system checks: the first request logs W003's news.
    settings.CLOUDEVENTS_RECEIVER = {}
    settings.SILENCED_SYSTEM_CHECKS = ["cloudevents_bridge.W003"] if silenced else []
    monkeypatch.setattr(auth, "_warned_open", False)
    assert post().status_code == 202
    assert post().status_code == 202
    warnings = [r for r in caplog.records if "accepts events from anyone" in r.message]
    assert len(warnings) == (0 if silenced else 1)


def test_no_warning_where_no_receiver_is_routed(settings):
    settings.ROOT_URLCONF = __name__
    assert bridge_checks.check_receiver_auth() == []


@pytest.mark.parametrize(
    "options",
    [
        {"SECRET": SECRET},
        {"OIDC_ISSUER": "https://kubernetes.default.svc", "OIDC_AUDIENCE": AUDIENCE},
        {
            "OIDC_ISSUER": "https://kubernetes.default.svc",
            "OIDC_AUDIENCE": AUDIENCE,
            "OIDC_SUBJECTS": ("system:serviceaccount:shop:",),
            "OIDC_CA_FILE": None,
            "OIDC_TOKEN_FILE": None,
            "SECRET": ["old", "new"],
        },
    ],
)
def test_configured_auth_passes_the_checks(settings, options):
    settings.CLOUDEVENTS_RECEIVER = options
    assert bridge_checks.check_receiver_auth() == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"OIDC_ISSUER": "https://kubernetes.default.svc"},
            "OIDC_AUDIENCE is required",
        ),
        ({"OIDC_AUDIENCE": AUDIENCE}, "OIDC_AUDIENCE is set but OIDC_ISSUER is not"),
        ({"OIDC_SUBJECTS": []}, "OIDC_SUBJECTS is set but OIDC_ISSUER is not"),
        ({"SECRET": ""}, "SECRET must be"),
        ({"SECRET": 1234}, "SECRET must be"),
        ({"SECRET": ["ok", ""]}, "SECRET must be"),
        ({"SECRET": SECRET, "OIDC_SUBJECT": ["x"]}, "unknown key 'OIDC_SUBJECT'"),
        (
            {"OIDC_ISSUER": "kubernetes.default.svc", "OIDC_AUDIENCE": AUDIENCE},
            "OIDC_ISSUER must be an http(s) URL",
        ),
        (
            {
                "OIDC_ISSUER": "https://kubernetes.default.svc",
                "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_SUBJECTS": "system:serviceaccount:shop:",
            },
            "OIDC_SUBJECTS must be a list",
        ),
        (
            {
                "OIDC_ISSUER": "https://kubernetes.default.svc",
                "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_CA_FILE": "/no/such/ca.crt",
            },
            "OIDC_CA_FILE '/no/such/ca.crt' does not exist",
        ),
        (
            {
                "OIDC_ISSUER": "https://kubernetes.default.svc",
                "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_FETCH_TIMEOUT": 0,
            },
            "OIDC_FETCH_TIMEOUT must be more than 0",
        ),
        (
            {
                "OIDC_ISSUER": "https://kubernetes.default.svc",
                "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_STALE_SECONDS": "3600",
            },
            "OIDC_STALE_SECONDS must be a number of seconds",
        ),
    ],
)
def test_bad_auth_settings_are_errors(settings, options, problem):
    settings.CLOUDEVENTS_RECEIVER = options
    [error] = bridge_checks.check_receiver_auth()
    assert error.id == "cloudevents_bridge.E007"
    assert problem in error.msg
