"""Receiver authentication: OIDC bearer tokens (Knative) and/or a shared secret.

Both arrive as ``Authorization: Bearer <credential>``; with both configured, either
one is enough. OIDC follows Knative's verifier (``pkg/auth/verifier.go``): the
discovery document at ``<OIDC_ISSUER>/.well-known/openid-configuration`` names the
``issuer`` that ``iss`` must equal and the ``jwks_uri`` holding the keys; ``aud``
must contain ``OIDC_AUDIENCE``. Tokens and secrets are never logged.

The issuer's signing keys are fetched and cached by :mod:`.oidc`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from .. import conf
from ..exceptions import ImproperlyInstalled, NotAuthenticated
from .oidc import ALGORITHMS, signing_keys
from .policies import subject_matches

try:
    import jwt
except ImportError:  # pragma: no cover - the tests install the [oidc] extra
    jwt = None  # type: ignore[assignment]

logger = logging.getLogger("django_cloudevents_bridge")

REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
LEEWAY = 60  # seconds of clock skew tolerated for exp, nbf and iat
NUMERIC_CLAIMS = ("exp", "nbf", "iat")  # NumericDate: a JSON number (RFC 7519 2)
INVALID = 'Bearer error="invalid_token"'
OPEN_CHECK = "cloudevents_bridge.W003"  # an open receiver


def authenticate(request: HttpRequest) -> str | None:
    """The sender's OIDC subject (None: a secret, or an open receiver) if the
    request may deliver events; raise (401/403) if not."""
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
        return None  # an open receiver; check W003 says so too
    credential = bearer(request)
    if credential is None:
        raise NotAuthenticated("missing bearer token")
    if any(constant_time_compare(credential, secret) for secret in secrets):
        return None
    if not options["OIDC_ISSUER"]:
        raise NotAuthenticated("invalid credentials", challenge=INVALID)
    claims = verify(credential, options)
    allow_subject(claims["sub"], options["OIDC_SUBJECTS"])
    return str(claims["sub"])


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
    """Raise PermissionDenied unless ``sub`` is allowed (``"...:"`` and ``"...*"``
    are prefixes)."""
    if allowed is None:
        return
    if any(subject_matches(subject, entry) for entry in allowed):
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
            claims = jwt.decode(
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
        _check_numeric(claims)
        return claims
    raise NotAuthenticated("bad signature", challenge=INVALID)


def _check_numeric(claims: dict[str, Any]) -> None:
    """``exp``, ``nbf`` and ``iat`` must be numbers.

    PyJWT compares ``int(value)``, so it takes ``"9999999999"`` (and ``true``) for a
    time, and has no option to refuse them.
    """
    for name in NUMERIC_CLAIMS:
        value = claims.get(name)
        if name in claims and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise NotAuthenticated(
                f"token claim {name!r} is not a number", challenge=INVALID
            )


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
