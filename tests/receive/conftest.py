"""The loopback OIDC issuer of test_auth.py, for the other receiver tests too."""

from tests.receive.test_auth import issuer, keys, oidc  # noqa: F401 - fixtures
