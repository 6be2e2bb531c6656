"""The OIDC issuer's signing keys: discovery document, JWKS, cache and deadline.

Keys are cached here rather than by PyJWT's ``jwt.PyJWKClient`` (2.15), which was
considered: its ``timeout`` is urllib's, per socket operation (a trickling issuer
holds a request indefinitely), and it reads a body of any size; a failed fetch is
not remembered (every request fetches again) and an expired JWK set is not served
while the issuer is down; its lock is held across the fetch, so every request
queues behind a slow one; its headers are fixed when it is built (the kubelet
rotates the service-account token) and sent to whatever the URL is; it knows no
discovery document and no token without ``kid``. What it does well (an SSL
context, no redirects, a kid-refresh cooldown) this module does too.

Fetching: one total deadline (``OIDC_FETCH_TIMEOUT``) covers the discovery
document and the JWKS, bodies included. Any failure is a 503 with
``Retry-After``, remembered for ``FAILURE_SECONDS`` so requests meanwhile get
their answer without a fetch; keys that expired from the cache are still used
while the issuer fails, up to ``OIDC_STALE_SECONDS`` after they were fetched.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from .. import conf
from ..exceptions import AuthUnavailable

try:
    import jwt
except ImportError:  # pragma: no cover - the tests install the [oidc] extra
    jwt = None  # type: ignore[assignment]

logger = logging.getLogger("django_cloudevents_bridge")

CACHE_SECONDS = 300.0  # the discovery document and JWKS are refetched after this
REFETCH_SECONDS = 10.0  # an unknown "kid" refetches the JWKS at most this often
FAILURE_SECONDS = 5.0  # a failed fetch is answered 503 without a new fetch so long
MAX_DOCUMENT = 1024 * 1024
# Hosts of the Kubernetes API server, the only issuer that gets the pod's own
# service-account token by default (any other issuer would be handed a credential).
API_SERVER_HOSTS = ("kubernetes", "kubernetes.default")
API_SERVER_SUFFIX = "kubernetes.default.svc"
API_SERVER_JWKS_PATH = "/openid/v1/jwks"  # the API server's own key endpoint
ALGORITHMS = ("RS256", "ES256")  # asymmetric only: never "none", never HS*


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


@dataclass
class _Issuer:
    """What this process knows of one OIDC_ISSUER: its keys and its last failure."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # one fetch at once
    key_set: KeySet | None = None  # the last good fetch
    failed: float | None = None  # when the last fetch failed (None: it did not)
    error: str = ""  # why it failed


_issuers: dict[str, _Issuer] = {}


def clear_cache() -> None:
    """Forget every fetched discovery document and JWKS, and every failure."""
    _issuers.clear()


def signing_keys(
    options: dict[str, Any], kid: str | None, algorithm: str
) -> tuple[str, list[Any]]:
    """The issuer and the keys for a token's header, fetched or cached."""
    entry = _issuers.get(options["OIDC_ISSUER"]) or _issuers.setdefault(
        options["OIDC_ISSUER"], _Issuer()
    )
    key_set = entry.key_set
    now = monotonic()
    if key_set is None or now - key_set.fetched >= CACHE_SECONDS:
        key_set = _refresh(options, entry, key_set)
    found = key_set.matching(kid, algorithm)
    if not found and now - key_set.fetched >= REFETCH_SECONDS:
        # The issuer may have rotated its keys; a throttle stops random "kid"s
        # from turning into a flood of fetches. No stale keys here: the token
        # may be signed with a key they lack, so a failed fetch is a 503.
        key_set = _refresh(options, entry, key_set, new_key=True)
        found = key_set.matching(kid, algorithm)
    return key_set.issuer, found


def _refresh(
    options: dict[str, Any],
    entry: _Issuer,
    seen: KeySet | None,
    *,
    new_key: bool = False,
) -> KeySet:
    """Keys fetched again, or those in hand while the issuer fails (not too old).

    One thread fetches at a time; a thread that holds keys young enough to use
    does not wait for it. A failure is remembered for FAILURE_SECONDS: requests
    meanwhile get it (a 503) at once instead of queueing for a fetch of their own.
    """
    usable = None
    if (
        seen is not None
        and not new_key
        and monotonic() - seen.fetched < options["OIDC_STALE_SECONDS"]
    ):
        usable = seen
    if usable is not None:
        if not entry.lock.acquire(blocking=False):
            return usable  # another thread is fetching
    elif not entry.lock.acquire(timeout=options["OIDC_FETCH_TIMEOUT"] + 1):
        raise AuthUnavailable("OIDC keys unavailable: another fetch is stuck")
    try:
        if entry.key_set is not seen and entry.key_set is not None:
            return entry.key_set  # another thread fetched while this one waited
        now = monotonic()
        if entry.failed is not None and now - entry.failed < FAILURE_SECONDS:
            failure = AuthUnavailable(
                entry.error, retry_after=FAILURE_SECONDS - (now - entry.failed)
            )
        else:
            try:
                fresh = _fetch(options)
            except AuthUnavailable as err:
                entry.failed, entry.error, failure = monotonic(), str(err), err
                if usable is not None:
                    logger.warning(
                        "Using the OIDC keys of %s fetched %d s ago until it answers",
                        options["OIDC_ISSUER"],
                        monotonic() - usable.fetched,
                    )
            else:
                entry.key_set, entry.failed = fresh, None
                return fresh
    finally:
        entry.lock.release()
    if usable is not None:
        return usable
    raise failure


def _fetch(options: dict[str, Any]) -> KeySet:
    """The discovery document and its JWKS, both within OIDC_FETCH_TIMEOUT."""
    base = options["OIDC_ISSUER"].rstrip("/")
    deadline = _Deadline(options["OIDC_FETCH_TIMEOUT"])
    try:
        with deadline:
            discovery = _get_json(
                f"{base}/.well-known/openid-configuration", options, deadline
            )
            if not isinstance(discovery, dict):
                raise ValueError("discovery document is not a JSON object")
            issuer, jwks_uri = discovery.get("issuer"), discovery.get("jwks_uri")
            if not (isinstance(issuer, str) and isinstance(jwks_uri, str)):
                raise ValueError("discovery document without issuer or jwks_uri")
            jwks = _get_json(jwks_uri, options, deadline)
        keys = tuple(_usable_keys(jwks))
    except Exception as err:  # whatever the issuer sent or did: a 503, never a 500
        problem = _describe(err)
        if deadline.expired:
            problem = f"no answer within {deadline.seconds} s (total)"
        logger.warning("OIDC discovery at %s failed: %s", base, problem)
        raise AuthUnavailable(f"OIDC keys unavailable: {problem}") from err
    return KeySet(issuer, keys, monotonic())


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:200]


def _usable_keys(jwks: Any) -> Iterator[Any]:
    if not (
        isinstance(jwks, dict)
        and isinstance(jwks.get("keys"), list)
        and all(isinstance(data, dict) for data in jwks["keys"])
    ):
        raise ValueError('JWKS is not {"keys": [objects]}')
    for data in jwks["keys"]:
        if data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(data)
        except Exception as err:  # any unusable entry, however malformed
            logger.debug("Skipping JWKS key %r: %s", data.get("kid"), err)
            continue
        if key.algorithm_name in ALGORITHMS:
            yield key


class _Deadline:
    """A total time limit for one fetch: at the end, its sockets are shut down.

    urllib's ``timeout`` bounds each socket operation, so an issuer that trickles
    a byte every few seconds would hold a request indefinitely. A timer shuts down
    (through a duplicate, so no descriptor is ever reused under it) every socket
    the fetch opened, which ends a TLS handshake, the headers or the body alike.
    Only name resolution, before any socket exists, is outside it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def track(self, sock: socket.socket) -> socket.socket:
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.expired:
                _shut(duplicate)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _connection(cls: type[http.client.HTTPConnection], deadline: _Deadline) -> Any:
    """``cls`` whose sockets ``deadline`` tracks, as urllib's ``do_open`` builds it."""

    def connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        return deadline.track(socket.create_connection(address, *args, **kwargs))

    def build(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        connection = cls(*args, **kwargs)
        connection._create_connection = connect  # type: ignore[attr-defined]
        return connection

    return build


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_connection(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.deadline = deadline
        self.tls = context

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            _connection(http.client.HTTPSConnection, self.deadline),
            req,
            context=self.tls,
        )


def _get_json(url: str, options: dict[str, Any], deadline: _Deadline) -> Any:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = _fetch_token(url, options)
    if token:
        # Unredirected: a redirect must not carry the credential elsewhere.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(
        _HTTPHandler(deadline), _HTTPSHandler(deadline, _ssl_context(options))
    )
    with opener.open(request, timeout=deadline.seconds) as response:
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
    """OIDC_TOKEN_FILE's token for fetching ``url``, if it may go there.

    Judged by ``url`` itself, not by the issuer: a discovery document may name a
    ``jwks_uri`` anywhere. The pod's default token goes only to the API server
    (``api_server(url)``), or to the API server's own JWKS endpoint
    (``/openid/v1/jwks``) when the API server is the issuer: its discovery
    document names that endpoint at the node address it serves on, which no
    host name check can recognise, and its keys need the token. A configured
    OIDC_TOKEN_FILE goes only to the issuer's own origin (scheme, host and port
    of OIDC_ISSUER). Never over plain http.
    """
    path = options["OIDC_TOKEN_FILE"]
    if not path or urlsplit(url).scheme != "https":
        return None  # never in clear text
    if path == conf.RECEIVER_DEFAULTS["OIDC_TOKEN_FILE"]:
        own_keys = (
            api_server(options["OIDC_ISSUER"])
            and urlsplit(url).path == API_SERVER_JWKS_PATH
        )
        if not ((api_server(url) or own_keys) and os.path.exists(path)):
            return None
    elif _origin(url) != _origin(options["OIDC_ISSUER"]):
        return None
    with open(path) as file:  # read each time: the kubelet rotates it
        return file.read().strip() or None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port (the scheme's default if none is written)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return (scheme, None, None)
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return (scheme, parts.hostname, port)


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
