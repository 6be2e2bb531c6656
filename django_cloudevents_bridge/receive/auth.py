"""Receiver authentication: OIDC bearer tokens (Knative) and/or a shared secret.

Both arrive as ``Authorization: Bearer <credential>``; with both configured, either
one is enough. OIDC follows Knative's verifier (``pkg/auth/verifier.go``): the
discovery document at ``<OIDC_ISSUER>/.well-known/openid-configuration`` names the
``issuer`` that ``iss`` must equal and the ``jwks_uri`` holding the keys; ``aud``
must contain ``OIDC_AUDIENCE``. Tokens and secrets are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from .. import conf
from ..exceptions import AuthUnavailable, ImproperlyInstalled, NotAuthenticated

try:
    import jwt
except ImportError:  # pragma: no cover - the tests install the [oidc] extra
    jwt = None  # type: ignore[assignment]

logger = logging.getLogger("django_cloudevents_bridge")

ALGORITHMS = ("RS256", "ES256")  # asymmetric only: never "none", never HS*
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
LEEWAY = 60  # seconds of clock skew tolerated for exp, nbf and iat
CACHE_SECONDS = 300.0  # the discovery document and JWKS are refetched after this
REFETCH_SECONDS = 10.0  # an unknown "kid" refetches the JWKS at most this often
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT = 1024 * 1024
INVALID = 'Bearer error="invalid_token"'
# Hosts of the Kubernetes API server, the only issuer that gets the pod's own
# service-account token by default (any other issuer would be handed a credential).
API_SERVER_HOSTS = ("kubernetes", "kubernetes.default")
API_SERVER_SUFFIX = "kubernetes.default.svc"
OPEN_CHECK = "cloudevents_bridge.W003"  # an open receiver


def authenticate(request: HttpRequest) -> None:
    """Return if the request may deliver events; raise (401/403) if not."""
    options = conf.receiver()
    secrets = secrets_of(options["SECRET"])
    if not secrets and not options["OIDC_ISSUER"]:
        configured = conf.receiver_setting()
        if isinstance(configured, dict) and (
            "SECRET" in configured or "OIDC_ISSUER" in configured
        ):
            # Set but empty (say os.environ.get("SECRET", "")): fail closed.
            raise NotAuthenticated("receiver authentication is misconfigured")
        _warn_open()
        return  # an open receiver; check W003 says so too
    credential = bearer(request)
    if credential is None:
        raise NotAuthenticated("missing bearer token")
    if any(constant_time_compare(credential, secret) for secret in secrets):
        return
    if not options["OIDC_ISSUER"]:
        raise NotAuthenticated("invalid credentials", challenge=INVALID)
    claims = verify(credential, options)
    allow_subject(claims["sub"], options["OIDC_SUBJECTS"])


_warned_open = False


def _warn_open() -> None:
    """Log once per process that anyone may deliver events here.

    Check W003 says so in ``manage.py check``; a WSGI server runs no checks, so
    without this a production log would never say it. Silencing W003 silences
    this too.
    """
    global _warned_open
    if _warned_open:
        return
    _warned_open = True
    if OPEN_CHECK not in conf.silenced_checks():
        logger.warning(
            "The CloudEvents receiver accepts events from anyone: set "
            "CLOUDEVENTS_RECEIVER['SECRET'] or ['OIDC_ISSUER'] (check %s)",
            OPEN_CHECK,
        )


def bearer(request: HttpRequest) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, or None."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def secrets_of(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``SECRET`` as a tuple: one string, or several while a secret is rotated."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def allow_subject(subject: str, allowed: Sequence[str] | None) -> None:
    """Raise PermissionDenied unless ``sub`` is allowed (``"...:"`` is a prefix)."""
    if allowed is None:
        return
    for entry in allowed:
        if subject == entry or (entry.endswith(":") and subject.startswith(entry)):
            return
    raise PermissionDenied(f"subject {subject!r} is not allowed")


def verify(token: str, options: dict[str, Any]) -> dict[str, Any]:
    """The claims of a valid token; raise NotAuthenticated or AuthUnavailable."""
    if jwt is None:  # pragma: no cover - the tests install the [oidc] extra
        raise ImproperlyInstalled("OIDC needs PyJWT", extra="oidc")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise NotAuthenticated("malformed token", challenge=INVALID) from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise NotAuthenticated("token algorithm not allowed", challenge=INVALID)
    issuer, keys = signing_keys(options, header.get("kid"), algorithm)
    if not keys:
        raise NotAuthenticated("unknown signing key", challenge=INVALID)
    for key in keys:  # several only for a token without "kid"
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=options["OIDC_AUDIENCE"],
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as err:
            raise NotAuthenticated(_reason(err), challenge=INVALID) from None
    raise NotAuthenticated("bad signature", challenge=INVALID)


def _reason(err: Exception) -> str:
    # Our own words: a library message could one day quote part of the token.
    if isinstance(err, jwt.MissingRequiredClaimError):
        return f"token has no {err.claim!r} claim"
    reasons = [
        (jwt.ExpiredSignatureError, "token expired"),
        (jwt.ImmatureSignatureError, "token not yet valid"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
    ]
    return next((text for kind, text in reasons if isinstance(err, kind)), "bad token")


@dataclass(frozen=True)
class KeySet:
    """A discovery document's issuer and its JWKS, as fetched at ``fetched``."""

    issuer: str
    keys: tuple[Any, ...]  # jwt.PyJWK
    fetched: float

    def matching(self, kid: str | None, algorithm: str) -> list[Any]:
        return [
            key
            for key in self.keys
            if key.algorithm_name == algorithm and (kid is None or key.key_id == kid)
        ]


_key_sets: dict[str, KeySet] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every fetched discovery document and JWKS."""
    _key_sets.clear()


def signing_keys(
    options: dict[str, Any], kid: str | None, algorithm: str
) -> tuple[str, list[Any]]:
    """The issuer and the keys for a token's header, fetched or cached."""
    base = options["OIDC_ISSUER"]
    key_set = _key_sets.get(base)
    now = monotonic()
    if key_set is None or now - key_set.fetched >= CACHE_SECONDS:
        key_set = _refresh(options, key_set)
    found = key_set.matching(kid, algorithm)
    if not found and now - key_set.fetched >= REFETCH_SECONDS:
        # The issuer may have rotated its keys; a throttle stops random "kid"s
        # from turning into a flood of fetches.
        key_set = _refresh(options, key_set)
        found = key_set.matching(kid, algorithm)
    return key_set.issuer, found


def _refresh(options: dict[str, Any], stale: KeySet | None) -> KeySet:
    base = options["OIDC_ISSUER"]
    with _lock:
        current = _key_sets.get(base)
        if current is not None and current is not stale:
            return current  # another thread fetched while this one waited
        fresh = _fetch(options)
        _key_sets[base] = fresh
        return fresh


def _fetch(options: dict[str, Any]) -> KeySet:
    base = options["OIDC_ISSUER"].rstrip("/")
    try:
        discovery = _get_json(f"{base}/.well-known/openid-configuration", options)
        issuer, jwks_uri = discovery["issuer"], discovery["jwks_uri"]
        if not (isinstance(issuer, str) and isinstance(jwks_uri, str)):
            raise ValueError("discovery document without issuer or jwks_uri")
        keys = tuple(_usable_keys(_get_json(jwks_uri, options)["keys"]))
    except (OSError, ValueError, LookupError, TypeError) as err:
        logger.warning("OIDC discovery at %s failed: %s", base, err)
        raise AuthUnavailable(f"OIDC keys unavailable: {err}") from err
    return KeySet(issuer, keys, monotonic())


def _usable_keys(jwks: list[dict[str, Any]]) -> Iterator[Any]:
    for data in jwks:
        if data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(data)
        except (jwt.PyJWTError, ValueError, LookupError, TypeError) as err:
            logger.debug("Skipping JWKS key %r: %s", data.get("kid"), err)
            continue
        if key.algorithm_name in ALGORITHMS:
            yield key


def _get_json(url: str, options: dict[str, Any]) -> Any:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = _fetch_token(url, options)
    if token:
        # Unredirected: a redirect must not carry the credential elsewhere.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(
        request, timeout=FETCH_TIMEOUT, context=_ssl_context(options)
    ) as response:
        body = response.read(MAX_DOCUMENT + 1)
    if len(body) > MAX_DOCUMENT:
        raise ValueError(f"{url}: larger than {MAX_DOCUMENT} bytes")
    return json.loads(body)


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """System roots, plus OIDC_CA_FILE (the default one only if it exists)."""
    context = ssl.create_default_context()
    ca_file = options["OIDC_CA_FILE"]
    default = conf.RECEIVER_DEFAULTS["OIDC_CA_FILE"]
    if ca_file and (ca_file != default or os.path.exists(ca_file)):
        context.load_verify_locations(cafile=ca_file)
    return context


def _fetch_token(url: str, options: dict[str, Any]) -> str | None:
    """OIDC_TOKEN_FILE's token for a discovery/JWKS fetch, if it may be sent."""
    path = options["OIDC_TOKEN_FILE"]
    if not path or urlsplit(url).scheme != "https":
        return None  # never in clear text
    if path == conf.RECEIVER_DEFAULTS["OIDC_TOKEN_FILE"] and not (
        api_server(options["OIDC_ISSUER"]) and os.path.exists(path)
    ):
        return None
    with open(path) as file:  # read each time: the kubelet rotates it
        return file.read().strip() or None


def api_server(url: str) -> bool:
    """True if ``url`` names the Kubernetes API server (from inside the cluster)."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    return (
        host in API_SERVER_HOSTS
        or host == API_SERVER_SUFFIX
        or host.startswith(API_SERVER_SUFFIX + ".")
        or host == os.environ.get("KUBERNETES_SERVICE_HOST")
    )
